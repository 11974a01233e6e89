"""Side-by-side comparison of finished runs; a sweep directory stands for its runs, a tuning
study directory for its best trial's run."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tfrs_movies.errors import TfrsMoviesError
from tfrs_movies.evaluation import HEADLINE_METRICS
from tfrs_movies.experiments.grid import WeightPair, format_weight, run_name
from tfrs_movies.rundir import RunPaths

COMPARE_KEYS = HEADLINE_METRICS
# A tuning study directory (see tfrs_movies.experiments.tune) holds these; defined here so that
# `compare` reads studies without importing Optuna or TensorFlow.
STUDY_SUMMARY = "study.json"
BEST_RUN_DIR = "best_run"


def expand_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories named by ``paths``; a sweep directory expands to its finished runs, a
    study directory to its best trial's run.

    Args:
        paths: run, sweep and/or study directories.

    Returns:
        The run directories, each once, in the order given.

    Raises:
        TfrsMoviesError: a path is neither a run (metrics.json), a sweep (sweep.json) nor a
            study (study.json), or a study has no finished best run yet.
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        if RunPaths(path).metrics.is_file():
            runs.append(path)
        elif (path / "sweep.json").is_file():
            spec = json.loads((path / "sweep.json").read_text())
            found = [
                path / "runs" / run_name(WeightPair(*pair), seed)
                for pair in spec["grid"]["weights"]
                for seed in spec["grid"]["seeds"]
            ]
            runs += [run for run in found if RunPaths(run).metrics.is_file()]
        elif (path / STUDY_SUMMARY).is_file():
            best = path / BEST_RUN_DIR
            if not RunPaths(best).metrics.is_file():
                raise TfrsMoviesError(
                    f"study {path} has no finished best run yet; run `tfrs-movies tune` on it "
                    "again to finish it"
                )
            runs.append(best)
        elif path.exists():
            raise TfrsMoviesError(
                f"{path} is neither a finished run (no metrics.json), a sweep (no sweep.json) "
                "nor a tuning study (no study.json)"
            )
        else:
            raise TfrsMoviesError(f"{path} does not exist")
    return list(dict.fromkeys(runs))


def _row_name(run: Path) -> str:
    """A sweep's run as ``sweep/run``, a study's best run as ``study/best (trial N)``."""
    if run.parent.name == "runs":
        return f"{run.parent.parent.name}/{run.name}"
    summary = run.parent / STUDY_SUMMARY
    if run.name == BEST_RUN_DIR and summary.is_file():
        return f"{run.parent.name}/best (trial {json.loads(summary.read_text())['best_trial']})"
    return run.name


def compare_runs(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Collects the headline metrics of runs (sweeps expanded) for a side-by-side table.

    Args:
        paths: run, sweep and/or study directories.

    Returns:
        ``{"runs": [{"name", "run_dir", "retrieval_weight", "rating_weight", "seed",
        "dataset", "split_seed", metric...}], "baselines": {name: {...}}, "same_split": bool}``.

    Raises:
        TfrsMoviesError: a path is neither a run, a sweep nor a study.
    """
    rows = []
    baselines: dict[str, Any] = {}
    splits = set()
    for run in expand_runs(paths):
        run_paths = RunPaths(run)
        metrics = json.loads(run_paths.metrics.read_text())
        config_path = run_paths.config
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        train = config.get("train", {})
        protocol = metrics.get("protocol", {})
        name = _row_name(run)
        row = {
            "name": name,
            "run_dir": run.as_posix(),
            "retrieval_weight": train.get("retrieval_weight"),
            "rating_weight": train.get("rating_weight"),
            "seed": train.get("seed"),
            "dataset": protocol.get("dataset"),
            "split_seed": protocol.get("split_seed"),
        }
        row.update({k: metrics.get("model", {}).get(k) for k in COMPARE_KEYS})
        row["fit_seconds"] = metrics.get("training", {}).get("fit_seconds")
        rows.append(row)
        splits.add(
            (
                protocol.get("dataset"),
                protocol.get("split"),
                protocol.get("split_seed"),
                protocol.get("num_test_ratings"),
            )
        )
        if not baselines and metrics.get("baselines"):
            baselines = metrics["baselines"]
    return {"runs": rows, "baselines": baselines, "same_split": len(splits) <= 1}


def format_comparison(comparison: dict[str, Any]) -> str:
    """A plain-text table: one row per run (and per baseline when all runs share a split).

    Args:
        comparison: :func:`compare_runs` output.

    Returns:
        The table, with a last line naming the split (or warning that runs do not share one).
    """
    rows = comparison["runs"]
    if not rows:
        return "(no finished runs)"
    keys = [*COMPARE_KEYS, "fit_seconds"]
    entries = []
    for row in rows:
        weights = (
            f"{format_weight(row['retrieval_weight'])}:{format_weight(row['rating_weight'])}"
            if row["retrieval_weight"] is not None
            else "?"
        )
        entries.append((row["name"], weights, str(row["seed"]), row))
    if comparison["same_split"]:
        entries += [
            (f"[{name}]", "", "", values) for name, values in comparison["baselines"].items()
        ]
    width = max(12, *(len(name) for name, _, _, _ in entries)) + 2
    headers = ["weights", "seed", *("fit s" if k == "fit_seconds" else k for k in keys)]
    widths = [8, 5, *(max(len(k), 7) + 2 for k in keys)]
    lines = ["run".ljust(width) + "".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    for name, weights, seed, values in entries:
        cells = [weights, seed]
        for key in keys:
            value = values.get(key)
            cells.append(
                "-" if value is None else f"{value:.1f}" if key == "fit_seconds" else f"{value:.4f}"
            )
        lines.append(
            name.ljust(width) + "".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    first = rows[0]
    if comparison["same_split"]:
        lines.append(
            f"(all runs: {first['dataset']}, split seed {first['split_seed']}; "
            "[name] rows are baselines on that split)"
        )
    else:
        lines.append(
            "warning: these runs do not share one dataset/split; numbers are not "
            "directly comparable (baselines omitted)"
        )
    return "\n".join(lines)
