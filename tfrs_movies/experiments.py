"""Loss-weight experiments: a grid of (retrieval_weight, rating_weight) pairs × model seeds.

Every run of a sweep shares one data split (``data.split_seed`` comes from the base config and is
never varied); only ``train.retrieval_weight``, ``train.rating_weight`` and ``train.seed`` change.
A sweep directory looks like::

    DIR/
      sweep.json        the grid (weight pairs, seeds) and the base config; fixed for DIR
      runs/r1-s0.1-seed0/   one complete run directory per (pair, seed) (see training.py)
      baselines.json    baseline metrics on the shared split, taken from the first run that has them
      results.csv       one row per run (status, headline metrics, times, error)
      results.md        one row per weight pair: mean ± sd over seeds, baselines as reference rows
      tradeoff.png      RMSE vs Recall@10 (or NDCG@10), error bars over seeds, Pareto front marked

Re-running the same sweep skips finished runs (a run is finished when its directory holds
``metrics.json``) and retries failed or interrupted ones. A run that fails is recorded with its
error and the sweep goes on.

Runs with ``rating_weight == 0`` leave the rating head untrained, so their RMSE/MAE are
meaningless: they are tabulated with a mark (†), drawn with open markers, and left out of the
Pareto front. Runs with ``retrieval_weight == 0`` are marked (‡): their recall measures towers
trained only through the rating head.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.config import Config, config_from_dict
from tfrs_movies.errors import ConfigError, TfrsMoviesError
from tfrs_movies.training import HEADLINE_METRICS

Log = Callable[[str], None]
TrainFn = Callable[..., Any]

SWEEP_FORMAT_VERSION = 1
# Keys set per run; they are ignored when comparing a sweep's base config with a re-run's.
PER_RUN_KEYS = (("train", "retrieval_weight"), ("train", "rating_weight"), ("train", "seed"))
CSV_METRICS = ("recall@10", "recall@100", "ndcg@10", "factorized_top_100", "rmse", "mae")
CSV_COLUMNS = (
    "weights",
    "retrieval_weight",
    "rating_weight",
    "seed",
    "status",
    *CSV_METRICS,
    "fit_seconds",
    "total_seconds",
    "run_dir",
    "error",
)
Y_METRICS = ("recall@10", "ndcg@10", "recall@100", "factorized_top_100")
UNTRAINED_RATING_MARK = "†"
UNTRAINED_RETRIEVAL_MARK = "‡"


def _print(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# The grid


def _format_weight(value: float) -> str:
    """``1.0 -> "1"``, ``0.1 -> "0.1"``: the shortest text that reads back to the same float."""
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


@dataclasses.dataclass(frozen=True, order=True)
class WeightPair:
    """One point of the loss-weight grid: ``loss = retrieval * L_retrieval + rating * L_rating``.

    Attributes:
        retrieval: ``train.retrieval_weight``.
        rating: ``train.rating_weight``.
    """

    retrieval: float
    rating: float

    @property
    def label(self) -> str:
        """``"R:S"`` as typed on the command line, e.g. ``"1:0.1"``."""
        return f"{_format_weight(self.retrieval)}:{_format_weight(self.rating)}"

    @property
    def slug(self) -> str:
        """A file-name-safe name, e.g. ``"r1-s0.1"``."""
        return f"r{_format_weight(self.retrieval)}-s{_format_weight(self.rating)}"


def parse_weights(text: str) -> list[WeightPair]:
    """Parses ``"R:S,R:S,..."`` (retrieval_weight:rating_weight) into weight pairs.

    Only the syntax is checked here; value ranges (e.g. both weights 0) are checked per run by the
    config validation, so one bad pair fails only its own runs.

    Raises:
        ConfigError: a pair is not two numbers separated by ':', or a pair repeats.
    """
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        retrieval, sep, rating = item.partition(":")
        try:
            if not sep:
                raise ValueError
            pair = WeightPair(float(retrieval), float(rating))
        except ValueError:
            raise ConfigError(
                f"--weights: {item!r} is not retrieval_weight:rating_weight, e.g. 1:0.1"
            ) from None
        if pair in pairs:
            raise ConfigError(f"--weights: the pair {pair.label} is listed twice")
        pairs.append(pair)
    if not pairs:
        raise ConfigError("--weights: give at least one retrieval_weight:rating_weight pair")
    return pairs


def parse_seeds(text: str) -> list[int]:
    """Parses ``"0,1,2"`` into model seeds.

    Raises:
        ConfigError: a seed is not an integer, or repeats.
    """
    seeds: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            seed = int(item)
        except ValueError:
            raise ConfigError(f"--seeds: {item!r} is not an integer") from None
        if seed in seeds:
            raise ConfigError(f"--seeds: seed {seed} is listed twice")
        seeds.append(seed)
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. 0,1,2")
    return seeds


def run_name(pair: WeightPair, seed: int) -> str:
    """The run directory name of one grid cell, e.g. ``"r1-s0.1-seed0"``."""
    return f"{pair.slug}-seed{seed}"


def run_config(base: Config, pair: WeightPair, seed: int, baselines: bool) -> Config:
    """The base config with this cell's weights and seed (validated).

    Raises:
        ConfigError: the weights are invalid (e.g. both 0).
    """
    return config_from_dict(
        {
            "train": {
                "retrieval_weight": pair.retrieval,
                "rating_weight": pair.rating,
                "seed": seed,
            },
            "eval": {"baselines": baselines},
        },
        base,
    )


# --------------------------------------------------------------------------------------------
# Files


def write_atomic(path: Path, data: str | bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _comparable_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A JSON-normalized config dict without the per-run keys (weights, seed, baselines flag)."""
    values = json.loads(json.dumps(config_dict))
    for section, key in PER_RUN_KEYS:
        values.get(section, {}).pop(key, None)
    return values


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
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


