"""Embedding analysis of a run: do the movie embeddings group movies in a meaningful way?

``analyze_run(run_dir)`` reads ``vocab/movies.csv`` and ``vocab/movie_vectors.npy`` (the first
``dim`` columns; the last column is the retrieval bias and is dropped), and writes into
``RUN/analysis/`` (or another folder):

* ``clusters.json`` / ``clusters.md``: scikit-learn KMeans clusters of the movie embeddings (fixed
  ``random_state``), each with its size, most-rated titles and dominant genres; the genre purity
  of the clustering beside the purity of random clusterings of the same sizes.
* ``projection.png``: a 2-D PCA projection coloured by cluster, the most-rated titles labelled.

Genre purity (movies can carry several genres): the dominant genre of a cluster is the genre
carried by the most of its movies; the cluster's purity is the share of its movies carrying that
genre; the clustering's purity is the mean of the cluster purities weighted by cluster size (the
share of all clustered movies that carry their cluster's dominant genre). Random purity is the
same score for random clusterings with the very same cluster sizes (movies shuffled), averaged
over several seeded shuffles; ``lift = purity / random purity``. Movies without any genre are left
out of the purity (but clustered and plotted).

Caveat: when the run's movie tower uses genres as an input (``model.use_genres = true``; off by
default), part of the purity is put there by construction; with genres off the purity measures
only what the ratings taught.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.errors import ArtifactError, ConfigError

NO_GENRE = ("", "(no genres listed)")


@dataclasses.dataclass(frozen=True)
class MovieEmbeddings:
    """The movie side of a run.

    Attributes:
        movie_ids: (n,) str movie ids, in vocabulary order.
        titles: (n,) str titles.
        genres: n tuples of genre names (possibly empty).
        num_ratings: (n,) int training ratings per movie.
        vectors: (n, dim) float32 movie embeddings (retrieval bias column dropped).
    """

    movie_ids: np.ndarray
    titles: np.ndarray
    genres: list[tuple[str, ...]]
    num_ratings: np.ndarray
    vectors: np.ndarray

    def subset(self, keep: np.ndarray) -> MovieEmbeddings:
        """The movies where the (n,) boolean ``keep`` is true."""
        return MovieEmbeddings(
            self.movie_ids[keep],
            self.titles[keep],
            [g for g, k in zip(self.genres, keep, strict=True) if k],
            self.num_ratings[keep],
            self.vectors[keep],
        )


def load_movie_embeddings(run_dir: str | Path) -> MovieEmbeddings:
    """Reads ``vocab/movies.csv`` and ``vocab/movie_vectors.npy`` of a run.

    Raises:
        ArtifactError: files missing, or their row counts disagree.
    """
    vocab = Path(run_dir) / "vocab"
    movies_path, vectors_path = vocab / "movies.csv", vocab / "movie_vectors.npy"
    for path in (movies_path, vectors_path):
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; is {run_dir} a finished run directory?")
    with open(movies_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    vectors = np.load(vectors_path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(rows) or vectors.shape[1] < 2:
        raise ArtifactError(
            f"{vectors_path} has shape {vectors.shape}; expected ({len(rows)}, dim + 1) to match "
            f"{movies_path}"
        )
    return MovieEmbeddings(
        movie_ids=np.array([r["movie_id"] for r in rows], dtype=object),
        titles=np.array([r["title"] for r in rows], dtype=object),
        genres=[tuple(g for g in r["genres"].split("|") if g not in NO_GENRE) for r in rows],
        num_ratings=np.array([int(r["num_train_ratings"] or 0) for r in rows], np.int64),
        vectors=vectors[:, :-1].astype(np.float32),
    )


def cluster_movies(
    vectors: np.ndarray, num_clusters: int, seed: int = 0, normalize: bool = True
) -> np.ndarray:
    """KMeans cluster of each movie.

    Args:
        vectors: (n, dim) embeddings.
        num_clusters: k, 1 <= k <= n.
        seed: KMeans ``random_state``.
        normalize: cluster unit-length vectors (directions, i.e. cosine similarity), so that the
            norm, which tracks popularity in a retrieval model, does not drive the clusters.

    Returns:
        (n,) int cluster labels in [0, k).
    """
    from sklearn.cluster import KMeans

    if not 1 <= num_clusters <= len(vectors):
        raise ConfigError(f"--clusters must be in [1, {len(vectors)}], got {num_clusters}")
    data = _unit(vectors) if normalize else np.asarray(vectors, np.float64)
    model = KMeans(n_clusters=num_clusters, random_state=seed, n_init=10)
    return model.fit_predict(data).astype(np.int64)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def genre_purity(labels: np.ndarray, genres: Sequence[Sequence[str]]) -> float:
    """Size-weighted genre purity of a clustering (see the module docstring).

    Args:
        labels: (n,) cluster per movie.
        genres: n genre collections; movies with none are ignored.

    Returns:
        The share of (genre-carrying) movies that carry their cluster's dominant genre, in [0, 1];
        NaN when no movie has a genre.
    """
    labels = np.asarray(labels)
    has_genre = np.array([len(g) > 0 for g in genres], bool)
    if not has_genre.any():
        return float("nan")
    hits = 0
    for cluster in np.unique(labels[has_genre]):
        members = np.flatnonzero((labels == cluster) & has_genre)
        counts = Counter(g for i in members for g in set(genres[i]))
        hits += counts.most_common(1)[0][1]
    return hits / int(has_genre.sum())


def random_purity(
    labels: np.ndarray, genres: Sequence[Sequence[str]], num_shuffles: int = 20, seed: int = 0
) -> tuple[float, float]:
    """Genre purity of random clusterings with the same cluster sizes.

    Returns:
        (mean, sd) over ``num_shuffles`` seeded permutations of ``labels``.
    """
    rng = np.random.default_rng(seed)
    scores = [genre_purity(rng.permutation(labels), genres) for _ in range(num_shuffles)]
    return float(np.mean(scores)), float(np.std(scores))


def describe_clusters(
    movies: MovieEmbeddings, labels: np.ndarray, top_titles: int = 5, top_genres: int = 3
) -> list[dict[str, Any]]:
    """Per cluster (largest first): size, most-rated titles, dominant genres with shares."""
    clusters = []
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        by_ratings = members[np.argsort(-movies.num_ratings[members], kind="stable")]
        counts = Counter(g for i in members for g in set(movies.genres[i]))
        clusters.append(
            {
                "cluster": int(cluster),
                "size": len(members),
                "num_ratings": int(movies.num_ratings[members].sum()),
                "top_titles": [str(movies.titles[i]) for i in by_ratings[:top_titles]],
                "dominant_genres": [
                    {"genre": genre, "share": round(count / len(members), 4)}
                    for genre, count in counts.most_common(top_genres)
                ],
            }
        )
    return sorted(clusters, key=lambda c: -c["size"])


def project_2d(vectors: np.ndarray, normalize: bool = True, seed: int = 0) -> np.ndarray:
    """(n, 2) PCA projection of the (unit-length when ``normalize``) embeddings."""
    from sklearn.decomposition import PCA

    data = _unit(vectors) if normalize else np.asarray(vectors, np.float64)
    return PCA(n_components=2, random_state=seed).fit_transform(data)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 8), dpi=110)
    colors = plt.get_cmap("tab10" if len(clusters) <= 10 else "tab20")
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
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    from tfrs_movies.experiments import write_atomic

    write_atomic(path, buffer.getvalue())


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


@dataclasses.dataclass(frozen=True)
class AnalysisResult:
    """What :func:`analyze_run` found and wrote.

    Attributes:
        purity: genre purity of the KMeans clustering.
        random_purity: mean purity of same-size random clusterings; ``random_purity_sd`` its sd.
        clusters: per-cluster descriptions (largest first).
        files: written files by role (``json``, ``md``, ``png``).
    """

    purity: float
    random_purity: float
    random_purity_sd: float
    clusters: list[dict[str, Any]]
    files: dict[str, Path]

    @property
    def lift(self) -> float:
        return self.purity / self.random_purity if self.random_purity else float("nan")


def analyze_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    num_clusters: int = 8,
    min_ratings: int = 0,
    num_labels: int = 15,
    seed: int = 0,
    num_shuffles: int = 20,
) -> AnalysisResult:
    """Clusters and projects a run's movie embeddings; writes clusters.{json,md}, projection.png.

    Args:
        run_dir: a finished run directory.
        out_dir: where to write; default ``run_dir/analysis``.
        num_clusters: KMeans k.
        min_ratings: leave out movies with fewer training ratings (their embeddings are mostly
            initialization and side features).
        num_labels: most-rated titles labelled in the plot.
        seed: KMeans ``random_state`` and the seed of the random-cluster shuffles.
        num_shuffles: random clusterings averaged for the reference purity.

    Raises:
        ArtifactError: the run lacks its vocabulary files; ConfigError: bad k or filter.
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "analysis"
    movies = load_movie_embeddings(run_dir)
    total = len(movies.titles)
    movies = movies.subset(movies.num_ratings >= min_ratings)
    if len(movies.titles) < max(2, num_clusters):
        raise ConfigError(
            f"only {len(movies.titles)} of {total} movies have >= {min_ratings} training ratings; "
            f"need at least {max(2, num_clusters)} for {num_clusters} clusters"
        )
    labels = cluster_movies(movies.vectors, num_clusters, seed=seed)
    purity = genre_purity(labels, movies.genres)
    random_mean, random_sd = random_purity(labels, movies.genres, num_shuffles, seed=seed)
    clusters = describe_clusters(movies, labels)
    for cluster in clusters:
        members = np.flatnonzero(labels == cluster["cluster"])
        cluster["purity"] = round(
            genre_purity(np.zeros(len(members)), [movies.genres[i] for i in members]), 4
        )
    config = _run_config(run_dir)
    summary = {
        "run_dir": run_dir.as_posix(),
        "num_movies": len(movies.titles),
        "num_movies_in_run": total,
        "min_ratings": min_ratings,
        "embedding_dim": int(movies.vectors.shape[1]),
        "method": f"sklearn KMeans(k={num_clusters}, random_state={seed}, n_init=10) on "
        "unit-length movie embeddings (retrieval bias column dropped)",
        "purity_definition": "size-weighted mean over clusters of the share of the cluster's "
        "movies carrying its dominant genre (movies without genres ignored)",
        "genre_purity": round(purity, 4),
        "random_purity": round(random_mean, 4),
        "random_purity_sd": round(random_sd, 4),
        "random_definition": f"mean over {num_shuffles} seeded shuffles of the cluster labels "
        "(same cluster sizes)",
        "lift": round(purity / random_mean, 4) if random_mean else None,
        "model_uses_genres": config.get("model", {}).get("use_genres"),
        "clusters": clusters,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "clusters.json",
        "md": out_dir / "clusters.md",
        "png": out_dir / "projection.png",
    }
    from tfrs_movies.experiments import write_atomic

    write_atomic(files["json"], json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_atomic(files["md"], clusters_markdown(summary))
    points = project_2d(movies.vectors, seed=seed)
    dataset = config.get("data", {}).get("source") or run_dir.name
    plot_projection(
        points,
        labels,
        movies,
        clusters,
        files["png"],
        num_labels=num_labels,
        title=f"Movie embeddings of {run_dir.name} ({Path(str(dataset)).name}): PCA of unit "
        f"vectors, KMeans k={num_clusters}\ngenre purity {purity:.3f} vs random "
        f"{random_mean:.3f}",
    )
    return AnalysisResult(purity, random_mean, random_sd, clusters, files)


def _run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def clusters_markdown(summary: dict[str, Any]) -> str:
    """``clusters.md``: the purity comparison and one table row per cluster."""
    lines = [
        f"# Movie embedding clusters: {summary['run_dir']}",
        "",
        f"{summary['method']}; {summary['num_movies']} of {summary['num_movies_in_run']} movies "
        f"(min {summary['min_ratings']} training ratings).",
        "",
        f"**Genre purity {summary['genre_purity']:.3f}** vs random clusters of the same sizes "
        f"{summary['random_purity']:.3f} ± {summary['random_purity_sd']:.3f} "
        f"(lift {summary['lift']:.2f}×).",
        "",
        f"Purity: {summary['purity_definition']}. Random: {summary['random_definition']}.",
    ]
    if summary.get("model_uses_genres"):
        lines += [
            "",
            "Note: this run's movie tower takes genres as input (model.use_genres = true), so "
            "part of the purity is there by construction.",
        ]
    lines += [
        "",
        "| cluster | movies | purity | dominant genres | most-rated titles |",
        "|---:|---:|---:|---|---|",
    ]
    for cluster in summary["clusters"]:
        genres = ", ".join(
            f"{g['genre']} {100 * g['share']:.0f}%" for g in cluster["dominant_genres"]
        )
        titles = "; ".join(t.replace("|", "/") for t in cluster["top_titles"])
        lines.append(
            f"| {cluster['cluster']} | {cluster['size']} | {cluster['purity']:.2f} | {genres} | "
            f"{titles} |"
        )
    return "\n".join(lines) + "\n"


def format_analysis(result: AnalysisResult) -> str:
    """A short plain-text summary for the command line."""
    lines = [
        f"genre purity {result.purity:.3f} vs random {result.random_purity:.3f} ± "
        f"{result.random_purity_sd:.3f} (lift {result.lift:.2f}x)"
    ]
    for cluster in result.clusters:
        genres = ", ".join(g["genre"] for g in cluster["dominant_genres"])
        lines.append(
            f"  cluster {cluster['cluster']:>2} ({cluster['size']:>4} movies; {genres}): "
            + "; ".join(cluster["top_titles"][:3])
        )
    lines.append("wrote " + ", ".join(str(p) for p in result.files.values()))
    return "\n".join(lines)
