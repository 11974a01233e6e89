"""The picture of an embedding analysis: a 2-D projection of the movies, coloured by cluster.

Drawn with matplotlib's object-oriented API (``Figure`` without pyplot): no global backend or
figure state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from tfrs_movies.experiments.embeddings import MovieEmbeddings
from tfrs_movies.experiments.files import write_figure


def plot_projection(
    points: np.ndarray,
    labels: np.ndarray,
    movies: MovieEmbeddings,
    clusters: list[dict[str, Any]],
    path: Path,
    num_labels: int = 15,
    title: str = "",
) -> None:
    """Scatter of the 2-D projection, coloured by cluster, the most-rated titles labelled.

    Args:
        points: (n, 2) projected embeddings.
        labels: (n,) cluster per movie.
        movies: the movies (titles, ratings for marker size and labels).
        clusters: :func:`describe_clusters` output (legend: dominant genre per cluster).
        path: the PNG to write.
        num_labels: how many of the most-rated titles to write beside their points.
    """
    figure = Figure(figsize=(10, 8), dpi=110)
    axes = figure.subplots()
    colors = matplotlib.colormaps["tab10" if len(clusters) <= 10 else "tab20"]
    sizes = 6 + 40 * np.sqrt(movies.num_ratings / max(1, movies.num_ratings.max()))
    for rank, cluster in enumerate(sorted(clusters, key=lambda c: c["cluster"])):
        members = labels == cluster["cluster"]
        genres = ", ".join(g["genre"] for g in cluster["dominant_genres"][:2]) or "no genre"
        axes.scatter(
            points[members, 0],
            points[members, 1],
            s=sizes[members],
            color=colors(rank % colors.N),
            alpha=0.55,
            linewidths=0,
            label=f"{cluster['cluster']}: {genres} ({cluster['size']})",
        )
    most_rated = np.argsort(-movies.num_ratings, kind="stable")[:num_labels]
    axes.autoscale_view()
    pixels = axes.transData.transform(points[most_rated])
    texts = [_short(str(movies.titles[i])) for i in most_rated]
    for i, text, offset in zip(most_rated, texts, _label_offsets(pixels, texts), strict=True):
        axes.scatter(
            points[i, 0],
            points[i, 1],
            s=sizes[i],
            facecolors="none",
            edgecolors="black",
            linewidths=0.8,
        )
        axes.annotate(
            text,
            points[i],
            xytext=offset,
            textcoords="offset pixels",
            fontsize=8,
            ha="left" if offset[0] >= 0 else "right",
            va="center",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.3"},
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.75, "lw": 0},
        )
    axes.legend(
        title="cluster: top genres (movies)",
        fontsize=8,
        title_fontsize=8,
        loc="best",
        markerscale=1.5,
        framealpha=0.9,
    )
    axes.set_title(title or "Movie embeddings, PCA of unit vectors", fontsize=11)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.grid(alpha=0.25)
    write_figure(figure, path)


def _label_offsets(
    anchors: np.ndarray, texts: Sequence[str], char_px: float = 6.0, line_px: float = 13.0
) -> list[tuple[float, float]]:
    """Greedy label placement: per anchor, the first candidate offset whose box is free.

    Args:
        anchors: (n, 2) anchor positions in display pixels.
        texts: the n labels (their box is estimated from the character count).

    Returns:
        n (dx, dy) offsets in pixels (the last candidate when none is free).
    """
    candidates = [
        (dx * r, dy * r)
        for r in (8, 22, 38, 56)
        for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0))
    ]
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for (x, y), text in zip(anchors, texts, strict=True):
        width, height = char_px * len(text) + 6, line_px
        chosen = candidates[-1]
        for dx, dy in candidates:
            left = x + dx if dx >= 0 else x + dx - width
            box = (left, y + dy - height / 2, left + width, y + dy + height / 2)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
            ):
                chosen = (dx, dy)
                break
        dx, dy = chosen
        left = x + dx if dx >= 0 else x + dx - width
        placed.append((left, y + dy - height / 2, left + width, y + dy + height / 2))
        offsets.append(chosen)
    return offsets


def _short(title: str, limit: int = 32) -> str:
    return title if len(title) <= limit else title[: limit - 1] + "…"
