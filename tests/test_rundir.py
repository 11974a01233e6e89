"""The run directory: load_index, manifest verification, metrics updates, atomic replacement."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import tfrs_movies
from tests.conftest import REPO_ROOT
from tfrs_movies import rundir
from tfrs_movies.errors import ArtifactError
from tfrs_movies.rundir import layout, workdir

tf = pytest.importorskip("tensorflow")

from tfrs_movies.export import exact_top_k, recall_against_exact  # noqa: E402
from tfrs_movies.recommend import Recommender  # noqa: E402

# A complete run exported by the code before the run-directory module existed (read only).
BASELINE_RUN = REPO_ROOT.parent / "baseline" / "ml100k"


def copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_load_index_answers_as_exact_search_did_at_export(tiny_run: Path):
    index = tfrs_movies.load_index(tiny_run)
    paths = rundir.RunPaths(tiny_run)
    user_ids = paths.users_txt.read_text().split()
    movie_vectors = np.load(paths.movie_vectors)
    # `rows` is __call__ answering with rows of vocab/movies.csv (and of movie_vectors.npy).
    scores, scann_rows = (t.numpy()[:, :10] for t in index.rows(tf.constant(user_ids)))
    queries = index.query_vectors(tf.constant(user_ids)).numpy()
    exact_rows = exact_top_k(queries, movie_vectors, 10)
    # The loaded index reproduces the recall measured on the in-memory index at export.
    manifest = json.loads(paths.manifest.read_text())
    recall = recall_against_exact(scann_rows, exact_rows, 10)
    assert recall == pytest.approx(manifest["index"]["recall_at_10_vs_exact"], abs=1e-4)
    assert recall >= 0.9
    # ScaNN re-orders its candidates by exact dot product: the scores are the true ones.
    np.testing.assert_allclose(
        scores,
        np.take_along_axis(queries @ movie_vectors.T, scann_rows, axis=1),
        rtol=1e-4,
        atol=1e-4,
    )


def test_manifest_names_versions_and_checksums(tiny_run: Path):
    manifest = rundir.verify_run(tiny_run)
    assert manifest["format_version"] == rundir.FORMAT_VERSION
    for package in (
        "python",
        "tensorflow",
        "tf-keras",
        "tensorflow-recommenders",
        "scann",
        "tensorflow-datasets",
    ):
        assert manifest["versions"][package]
    assert manifest["split"] == "random" and manifest["split_seed"] == 42
    assert manifest["dataset"].startswith("synthetic")
    assert set(layout.REQUIRED_FILES) <= set(manifest["files"])
    assert len(manifest["files"]["vocab/movies.csv"]) == 64


@pytest.mark.parametrize(
    "victim", ["ranking_model/saved_model.pb", "vocab/movies.csv", "seen/movies.npy"]
)
def test_a_flipped_byte_is_detected(tiny_run: Path, tmp_path: Path, victim: str):
    copy = copy_run(tiny_run, tmp_path)
    path = copy / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=victim.replace(".", r"\.")):
        Recommender.load(copy)


def test_missing_file_and_incompatible_versions_are_named(tiny_run: Path, tmp_path: Path):
    copy = copy_run(tiny_run, tmp_path)
    (copy / "seen" / "indptr.npy").unlink()
    with pytest.raises(ArtifactError, match="indptr.npy is missing"):
        Recommender.load(copy)
    shutil.copy(tiny_run / "seen" / "indptr.npy", copy / "seen" / "indptr.npy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["versions"]["scann"] = "0.9.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="scann 0.9.0"):
        rundir.load_index(copy)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        rundir.load_index(tiny_run / "checkpoints")


def test_update_metrics_keeps_the_run_verified(tiny_run: Path, tmp_path: Path):
    copy = copy_run(tiny_run, tmp_path)
    before = json.loads((copy / "metrics.json").read_text())
    metrics = rundir.update_metrics(copy, {"pipeline": {"recall@10": 0.5}})
    assert metrics == {**before, "pipeline": {"recall@10": 0.5}}
    assert json.loads((copy / "metrics.json").read_text()) == metrics
    manifest = rundir.verify_run(copy)
    assert manifest["files"]["metrics.json"] == layout.sha256(copy / "metrics.json")
    assert not [p.name for p in copy.iterdir() if ".tmp-" in p.name or "pending" in p.name]


def fake_partial(folder: Path, marker: str) -> Path:
    """A folder finalize_run accepts: a config with a seed and one file saying which it is."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"seed": 0}}))
    (folder / "marker.txt").write_text(marker)
    return folder


def test_finalize_renames_into_place_and_writes_the_manifest(tmp_path: Path):
    partial = fake_partial(tmp_path / "run.partial", "new")
    run_dir = tmp_path / "run"
    rundir.finalize_run(partial, run_dir, {"model": {"rmse": np.float32(0.5)}})
    assert not partial.exists() and rundir.is_run(run_dir)
    assert json.loads((run_dir / "metrics.json").read_text()) == {"model": {"rmse": 0.5}}
    files = json.loads((run_dir / "manifest.json").read_text())["files"]
    assert set(files) == {"config.json", "marker.txt", "metrics.json"}


def test_overwrite_deletes_the_old_run_only_once_the_new_one_is_in_place(
    tmp_path: Path, monkeypatch
):
    run_dir = tmp_path / "run"
    rundir.finalize_run(fake_partial(tmp_path / "first", "old"), run_dir, {})
    deleted = []
    real_rmtree = shutil.rmtree

    def checked_rmtree(path, ignore_errors=False):
        # At the moment the old run goes, the new one is already complete under the name.
        assert rundir.is_run(run_dir) and (run_dir / "marker.txt").read_text() == "new"
        deleted.append(Path(path).name)
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(workdir.shutil, "rmtree", checked_rmtree)
    rundir.finalize_run(fake_partial(tmp_path / "run.partial", "new"), run_dir, {}, overwrite=True)
    assert deleted == [f"run.old-{os.getpid()}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.skipif(not (BASELINE_RUN / "manifest.json").is_file(), reason="no baseline run")
def test_a_run_exported_before_the_run_dir_module_still_verifies_and_loads():
    manifest = rundir.verify_run(BASELINE_RUN)
    assert manifest["format_version"] in rundir.READABLE_FORMATS
    user = rundir.RunPaths(BASELINE_RUN).users_txt.read_text().split()[0]
    scores, movie_ids = rundir.load_index(BASELINE_RUN)(tf.constant([user]))
    assert movie_ids.shape[1] == manifest["index"]["k"]
    assert np.all(np.diff(scores.numpy()[0]) <= 0)