# --------------------------------------------------------------------------------------------
# Running


@dataclasses.dataclass
class RunRecord:
    """The outcome of one grid cell.

    Attributes:
        pair: the loss weights.
        seed: the model seed.
        run_dir: where the run lives (``DIR/runs/<name>``).
        status: ``"done"`` (metrics.json exists), ``"failed"`` or ``"pending"`` (not run yet).
        metrics: contents of metrics.json when done.
        error: one-line error message when failed.
        skipped: done by an earlier invocation (not retrained now).
    """

    pair: WeightPair
    seed: int
    run_dir: Path
    status: str = "pending"
    metrics: dict[str, Any] | None = None
    error: str = ""
    skipped: bool = False

    def value(self, key: str) -> float:
        """A model metric (or ``fit_seconds``/``total_seconds``); NaN when not available."""
        if not self.metrics:
            return math.nan
        if key in ("fit_seconds", "total_seconds"):
            return float(self.metrics.get("training", {}).get(key, math.nan))
        return float(self.metrics.get("model", {}).get(key, math.nan))


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
        return [r for r in self.records if r.status == "failed"]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def run_sweep(
    base_config: Config,
    weights: Sequence[WeightPair],
    seeds: Sequence[int],
    sweep_dir: str | Path,
    *,
    y_metric: str = "recall@10",
    ratings: Any = None,
    train_fn: TrainFn | None = None,
    log: Log = _print,
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
            an object with ``.metrics``; default :func:`tfrs_movies.training.train_and_evaluate`.
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
    if train_fn is None:
        from tfrs_movies.training import train_and_evaluate as train_fn
    quiet: Log = lambda message: None  # noqa: E731

    records = [
        RunRecord(pair, seed, sweep_dir / "runs" / run_name(pair, seed))
        for pair in weights
        for seed in seeds
    ]
    for record in records:
        metrics_path = record.run_dir / "metrics.json"
        if metrics_path.exists():
            record.status, record.skipped = "done", True
            record.metrics = json.loads(metrics_path.read_text())
    baselines = _load_baselines(sweep_dir, records)
    total = len(records)
    to_train = sum(r.status != "done" for r in records)
    log(
        f"sweep {sweep_dir}: {len(weights)} weight pairs × {len(seeds)} seeds = {total} runs; "
        f"{total - to_train} already finished, {to_train} to train"
    )
    if to_train and ratings is None:
        from tfrs_movies.data import load_source

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
            partial = record.run_dir.with_name(record.run_dir.name + ".partial")
            resume = _same_config(partial / "config.json", config)
            result = train_fn(
                config,
                record.run_dir,
                resume=resume,
                overwrite=not resume,
                ratings=ratings,
                log=run_log or quiet,
            )
            record.metrics = result.metrics
            record.status, record.error = "done", ""
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
            record.status, record.error = "failed", _one_line(error)
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


def _same_config(path: Path, config: Config) -> bool:
    """True when ``path`` (an interrupted run's config.json) matches ``config`` exactly."""
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(config.to_dict()))
    except (OSError, ValueError):
        return False


