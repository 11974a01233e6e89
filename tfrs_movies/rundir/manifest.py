"""The manifest: writing it, verifying a run against it, updating metrics, loading the index.

TensorFlow and ScaNN are imported inside :func:`load_index` only: the CLI imports this module to
verify runs (``tfrs-movies evaluate``), which must not wait ~3 s for TensorFlow (measured: 3.2 s
vs 0.13 s to start).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from tfrs_movies.atomic import write_json
from tfrs_movies.errors import ArtifactError
from tfrs_movies.rundir.layout import (
    ARTIFACT_DIRS,
    CONFIG,
    FORMAT_VERSION,
    MANIFEST,
    METRICS,
    METRICS_PENDING,
    READABLE_FORMATS,
    REQUIRED_FILES,
    UNVERIFIED_DIRS,
    RunPaths,
    file_checksums,
    sha256,
)

# Versions recorded in the manifest; the SavedModels need matching tensorflow and scann.
RECORDED_PACKAGES = (
    "tensorflow",
    "tf-keras",
    "tensorflow-recommenders",
    "scann",
    "tensorflow-datasets",
    "tfrs-movies",
)
CHECKED_PACKAGES = ("tensorflow", "scann")


def library_versions() -> dict[str, str]:
    """The Python version and the installed version of each recorded package."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_manifest(run_dir: Path, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Writes ``manifest.json`` for the files now in ``run_dir``. Returns the manifest."""
    protocol = metrics.get("protocol", {})
    config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": library_versions(),
        "dataset": protocol.get("dataset"),
        "split": protocol.get("split"),
        "split_seed": protocol.get("split_seed"),
        "model_seed": config["train"]["seed"],
        "index": metrics.get("index"),
        "files": file_checksums(run_dir),
    }
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def is_run(folder: Path) -> bool:
    """Whether ``folder`` has a readable ``manifest.json`` with a format version (unverified)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest


def update_metrics(run_dir: str | Path, updates: Mapping[str, Any]) -> dict[str, Any]:
    """Adds or replaces top-level entries of a complete run's ``metrics.json``, crash-safely.

    The run is verified first. Two files change (metrics.json and the manifest's checksum of
    it), so the update is written ahead: the new metrics go to ``metrics.json.pending``, then
    the manifest is rewritten with its checksum (the commit point), then the pending file is
    renamed over ``metrics.json``. Each step is atomic, so a crash leaves one of:

    * before the commit: the old manifest and the old metrics.json agree (a leftover pending
      file is ignored, and replaced by the next update);
    * after the commit: the manifest names the pending file's checksum, and
      :func:`verify_run` completes the rename (roll forward).

    Args:
        run_dir: a complete run directory.
        updates: entries to set, e.g. ``{"pipeline": {...}}``.

    Returns:
        The new contents of ``metrics.json``.

    Raises:
        ArtifactError: the run does not verify.
    """
    paths = RunPaths(Path(run_dir))
    manifest = verify_run(paths.root)
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    metrics.update(updates)
    write_json(paths.metrics_pending, metrics)
    manifest["files"][METRICS] = sha256(paths.metrics_pending)
    write_json(paths.manifest, manifest)
    os.replace(paths.metrics_pending, paths.metrics)
    return metrics


def _finish_metrics_update(paths: RunPaths, expected: object) -> None:
    """Completes an update_metrics that was interrupted after its commit point.

    When metrics.json does not have the manifest's checksum but ``metrics.json.pending`` does,
    the manifest was committed and only the last rename is missing: it is done here.

    Raises:
        ArtifactError: the run directory is read-only, so the rename cannot be done.
    """
    pending = paths.metrics_pending
    if not pending.is_file() or sha256(pending) != expected:
        return
    if paths.metrics.is_file() and sha256(paths.metrics) == expected:
        return
    try:
        os.replace(pending, paths.metrics)
    except OSError as error:
        raise ArtifactError(
            f"{paths.root}: an update of {METRICS} was interrupted after it was committed; "
            f"renaming {METRICS_PENDING} to {METRICS} completes it, which failed: "
            f"{error.strerror or error}"
        ) from None


def _listed_path(run_dir: Path, name: object) -> str:
    """Checks one manifest entry: a relative POSIX path to a file inside ``run_dir``."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    inside = (
        bool(parts)
        and not PurePosixPath(name).is_absolute()
        and ".." not in parts
        and "\\" not in name
        and (run_dir / name).resolve().is_relative_to(run_dir.resolve())
    )
    if not inside:
        raise ArtifactError(
            f"{run_dir / MANIFEST} lists {name!r}, which is not a file inside the run; the "
            "manifest was edited or is corrupt (train the run again)"
        )
    return name


