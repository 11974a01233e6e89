"""Runs (or resumes) a loss-weight sweep: one complete run per (weight pair, seed) on one split.

Every run of a sweep shares one data split (``data.split_seed`` comes from the base config and is
never varied); only ``train.retrieval_weight``, ``train.rating_weight`` and ``train.seed`` change.
A sweep directory looks like::

    DIR/
      sweep.json        the grid (weight pairs, seeds) and the base config; fixed for DIR
      runs/r1-s0.1-seed0/   one complete run directory per (pair, seed), pipeline metrics included
      baselines.json    baseline metrics on the shared split, taken from the first run that has them
      results.csv       one row per run (status, headline metrics, times, error)
      results.md        one row per weight pair: mean ± sd over seeds, baselines as reference rows
      tradeoff.png      RMSE vs Recall@10 (or NDCG@10), error bars over seeds, Pareto front marked

Re-running the same sweep skips finished runs (a run is finished when its ``metrics.json`` holds
the exported pipeline's metrics) and retries failed or interrupted ones. A run that fails is
recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.atomic import write_atomic
from tfrs_movies.config import Config
from tfrs_movies.data import load_source
from tfrs_movies.data.schema import Ratings
from tfrs_movies.errors import ConfigError, one_line
from tfrs_movies.evaluation.pipeline import evaluate_pipeline
from tfrs_movies.experiments.grid import (
    PER_RUN_KEYS,
    RunRecord,
    WeightPair,
    run_config,
    run_name,
)
from tfrs_movies.experiments.plot import Y_METRICS, plot_tradeoff
from tfrs_movies.experiments.report import results_markdown, write_results_csv
from tfrs_movies.log import Log, print_line, silent
from tfrs_movies.rundir import RunPaths
from tfrs_movies.train import RunResult, train_and_evaluate

SWEEP_FORMAT_VERSION = 1
TrainFn = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What a sweep produced.

    Attributes:
        sweep_dir: the sweep directory.
        records: one per (pair, seed), pairs outer, seeds inner.
        baselines: ``{name: {metric: value}}`` on the shared split (empty if none were computed).
        files: the written summary files by role (``csv``, ``md``, ``png``).
    """

    sweep_dir: Path
    records: list[RunRecord]
    baselines: dict[str, dict[str, float]]
    files: dict[str, Path]

    @property
    def failed(self) -> list[RunRecord]:
        """The records of the runs that failed."""
        return [r for r in self.records if r.status == "failed"]


def train_run(
    config: Config,
    workdir: Path,
    *,
    resume: bool,
    overwrite: bool,
    ratings: Ratings | None,
    log: Log,
) -> RunResult:
    """One grid cell: trains a complete run, then scores its exported pipeline.

    Training does not load the Recommender; the pipeline metrics are added to the finished run's
    ``metrics.json`` by :func:`tfrs_movies.evaluation.pipeline.evaluate_pipeline`.

    Args:
        config: the run's config.
        workdir: the run directory.
        resume: continue an interrupted run (or score a complete run that lacks its pipeline
            metrics).
        overwrite: replace an interrupted run.
        ratings: the sweep's dataset, loaded once.
        log: receives the run's progress lines.

    Returns:
        The run, its metrics re-read after the pipeline metrics were added.
    """
    result = train_and_evaluate(
        config, workdir, resume=resume, overwrite=overwrite, ratings=ratings, log=log
    )
    evaluate_pipeline(result.run_dir, prepared=result.prepared, log=log)
    metrics = json.loads(RunPaths(result.run_dir).metrics.read_text())
    return dataclasses.replace(result, metrics=metrics)


