"""The sweep's trade-off plot ``tradeoff.png``: test RMSE against a retrieval metric.

Drawn with matplotlib's object-oriented API (``Figure`` without pyplot), so no global backend
or figure state is touched and nothing has to be closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tfrs_movies.experiments.files import write_figure
from tfrs_movies.experiments.grid import RunRecord
from tfrs_movies.experiments.report import summarize

Y_METRICS = ("recall@10", "ndcg@10", "recall@100", "factorized_top_100")
_Y_LABELS = {
    "recall@10": "Recall@10",
    "ndcg@10": "NDCG@10",
    "recall@100": "Recall@100",
    "factorized_top_100": "factorized top-100 accuracy",
}
# Baseline reference lines: (colour, line style).
_BASELINE_STYLES = {
    "most_popular": ("tab:gray", ":"),
    "ease": ("tab:green", "-."),
    "biased_mf": ("tab:purple", "--"),
}


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

    Args:
        records: the grid cells.
        baselines: ``{name: {metric: value}}`` on the sweep's split.
        path: the PNG to (atomically) write.
        y_metric: one of :data:`Y_METRICS`.
    """
    summaries = [s for s in summarize(records) if s.num_done]
    figure = Figure(figsize=(8, 6), dpi=120)
    axes = figure.subplots()
    if not summaries:
        axes.text(
            0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=axes.transAxes
        )
        write_figure(figure, path)
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
        color = "tab:red" if i in front else "tab:blue"
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

    for name, (color, style) in _BASELINE_STYLES.items():
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
    write_figure(figure, path)
