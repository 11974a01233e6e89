"""A sweep's tables: ``results.csv`` (one row per run) and ``results.md`` (mean ± sd per pair).

Runs with ``rating_weight == 0`` leave the rating head untrained, so their RMSE/MAE are
meaningless: they are tabulated with a mark (†). Runs with ``retrieval_weight == 0`` are marked
(‡): their recall measures towers trained only through the rating head.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.atomic import write_atomic
from tfrs_movies.experiments.grid import RunRecord, WeightPair

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
SUMMARY_KEYS = (*CSV_METRICS, "fit_seconds", "total_seconds")
UNTRAINED_RATING_MARK = "†"
UNTRAINED_RETRIEVAL_MARK = "‡"
# (column title, metric key, decimals) of the Markdown table.
_MD_COLUMNS = (
    ("Recall@10", "recall@10", 4),
    ("NDCG@10", "ndcg@10", 4),
    ("Top-100 acc.", "factorized_top_100", 4),
    ("RMSE", "rmse", 4),
    ("MAE", "mae", 4),
    ("fit s", "fit_seconds", 1),
    ("total s", "total_seconds", 1),
)


def write_results_csv(records: Sequence[RunRecord], path: Path) -> None:
    """Writes one row per run (see :data:`CSV_COLUMNS`); metrics empty unless the run is done.

    Args:
        records: the grid cells, in grid order.
        path: the CSV file to (atomically) write.
    """
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
        for key in SUMMARY_KEYS:
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


def summarize(records: Sequence[RunRecord]) -> list[PairSummary]:
    """Groups records by weight pair (grid order) into mean ± sd over finished seeds.

    Args:
        records: the grid cells.

    Returns:
        One summary per weight pair, in the order the pairs first appear.
    """
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


def results_markdown(records: Sequence[RunRecord], baselines: dict[str, dict[str, float]]) -> str:
    """The Markdown results table: one row per weight pair, baselines as reference rows.

    Args:
        records: the grid cells.
        baselines: ``{name: {metric: value}}`` on the sweep's split (may be empty).

    Returns:
        The whole ``results.md`` text.
    """
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