def _comparable_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A JSON-normalized config dict without the per-run keys (weights, seed)."""
    values = json.loads(json.dumps(config_dict))
    for section, key in PER_RUN_KEYS:
        values.get(section, {}).pop(key, None)
    return values


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"key.path: old -> new"`` for every leaf where two nested dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _check_sweep_file(sweep_dir: Path, spec: dict[str, Any]) -> None:
    """Writes ``sweep.json`` on the first call; later calls must describe the same sweep.

    Raises:
        ConfigError: ``sweep_dir`` holds a sweep with another grid or base config.
    """
    path = sweep_dir / "sweep.json"
    if not path.exists():
        if (sweep_dir / "runs").exists():
            raise ConfigError(f"{sweep_dir} holds runs/ but no sweep.json; use another --workdir")
        write_atomic(path, json.dumps(spec, indent=2) + "\n")
        return
    try:
        saved = json.loads(path.read_text())
    except ValueError as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); use another --workdir") from None
    differences = _differences(saved.get("grid"), spec["grid"], "grid.")
    differences += _differences(
        _comparable_config(saved.get("base_config", {})),
        _comparable_config(spec["base_config"]),
        "config.",
    )
    if differences:
        shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
        raise ConfigError(
            f"{sweep_dir} already holds a different sweep ({shown}); re-run it with the same "
            "--weights, --seeds, data and overrides, or choose another --workdir"
        )


def _same_config(path: Path, config: Config) -> bool:
    """True when ``path`` (a run's config.json) matches ``config`` exactly."""
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(config.to_dict()))
    except (OSError, ValueError):
        return False


def _load_baselines(sweep_dir: Path, records: Iterable[RunRecord]) -> dict[str, Any]:
    """``baselines.json``, or the baselines of the first finished run that has them (saved)."""
    path = sweep_dir / "baselines.json"
    if path.exists():
        return json.loads(path.read_text())
    for record in records:
        if record.metrics and record.metrics.get("baselines"):
            baselines = record.metrics["baselines"]
            write_atomic(path, json.dumps(baselines, indent=2) + "\n")
            return baselines
    return {}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def write_summaries(
    sweep_dir: Path,
    records: Sequence[RunRecord],
    baselines: dict[str, dict[str, float]],
    y_metric: str = "recall@10",
) -> dict[str, Path]:
    """Writes results.csv, results.md and tradeoff.png into ``sweep_dir``.

    Returns:
        The written files by role (``csv``, ``md``, ``png``).
    """
    files = {
        "csv": sweep_dir / "results.csv",
        "md": sweep_dir / "results.md",
        "png": sweep_dir / "tradeoff.png",
    }
    write_results_csv(records, files["csv"])
    write_atomic(files["md"], results_markdown(records, baselines))
    plot_tradeoff(records, baselines, files["png"], y_metric=y_metric)
    return files


