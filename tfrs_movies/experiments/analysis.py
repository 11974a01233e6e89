"""Embedding analysis of a run: do the movie embeddings group movies in a meaningful way?

``analyze_run(run_dir)`` reads ``vocab/movies.csv`` and ``vocab/movie_vectors.npy`` (the first
``dim`` columns; the last column is the retrieval bias and is dropped), and writes into
``RUN/analysis/`` (or another folder):

* ``clusters.json`` / ``clusters.md``: scikit-learn KMeans clusters of the movie embeddings (fixed
  ``random_state``), each with its size, most-rated titles and dominant genres; the genre purity
  of the clustering beside the purity of random clusterings of the same sizes.
* ``projection.png``: a 2-D PCA projection coloured by cluster, the most-rated titles labelled
  (drawn by :mod:`tfrs_movies.experiments.analysis_plot`).

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

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from tfrs_movies.atomic import write_atomic
from tfrs_movies.errors import ConfigError
from tfrs_movies.experiments.analysis_plot import plot_projection
from tfrs_movies.experiments.embeddings import MovieEmbeddings, load_movie_embeddings
from tfrs_movies.rundir import RunPaths


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
    data = _unit(vectors) if normalize else np.asarray(vectors, np.float64)
    return PCA(n_components=2, random_state=seed).fit_transform(data)


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
        return json.loads(RunPaths(run_dir).config.read_text())
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
