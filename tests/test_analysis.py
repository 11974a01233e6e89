"""Embedding analysis: purity on planted clusters, and analyze on a real tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfrs_movies.cli import main
from tfrs_movies.errors import ArtifactError
from tfrs_movies.experiments.analysis import (
    analyze_run,
    cluster_movies,
    genre_purity,
    random_purity,
)
from tfrs_movies.experiments.embeddings import load_movie_embeddings

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def planted(num_clusters: int = 4, per_cluster: int = 40, dim: int = 16, seed: int = 0):
    """Vectors around ``num_clusters`` random centres; each centre has its own main genre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_clusters, dim)) * 3
    truth = np.repeat(np.arange(num_clusters), per_cluster)
    vectors = centres[truth] + rng.normal(size=(len(truth), dim))
    genres = []
    for cluster in truth:
        own = {GENRES[cluster]} if rng.random() < 0.85 else set()
        noise = {GENRES[i] for i in rng.choice(len(GENRES), 1)}
        genres.append(tuple(sorted(own | noise)))
    return vectors.astype(np.float32), truth, genres


def test_genre_purity_definition():
    labels = np.array([0, 0, 0, 1, 1, 1])
    genres = [("A",), ("A", "B"), ("B",), ("C",), ("C",), ()]
    # Cluster 0: A in 2 of 3; cluster 1: C in 2 of 2 (the genre-less movie is ignored).
    assert genre_purity(labels, genres) == pytest.approx(4 / 5)
    assert np.isnan(genre_purity(labels, [()] * 6))


def test_purity_beats_random_on_planted_clusters():
    vectors, truth, genres = planted()
    labels = cluster_movies(vectors, 4, seed=0)
    assert len(np.unique(labels)) == 4
    purity = genre_purity(labels, genres)
    random_mean, random_sd = random_purity(labels, genres, num_shuffles=20, seed=0)
    assert purity > 0.8
    assert purity > random_mean + 5 * max(random_sd, 0.01)
    # Same cluster sizes, so the reference is reproducible for a fixed seed.
    assert random_purity(labels, genres, 20, seed=0) == (random_mean, random_sd)
    # With no structure at all, KMeans purity stays near random.
    noise = np.random.default_rng(1).normal(size=vectors.shape)
    noise_labels = cluster_movies(noise, 4, seed=0)
    assert genre_purity(noise_labels, genres) < random_purity(noise_labels, genres)[0] + 0.15


def write_fake_run(run_dir: Path, vectors: np.ndarray, genres) -> None:
    (run_dir / "vocab").mkdir(parents=True)
    lines = ["movie_id,title,genres,num_train_ratings"]
    for i, g in enumerate(genres):
        lines.append(f'{i + 1},"Movie {i}, The ({1990 + i % 10})",{"|".join(g)},{200 - i}')
    (run_dir / "vocab" / "movies.csv").write_text("\n".join(lines) + "\n")
    bias = np.zeros((len(vectors), 1), np.float32)
    np.save(run_dir / "vocab" / "movie_vectors.npy", np.hstack([vectors, bias]))


def test_analyze_planted_run_dir(tmp_path: Path):
    vectors, _, genres = planted()
    write_fake_run(tmp_path / "run", vectors, genres)
    movies = load_movie_embeddings(tmp_path / "run")
    assert movies.vectors.shape == (160, 16)  # bias column dropped
    assert movies.titles[0] == "Movie 0, The (1990)"
    result = analyze_run(tmp_path / "run", num_clusters=4, out_dir=tmp_path / "out")
    assert result.purity > result.random_purity + 0.2
    summary = json.loads((tmp_path / "out" / "clusters.json").read_text())
    assert summary["genre_purity"] == pytest.approx(result.purity, abs=1e-4)
    assert sorted(c["size"] for c in summary["clusters"]) == [40, 40, 40, 40]
    with pytest.raises(ArtifactError):
        load_movie_embeddings(tmp_path / "out")


def test_analyze_a_trained_tiny_run(tmp_path: Path, capsys):
    from tfrs_movies.config import load_config
    from tfrs_movies.model.multitask import CATALOGUE_ENSEMBLE_SIZE
    from tfrs_movies.train import train_and_evaluate

    config = load_config(
        None,
        [
            "data.source=synthetic:users=60,movies=150,ratings=3000,seed=0",
            "train.epochs=1",
            "train.batch_size=256",
            "eval.baselines=false",
            "train.tensorboard=false",
            "model.embedding_dim=8",
        ],
    )
    run_dir = train_and_evaluate(config, tmp_path / "run", log=lambda _: None).run_dir
    assert main(["analyze", str(run_dir), "--clusters", "3", "--labels", "5"]) == 0
    out = capsys.readouterr().out
    assert "genre purity" in out and "vs random" in out
    analysis = run_dir / "analysis"
    summary = json.loads((analysis / "clusters.json").read_text())
    # The movie vectors the run serves: every ensemble member's 8 dimensions, side by side.
    assert len(summary["clusters"]) == 3
    assert summary["embedding_dim"] == 8 * CATALOGUE_ENSEMBLE_SIZE
    assert sum(c["size"] for c in summary["clusters"]) == summary["num_movies"]
    assert all(c["top_titles"] and c["dominant_genres"] for c in summary["clusters"])
    markdown = (analysis / "clusters.md").read_text()
    assert "Genre purity" in markdown and "| cluster |" in markdown
    assert (analysis / "projection.png").read_bytes()[:4] == b"\x89PNG"
