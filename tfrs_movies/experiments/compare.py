"""Side-by-side comparison of finished runs; a sweep directory stands for its runs."""

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


def expand_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories named by ``paths``; a sweep directory expands to its finished runs.

    Args:
        paths: run directories and/or sweep directories.

    Returns:
        The run directories, each once, in the order given.

    Raises:
        TfrsMoviesError: a path is neither a run (metrics.json) nor a sweep (sweep.json).
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
        elif path.exists():
            raise TfrsMoviesError(
                f"{path} is neither a finished run (no metrics.json) nor a sweep (no sweep.json)"
            )
        else:
            raise TfrsMoviesError(f"{path} does not exist")
    return list(dict.fromkeys(runs))


def compare_runs(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Collects the headline metrics of runs (sweeps expanded) for a side-by-side table.

    Args:
        paths: run directories and/or sweep directories.

    Returns:
        ``{"runs": [{"name", "run_dir", "retrieval_weight", "rating_weight", "seed",
        "dataset", "split_seed", metric...}], "baselines": {name: {...}}, "same_split": bool}``.

    Raises:
        TfrsMoviesError: a path is neither a run nor a sweep.
    """
    rows = []
    baselines: dict[str, Any] = {}
    splits = set()
    for run in expand_runs(paths):
        paths = RunPaths(run)
        metrics = json.loads(paths.metrics.read_text())
        config_path = paths.config
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        train = config.get("train", {})
        protocol = metrics.get("protocol", {})
        name = run.name if run.parent.name != "runs" else f"{run.parent.parent.name}/{run.name}"
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
