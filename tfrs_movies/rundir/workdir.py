"""Where a run may go (:func:`check_workdir`) and how it is put in place (:func:`finalize_run`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfrs_movies.atomic import write_json
from tfrs_movies.errors import ArtifactError
from tfrs_movies.rundir.layout import (
    CONFIG,
    MANIFEST,
    METRICS,
    PARTIAL_SUFFIX,
    RunPaths,
)
from tfrs_movies.rundir.manifest import is_run, write_manifest


def finalize_run(
    partial: Path, run_dir: Path, metrics: Mapping[str, Any], *, overwrite: bool = False
) -> None:
    """Writes metrics.json and manifest.json into ``partial``, then renames it to ``run_dir``.

    The rename is the commit point. With ``overwrite``, an existing run is first renamed aside
    (``<run>.old-<pid>``) and deleted only once the new run is in place, so a complete run
    (old or new) is under the name at all times but the instant between the two renames.

    Raises:
        ArtifactError: ``run_dir`` exists and is not a run (never deleted) or ``overwrite`` is
            off; the finished run stays in ``partial``.
    """
    write_json(partial / METRICS, metrics)
    write_manifest(partial, metrics)
    if not run_dir.exists() or _is_empty_dir(run_dir):
        os.replace(partial, run_dir)  # also replaces an empty folder
        return
    if not (run_dir.is_dir() and is_run(run_dir)):
        raise ArtifactError(
            f"{run_dir} {_describe(run_dir)}; it was left alone, and the finished run is in "
            f"{partial}: move it where you want it"
        )
    if not overwrite:
        raise ArtifactError(
            f"run directory {run_dir} already exists (made while this run trained); the "
            f"finished run is in {partial}: move it where you want it"
        )
    aside = run_dir.with_name(f"{run_dir.name}.old-{os.getpid()}")
    os.replace(run_dir, aside)
    try:
        os.replace(partial, run_dir)
    except OSError:
        os.replace(aside, run_dir)  # put the old run back rather than leave no run
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _is_empty_dir(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def _describe(folder: Path) -> str:
    """Says what is in a folder that is not a run, naming a few of its entries."""
    if not folder.is_dir():
        return "is a file, not a folder"
    names = sorted(entry.name for entry in folder.iterdir())
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"is not a tfrs_movies run (no valid {MANIFEST}; it holds {shown})"


def _is_interrupted_run(folder: Path) -> bool:
    return folder.name.endswith(PARTIAL_SUFFIX) and (folder / CONFIG).is_file()


def check_workdir(workdir: str | Path, *, resume: bool, overwrite: bool) -> RunPaths:
    """Checks that a run can be written under ``workdir``, before any work starts.

    Accepts a new name, an empty folder, an existing run (with ``overwrite``, or ``resume``,
    which then has nothing to do) and an interrupted ``<workdir>.partial`` (with ``resume`` or
    ``overwrite``; the caller removes it for ``overwrite``). Removes an empty ``.partial`` (a
    start that failed before writing its config) and creates missing parent folders.

    Args:
        workdir: the run directory asked for (any string a person may type).
        resume: the caller will continue ``<workdir>.partial``.
        overwrite: the caller will replace an existing run (at finalize) or ``.partial``.

    Returns:
        The run's paths, with an absolute ``root``.

    Raises:
        ArtifactError: the name cannot hold a run (the current folder or a parent of it, a file,
            a folder that is not a run, a path inside a run or an interrupted run, a name
            ending in ``.partial``, an unwritable parent), or it holds a run or interrupted run
            and neither ``overwrite`` nor ``resume`` says what to do with it.
    """
    advice = "choose a new folder, e.g. --workdir runs/my-run"
    if not str(workdir).strip():
        raise ArtifactError(f"the run directory name is empty; {advice}")
    root = Path(os.path.abspath(Path(workdir).expanduser()))
    resolved = root.resolve()
    cwd = Path.cwd().resolve()
    if not root.name or resolved == cwd or resolved in cwd.parents:
        raise ArtifactError(
            f"--workdir {workdir} is the current folder or one of its parents; a run is created "
            f"and replaced by renaming its folder, so {advice}"
        )
    if root.name.endswith(PARTIAL_SUFFIX):
        raise ArtifactError(
            f"--workdir {workdir}: names ending in {PARTIAL_SUFFIX} are where interrupted runs "
            f"live; name the run itself (without {PARTIAL_SUFFIX}) to resume it, or {advice}"
        )
    for ancestor in resolved.parents:
        if is_run(ancestor) or _is_interrupted_run(ancestor):
            raise ArtifactError(f"--workdir {workdir} is inside the run {ancestor}; {advice}")
    paths = RunPaths(root)
    if root.exists() and not _is_empty_dir(root):
        if not (root.is_dir() and is_run(root)):
            raise ArtifactError(
                f"--workdir {workdir} {_describe(root)}; --overwrite only replaces a run, so "
                f"{advice}"
            )
        if not (overwrite or resume):
            raise ArtifactError(
                f"run directory {root} already exists; choose another --workdir or pass "
                "--overwrite to replace it"
            )
    partial = paths.partial
    if _is_empty_dir(partial):
        with contextlib.suppress(OSError):
            partial.rmdir()
    if partial.exists():
        if not (partial.is_dir() and (partial / CONFIG).is_file()):
            raise ArtifactError(
                f"{partial} {_describe(partial)} and is not an interrupted run either; move it "
                f"away or {advice}"
            )
        if not (resume or overwrite):
            raise ArtifactError(
                f"{partial} holds an interrupted run; pass --resume to continue it or "
                "--overwrite to start over"
            )
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root.parent).close()
    except OSError as error:
        raise ArtifactError(
            f"cannot write a run in {root.parent}: {error.strerror or error}; {advice} "
            "in a folder you can write to"
        ) from None
    return paths