def _load_baselines(sweep_dir: Path, records: Iterable[RunRecord]) -> dict[str, Any]:
    path = sweep_dir / "baselines.json"
    if path.exists():
        return json.loads(path.read_text())
    for record in records:
        if record.metrics and record.metrics.get("baselines"):
            baselines = record.metrics["baselines"]
            write_atomic(path, json.dumps(baselines, indent=2) + "\n")
            return baselines
    return {}


# --------------------------------------------------------------------------------------------
# Results: CSV, Markdown, plot


def write_results_csv(records: Sequence[RunRecord], path: Path) -> None:
    """One row per run (see :data:`CSV_COLUMNS`); metrics empty unless the run is done."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row: dict[str, Any] = {
            "weights": record.pair.label,
            "retrieval_weight": record.pair.retrieval,
            "rating_weight": record.pair.rating,
            "seed": record.seed,
            "status": record.status,
            "run_dir": record.run_dir.as_posix(),
            "error": record.error,
        }
        for key in (*CSV_METRICS, "fit_seconds", "total_seconds"):
            value = record.value(key)
            row[key] = "" if math.isnan(value) else f"{value:.6g}"
        writer.writerow(row)
    write_atomic(path, buffer.getvalue())


@dataclasses.dataclass(frozen=True)
class PairSummary:
    """Mean and sample standard deviation over the finished seeds of one weight pair.

    Attributes:
        pair: the loss weights.
        num_done: finished runs; ``num_runs``: runs in the grid for this pair.
        mean, sd: ``{metric: value}``; sd is NaN with fewer than two finished runs.
    """

    pair: WeightPair
    num_done: int
    num_runs: int
    mean: dict[str, float]
    sd: dict[str, float]


SUMMARY_KEYS = (*CSV_METRICS, "fit_seconds", "total_seconds")


def summarize(records: Sequence[RunRecord]) -> list[PairSummary]:
    """Groups records by weight pair (grid order) into mean ± sd over finished seeds."""
    pairs = list(dict.fromkeys(r.pair for r in records))
    summaries = []
    for pair in pairs:
        group = [r for r in records if r.pair == pair]
        done = [r for r in group if r.status == "done"]
        mean, sd = {}, {}
        for key in SUMMARY_KEYS:
            values = np.array([r.value(key) for r in done], float)
            values = values[~np.isnan(values)]
            mean[key] = float(values.mean()) if len(values) else math.nan
            sd[key] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        summaries.append(PairSummary(pair, len(done), len(group), mean, sd))
    return summaries


def _mean_sd(summary: PairSummary, key: str, digits: int = 4) -> str:
    mean, sd = summary.mean[key], summary.sd[key]
    if math.isnan(mean):
        return "–"
    if math.isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


_MD_COLUMNS = (
    ("Recall@10", "recall@10", 4),
    ("NDCG@10", "ndcg@10", 4),
    ("Top-100 acc.", "factorized_top_100", 4),
    ("RMSE", "rmse", 4),
    ("MAE", "mae", 4),
    ("fit s", "fit_seconds", 1),
    ("total s", "total_seconds", 1),
)


def results_markdown(records: Sequence[RunRecord], baselines: dict[str, dict[str, float]]) -> str:
    """The Markdown results table: one row per weight pair, baselines as reference rows."""
    summaries = summarize(records)
    protocol = next((r.metrics["protocol"] for r in records if r.metrics), None)
    seeds = list(dict.fromkeys(r.seed for r in records))
    lines = ["# Loss-weight sweep", ""]
    if protocol:
        lines.append(
            f"Dataset {protocol['dataset']}, {protocol['split']} split (seed "
            f"{protocol['split_seed']}), {protocol['num_test_ratings']:,} test ratings; "
            f"model seeds {', '.join(map(str, seeds))}. Values are mean ± sample sd over seeds. "
            "Weights are retrieval_weight:rating_weight. Recall/NDCG are per user with training "
            "movies excluded; top-100 accuracy is the TFRS factorized top-K metric."
        )
        lines.append("")
    header = ["weights", "runs", *(name for name, _, _ in _MD_COLUMNS)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    any_untrained_rating = any_untrained_retrieval = False
    for summary in summaries:
        cells = [f"`{summary.pair.label}`", f"{summary.num_done}/{summary.num_runs}"]
        for _, key, digits in _MD_COLUMNS:
            cell = _mean_sd(summary, key, digits)
            if key in ("rmse", "mae") and summary.pair.rating == 0 and cell != "–":
                cell += f" {UNTRAINED_RATING_MARK}"
                any_untrained_rating = True
            if key in ("recall@10", "ndcg@10", "factorized_top_100") and (
                summary.pair.retrieval == 0 and cell != "–"
            ):
                cell += f" {UNTRAINED_RETRIEVAL_MARK}"
                any_untrained_retrieval = True
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    for name, row in baselines.items():
        cells = [f"*{name}* (baseline)", ""]
        for _, key, digits in _MD_COLUMNS:
            value = row.get(key)
            cells.append(f"{value:.{digits}f}" if isinstance(value, (int, float)) else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if any_untrained_rating:
        lines.append(
            f"{UNTRAINED_RATING_MARK} rating_weight = 0: the rating head is never trained, so "
            "RMSE/MAE are meaningless (shown for completeness; left out of the Pareto front)."
        )
    if any_untrained_retrieval:
        if any_untrained_rating:
            lines.append("")
        lines.append(
            f"{UNTRAINED_RETRIEVAL_MARK} retrieval_weight = 0: the retrieval loss is off; the "
            "towers are trained only through the rating head."
        )
    failed = [r for r in records if r.status == "failed"]
    if failed:
        lines.append("")
        lines.append("Failed runs:")
        lines += [f"- `{r.pair.label}` seed {r.seed}: {r.error}" for r in failed]
    if baselines:
        lines.append("")
        lines.append("Baselines were evaluated once, on the same split as every run.")
    return "\n".join(lines).rstrip() + "\n"


def pareto_front(rmse: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of points not dominated (lower RMSE and higher score are better).

    Args:
        rmse: (n,) RMSE per point; NaN points are never on the front.
        score: (n,) the retrieval metric per point.

    Returns:
        (m,) int indices of the Pareto-optimal points, sorted by RMSE.
    """
    rmse, score = np.asarray(rmse, float), np.asarray(score, float)
    valid = ~(np.isnan(rmse) | np.isnan(score))
    front = []
    for i in np.flatnonzero(valid):
        dominated = (
            valid
            & (rmse <= rmse[i])
            & (score >= score[i])
            & ((rmse < rmse[i]) | (score > score[i]))
        )
        if not dominated.any():
            front.append(i)
    return np.array(sorted(front, key=lambda i: rmse[i]), dtype=int)