def verify_run(run_dir: str | Path) -> dict[str, Any]:
    """Checks a run directory against its manifest and the installed libraries.

    Checks that the manifest parses, has this format version, lists every file the format needs
    (and every file of the artifact folders), lists only paths inside the run, that each listed
    file (checkpoints and TensorBoard logs aside) exists with its sha256, and that the installed
    tensorflow and scann can load the SavedModels. The one write: an :func:`update_metrics`
    interrupted after its commit point is completed first.

    Args:
        run_dir: the run directory.

    Returns:
        The manifest.

    Raises:
        ArtifactError: the first problem found, naming the file.
    """
    paths = RunPaths(Path(run_dir))
    root = paths.root
    if not root.is_dir():
        raise ArtifactError(f"run directory {root} does not exist")
    if not paths.manifest.is_file():
        hint = ""
        if paths.partial.exists():
            hint = f" ({paths.partial} exists: the run was interrupted; resume it)"
        raise ArtifactError(f"{root} is not a complete run directory: no {MANIFEST}{hint}")
    try:
        manifest = json.loads(paths.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{paths.manifest} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") not in READABLE_FORMATS:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise ArtifactError(
            f"{root} has run format {found}; this tfrs_movies reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}"
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise ArtifactError(f"{paths.manifest} has no file list; train the run again")
    names = {_listed_path(root, name) for name in listed}
    for name in REQUIRED_FILES:
        if name not in names:
            raise ArtifactError(
                f"{root}: {MANIFEST} does not list {name}, which every run needs; the run is "
                "incomplete or was edited (train it again)"
            )
    for folder in ARTIFACT_DIRS:
        for path in sorted((root / folder).rglob("*")):
            name = path.relative_to(root).as_posix()
            if path.is_file() and name not in names:
                raise ArtifactError(f"{root / name} is not listed in {MANIFEST}")
    _finish_metrics_update(paths, listed.get(METRICS))
    for name in sorted(names):
        if name.split("/", 1)[0] in UNVERIFIED_DIRS:
            continue
        path = root / name
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (listed in {MANIFEST})")
        if sha256(path) != listed[name]:
            raise ArtifactError(f"{path} is corrupt: its sha256 does not match {MANIFEST}")
    _check_versions(manifest.get("versions", {}), root)
    return manifest


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _check_versions(saved: Mapping[str, str], run_dir: Path) -> None:
    for package in CHECKED_PACKAGES:
        want = saved.get(package)
        try:
            have = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise ArtifactError(
                f"{run_dir} needs {package} {want}, which is not installed "
                f"(pip install 'tfrs-movies')"
            ) from None
        if want and _major_minor(want) != _major_minor(have):
            raise ArtifactError(
                f"{run_dir} was exported with {package} {want} but {package} {have} is installed; "
                f"install {package}=={want} (ScaNN's ops must match the TensorFlow they were "
                "built for)"
            )


def load_index(run_dir: str | Path):
    """Loads a verified run's ScaNN retrieval index, ready to query.

    Args:
        run_dir: a complete run directory.

    Returns:
        The ``retrieval_index/`` SavedModel: ``index(user_ids)`` with (B,) string user ids gives
        ``(scores (B, K) float32, movie_ids (B, K) string)``, best first; also ``rows``,
        ``search``, ``search_rows`` and ``query_vectors`` (see the README).

    Raises:
        ArtifactError: the run does not verify.
    """
    import scann  # noqa: F401 - registers the Scann ops the SavedModel's graph uses
    import tensorflow as tf

    paths = RunPaths(Path(run_dir))
    verify_run(paths.root)
    return tf.saved_model.load(str(paths.retrieval_index))