def run_sweep(
    base_config: Config,
    weights: Sequence[WeightPair],
    seeds: Sequence[int],
    sweep_dir: str | Path,
    *,
    y_metric: str = "recall@10",
    ratings: Ratings | None = None,
    train_fn: TrainFn = train_run,
    log: Log = print_line,
    run_log: Log | None = None,
) -> SweepResult:
    """Runs (or resumes) a loss-weight sweep and writes its results table and plot.

    Args:
        base_config: the config every run starts from; its weights and seed are replaced per run.
            Its ``eval.baselines`` applies once: the first run that trains while no baselines
            are known computes them, the others skip them (every run shares the split).
        weights: the weight pairs (outer loop).
        seeds: the model seeds (inner loop).
        sweep_dir: the sweep directory (created if needed).
        y_metric: the plot's y axis, one of :data:`Y_METRICS`.
        ratings: a loaded dataset to reuse; None loads ``base_config.data.source`` once.
        train_fn: ``train_fn(config, workdir, resume=, overwrite=, ratings=, log=)`` returning
            an object with ``.metrics``; default :func:`train_run` (training, then the exported
            pipeline's metrics).
        log: receives the sweep's progress lines.
        run_log: receives each run's own progress lines; None hides them.

    Returns:
        The records of every grid cell, the baselines and the written files.

    Raises:
        ConfigError: the sweep directory holds a different sweep, or the grid is empty.
        DataError: the data source cannot be loaded (every run would fail).
    """
    if y_metric not in Y_METRICS:
        raise ConfigError(f"--y must be one of {', '.join(Y_METRICS)}, got {y_metric!r}")
    if not weights or not seeds:
        raise ConfigError("a sweep needs at least one weight pair and one seed")
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "format_version": SWEEP_FORMAT_VERSION,
        "grid": {
            "weights": [[p.retrieval, p.rating] for p in weights],
            "weights_order": "retrieval_weight:rating_weight",
            "seeds": list(seeds),
        },
        "base_config": base_config.to_dict(),
    }
    _check_sweep_file(sweep_dir, spec)

    records = [
        RunRecord(pair, seed, sweep_dir / "runs" / run_name(pair, seed))
        for pair in weights
        for seed in seeds
    ]
    for record in records:
        metrics_path = RunPaths(record.run_dir).metrics
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
            # A run interrupted after training but before its pipeline was scored is resumed.
            if "pipeline" in metrics:
                record.status, record.skipped, record.metrics = "done", True, metrics
    baselines = _load_baselines(sweep_dir, records)
    total = len(records)
    to_train = sum(r.status != "done" for r in records)
    log(
        f"sweep {sweep_dir}: {len(weights)} weight pairs × {len(seeds)} seeds = {total} runs; "
        f"{total - to_train} already finished, {to_train} to train"
    )
    if to_train and ratings is None:
        d = base_config.data
        log(f"loading {d.source or 'the default source'} once for the whole sweep")
        ratings = load_source(d.source, manual_dir=d.manual_dir, data_dir=d.data_dir)
    trained_seconds: list[float] = []
    for position, record in enumerate(records, 1):
        head = f"[{position}/{total}] weights {record.pair.label} seed {record.seed}"
        if record.status == "done":
            log(f"{head} ... already finished, skipped ({record.run_dir.name})")
            continue
        started = time.perf_counter()
        try:
            config = run_config(
                base_config,
                record.pair,
                record.seed,
                baselines=base_config.eval.baselines and not baselines,
            )
            log(f"{head} ... training into {record.run_dir}")
            paths = RunPaths(record.run_dir)
            resume = _same_config(RunPaths(paths.partial).config, config) or _same_config(
                paths.config, config
            )
            result = train_fn(
                config,
                record.run_dir,
                resume=resume,
                overwrite=not resume,
                ratings=ratings,
                log=run_log or silent,
            )
            record.metrics = result.metrics
            record.status, record.error = "done", ""
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
            record.status, record.error = "failed", one_line(error)
        seconds = time.perf_counter() - started
        if record.status == "done":
            trained_seconds.append(seconds)
            if not baselines and record.metrics.get("baselines"):
                baselines = record.metrics["baselines"]
                write_atomic(sweep_dir / "baselines.json", json.dumps(baselines, indent=2) + "\n")
        remaining = sum(r.status == "pending" for r in records[position:])
        eta = ""
        if remaining and trained_seconds:
            eta = f", ETA {_duration(np.mean(trained_seconds) * remaining)}"
        outcome = (
            f"done in {_duration(seconds)}"
            if record.status == "done"
            else f"FAILED after {_duration(seconds)}: {record.error}"
        )
        log(f"{head} ... {outcome}{eta}")
        write_results_csv(records, sweep_dir / "results.csv")
    files = write_summaries(sweep_dir, records, baselines, y_metric=y_metric)
    done = sum(r.status == "done" for r in records)
    failed = [r for r in records if r.status == "failed"]
    log(
        f"sweep finished: {done}/{total} runs done"
        + (f", {len(failed)} failed (see results.csv)" if failed else "")
        + f"; wrote {', '.join(str(p) for p in files.values())}"
    )
    return SweepResult(sweep_dir, records, baselines, files)