_Y_LABELS = {
    "recall@10": "Recall@10",
    "ndcg@10": "NDCG@10",
    "recall@100": "Recall@100",
    "factorized_top_100": "factorized top-100 accuracy",
}


def plot_tradeoff(
    records: Sequence[RunRecord],
    baselines: dict[str, dict[str, float]],
    path: Path,
    y_metric: str = "recall@10",
) -> None:
    """Draws test RMSE (x) against ``y_metric`` (y), one point per weight pair.

    Error bars are ±1 sd over seeds. Pairs with rating_weight 0 are open markers, kept out of the
    Pareto front, and clamped to the right edge (with their true RMSE written) when their RMSE is
    far beyond the others. Baselines: horizontal lines for the y metric of most-popular and EASE,
    a vertical line for biased-MF RMSE.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [s for s in summarize(records) if s.num_done]
    figure, axes = plt.subplots(figsize=(8, 6), dpi=120)
    if not summaries:
        axes.text(
            0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=axes.transAxes
        )
        _save_figure(figure, path)
        return
    x = np.array([s.mean["rmse"] for s in summaries])
    y = np.array([s.mean[y_metric] for s in summaries])
    x_sd = np.nan_to_num(np.array([s.sd["rmse"] for s in summaries]))
    y_sd = np.nan_to_num(np.array([s.sd[y_metric] for s in summaries]))
    trained = np.array([s.pair.rating > 0 for s in summaries])

    biased_mf = baselines.get("biased_mf", {})
    reference_x = [biased_mf["rmse"]] if "rmse" in biased_mf else []
    meaningful_x = list(x[trained & ~np.isnan(x)]) + reference_x
    clamp_at = None
    if meaningful_x:
        low, high = min(meaningful_x), max(meaningful_x)
        span = max(high - low, 0.05 * high, 1e-3)
        if (~trained & (x > high + 1.5 * span)).any():
            clamp_at = high + 0.6 * span
            axes.set_xlim(low - 0.35 * span, high + 0.9 * span)

    front = pareto_front(np.where(trained, x, np.nan), y)
    if len(front) > 1:
        axes.plot(x[front], y[front], "--", color="tab:red", lw=1.2, zorder=1)
    for i, summary in enumerate(summaries):
        on_front = i in front
        color = "tab:red" if on_front else "tab:blue"
        x_plot, marker = x[i], "o"
        if clamp_at is not None and not trained[i] and x[i] > clamp_at:
            x_plot, marker = clamp_at, ">"
        axes.errorbar(
            x_plot,
            y[i],
            xerr=x_sd[i] if x_plot == x[i] else None,
            yerr=y_sd[i],
            fmt=marker,
            ms=9,
            color=color,
            ecolor=color,
            elinewidth=1,
            capsize=3,
            markerfacecolor=color if trained[i] else "white",
            markeredgewidth=1.6,
            zorder=3,
        )
        label = summary.pair.label
        if not trained[i]:
            label += f"\n(rating head untrained,\nRMSE {x[i]:.2f})"
        axes.annotate(
            label,
            (x_plot, y[i]),
            xytext=(7, 6),
            textcoords="offset points",
            fontsize=9,
            color=color,
        )

    styles = {
        "most_popular": ("tab:gray", ":"),
        "ease": ("tab:green", "-."),
        "biased_mf": ("tab:purple", "--"),
    }
    for name, (color, style) in styles.items():
        row = baselines.get(name, {})
        if name in ("most_popular", "ease") and y_metric in row:
            axes.axhline(
                row[y_metric],
                color=color,
                ls=style,
                lw=1.2,
                label=f"{name} {_Y_LABELS[y_metric]} {row[y_metric]:.3f}",
            )
        if name == "biased_mf" and "rmse" in row:
            axes.axvline(
                row["rmse"],
                color=color,
                ls=style,
                lw=1.2,
                label=f"biased MF RMSE {row['rmse']:.3f}",
            )

    from matplotlib.lines import Line2D

    handles, _ = axes.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="o", ls="--", color="tab:red", label="Pareto front"),
    ]
    if (trained & ~np.isin(np.arange(len(summaries)), front)).any():
        handles.append(Line2D([], [], marker="o", ls="", color="tab:blue", label="dominated"))
    if not trained.all():
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color="tab:blue",
                markerfacecolor="white",
                label="rating_weight 0 (RMSE meaningless)",
            )
        )
    axes.legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    protocol = next((r.metrics["protocol"] for r in records if r.metrics), {})
    seeds = len(dict.fromkeys(r.seed for r in records))
    dataset = str(protocol.get("dataset", "?"))
    dataset = dataset if len(dataset) <= 48 else dataset[:47] + "…"
    axes.set_title(
        f"Loss weights (retrieval:rating): test RMSE vs {_Y_LABELS[y_metric]}\n{dataset}, "
        f"{protocol.get('split', '?')} split seed {protocol.get('split_seed', '?')}; "
        f"mean ± sd over {seeds} seed{'s' if seeds != 1 else ''}",
        fontsize=10,
    )
    axes.set_xlabel("test RMSE  (← better)")
    axes.set_ylabel(f"test {_Y_LABELS[y_metric]}  (better ↑)")
    axes.grid(alpha=0.3)
    _save_figure(figure, path)


def _save_figure(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_atomic(Path(path), buffer.getvalue())


def write_summaries(
    sweep_dir: Path,
    records: Sequence[RunRecord],
    baselines: dict[str, dict[str, float]],
    y_metric: str = "recall@10",
) -> dict[str, Path]:
    """Writes results.csv, results.md and tradeoff.png into ``sweep_dir``."""
    files = {
        "csv": sweep_dir / "results.csv",
        "md": sweep_dir / "results.md",
        "png": sweep_dir / "tradeoff.png",
    }
    write_results_csv(records, files["csv"])
    write_atomic(files["md"], results_markdown(records, baselines))
    plot_tradeoff(records, baselines, files["png"], y_metric=y_metric)
    return files


# --------------------------------------------------------------------------------------------
# Compare


def expand_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories named by ``paths``; a sweep directory expands to its finished runs.

    Raises:
        TfrsMoviesError: a path is neither a run (metrics.json) nor a sweep (sweep.json).
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "metrics.json").is_file():
            runs.append(path)
        elif (path / "sweep.json").is_file():
            spec = json.loads((path / "sweep.json").read_text())
            found = [
                path / "runs" / run_name(WeightPair(*pair), seed)
                for pair in spec["grid"]["weights"]
                for seed in spec["grid"]["seeds"]
            ]
            runs += [run for run in found if (run / "metrics.json").is_file()]
        elif path.exists():
            raise TfrsMoviesError(
                f"{path} is neither a finished run (no metrics.json) nor a sweep (no sweep.json)"
            )
        else:
            raise TfrsMoviesError(f"{path} does not exist")
    return list(dict.fromkeys(runs))


COMPARE_KEYS = HEADLINE_METRICS


def compare_runs(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Collects the headline metrics of runs (sweeps expanded) for a side-by-side table.

    Returns:
        ``{"runs": [{"name", "run_dir", "retrieval_weight", "rating_weight", "seed",
        "dataset", "split_seed", metric...}], "baselines": {name: {...}}, "same_split": bool}``.
    """
    rows = []
    baselines: dict[str, Any] = {}
    splits = set()
    for run in expand_runs(paths):
        metrics = json.loads((run / "metrics.json").read_text())
        config_path = run / "config.json"
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
    """A plain-text table: one row per run (and per baseline when all runs share a split)."""
    rows = comparison["runs"]
    if not rows:
        return "(no finished runs)"
    keys = [*COMPARE_KEYS, "fit_seconds"]
    entries = []
    for row in rows:
        weights = (
            f"{_format_weight(row['retrieval_weight'])}:{_format_weight(row['rating_weight'])}"
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
