"""The training entry point: smoke test, determinism, resume, run-directory contract, quality."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_OVERRIDES
from tfrs_movies.config import load_config
from tfrs_movies.errors import TfrsMoviesError

tf = pytest.importorskip("tensorflow")

from tfrs_movies.evaluation.model import HEADLINE_METRICS as HEADLINE  # noqa: E402
from tfrs_movies.train import train_and_evaluate  # noqa: E402
from tfrs_movies.train.callbacks import EpochAverage, TrainingWeightsBack  # noqa: E402
from tfrs_movies.train.fit import epoch_order, epochs_dataset  # noqa: E402
from tfrs_movies.train.optimizers import LazyAdam  # noqa: E402
from tfrs_movies.train.reporting import EpochTensorBoard, StepProgress  # noqa: E402
from tfrs_movies.train.threads import thread_pools  # noqa: E402


def _quiet(message: str) -> None:
    pass


def test_smoke_whole_entry_point(tiny_run: Path):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    model = metrics["model"]
    for key in HEADLINE + tuple(f"factorized_top_{k}" for k in (1, 5, 10, 50)):
        assert math.isfinite(model[key]), key
    assert 0.0 <= model["recall@10"] <= model["recall@100"] <= 1.0
    assert model["factorized_top_1"] <= model["factorized_top_10"] <= model["factorized_top_100"]
    # Ratings of the synthetic source span 0.5-5 around ~3.5: a trained head is well inside 2.
    assert 0.0 < model["mae"] <= model["rmse"] < 2.0
    history = metrics["training"]["history"]
    assert len(history) == 2 and all(math.isfinite(h["retrieval_loss"]) for h in history)
    assert history[1]["retrieval_loss"] < history[0]["retrieval_loss"]  # it learns
    assert metrics["protocol"]["split"] == "random" and metrics["protocol"]["split_seed"] == 42
    for name in (
        "config.json",
        "metrics.json",
        "manifest.json",
        "vocab/movies.csv",
        "seen/indptr.npy",
        "retrieval_index/saved_model.pb",
        "exact_index/saved_model.pb",
        "ranking_model/saved_model.pb",
    ):
        assert (tiny_run / name).is_file(), name
    assert not tiny_run.with_name(tiny_run.name + ".partial").exists()
    saved = load_config(tiny_run / "config.json")
    assert saved == load_config(None, TINY_OVERRIDES)


def test_same_seed_gives_identical_metrics(tiny_run: Path, tmp_path: Path):
    again = train_and_evaluate(load_config(None, TINY_OVERRIDES), tmp_path / "again", log=_quiet)
    first = json.loads((tiny_run / "metrics.json").read_text())
    for key in HEADLINE:
        assert round(again.metrics["model"][key], 4) == round(first["model"][key], 4), key
    # The exported index too: the same movie vectors give the same ScaNN index, which
    # answers every user identically (its k-means starts are repeatable; see build_scann).
    timing = "build_seconds"
    assert {**again.metrics["index"], timing: 0} == {**first["index"], timing: 0}
    vectors = [np.load(run / "vocab" / "movie_vectors.npy") for run in (tiny_run, again.run_dir)]
    np.testing.assert_array_equal(*vectors)
    users = tf.constant((tiny_run / "vocab" / "users.txt").read_text().split())
    answers = [
        tf.saved_model.load(str(run / "retrieval_index"))(users)
        for run in (tiny_run, again.run_dir)
    ]
    np.testing.assert_array_equal(answers[0][1].numpy(), answers[1][1].numpy())
    np.testing.assert_array_equal(answers[0][0].numpy(), answers[1][0].numpy())


@pytest.mark.parametrize("epoch_average_decay", [0.67, 0.0], ids=["averaged", "not-averaged"])
@pytest.mark.parametrize("interrupt_at", ["epoch 1/", "refit epoch 1/"], ids=["fit", "refit"])
def test_resume_after_interruption_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, interrupt_at: str, epoch_average_decay: float
):
    config = load_config(
        None,
        [
            *TINY_OVERRIDES,
            "train.epochs=3",
            "train.refit=always",
            f"train.epoch_average_decay={epoch_average_decay}",
        ],
    )
    reference = train_and_evaluate(config, tmp_path / "reference", log=_quiet)
    assert reference.metrics["training"]["refit"]["epochs_run"] >= 2

    def interrupt(message: str) -> None:
        if message.startswith(interrupt_at):
            raise KeyboardInterrupt

    run_dir = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, run_dir, log=interrupt)
    assert not run_dir.exists() and run_dir.with_name("interrupted.partial").is_dir()
    with pytest.raises(TfrsMoviesError, match="--resume"):
        train_and_evaluate(config, run_dir, log=_quiet)
    lines: list[str] = []
    resumed = train_and_evaluate(config, run_dir, resume=True, log=lines.append)
    assert any("resumed from" in line for line in lines), lines
    assert not any(line.startswith(interrupt_at) for line in lines), lines
    if interrupt_at.startswith("refit"):  # the first fit was complete: not one epoch again
        assert not any(line.startswith("epoch ") for line in lines), lines
        assert any(line.startswith("refit epoch 2/") for line in lines), lines
    for key in HEADLINE:
        assert resumed.metrics["model"][key] == pytest.approx(
            reference.metrics["model"][key], abs=1e-6
        ), key


def test_refit_trains_a_new_model_on_the_whole_training_split_for_the_best_epoch_count(
    tiny_run: Path,
):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    training, protocol = metrics["training"], metrics["protocol"]
    assert training["refit"]["epochs_run"] == training["best_epoch"] >= 1
    assert len(training["refit"]["history"]) == training["best_epoch"]
    assert "val_recall@10" not in training["refit"]["history"][0]  # nothing held out
    assert protocol["model_fitted_on"].startswith("the whole training split (refitted")
    # The exported vocabulary is the refit's: every user with a training rating has a row.
    from tfrs_movies.data.prepare import prepare_data

    prepared = prepare_data(load_config(tiny_run / "config.json"), log=_quiet)
    assert prepared.validation.num_ratings > 0
    users = (tiny_run / "vocab" / "users.txt").read_text().split()
    assert len(users) == len(np.unique(prepared.train.user_index))


@pytest.mark.parametrize(
    ("refit", "validation_fraction", "refits"),
    [("auto", 0.2, True), ("never", 0.2, False), ("auto", 0.0, False), ("auto", 0.04, False)],
)
def test_refit_setting_and_the_auto_rule(refit, validation_fraction, refits):
    from tfrs_movies.data.prepare import prepare_data
    from tfrs_movies.train.run import refits as run_refits

    config = load_config(
        None,
        [
            *TINY_OVERRIDES,
            f"train.refit={refit}",
            f"data.validation_fraction={validation_fraction}",
        ],
    )
    assert run_refits(prepare_data(config, log=_quiet), config) is refits


def test_no_refit_keeps_the_early_stopped_model_and_background_baselines_match_in_process(
    tmp_path: Path,
):
    config = load_config(None, [*TINY_OVERRIDES, "train.refit=never", "eval.baselines=true"])
    assert config.eval.baselines_in_background  # the default
    lines: list[str] = []
    result = train_and_evaluate(config, tmp_path / "run", log=lines.append)
    assert result.metrics["training"]["refit"] is None
    assert result.metrics["protocol"]["model_fitted_on"] == (
        "the training split minus the validation carve"
    )
    # Without a refit the run's data is the data its baselines were chosen and fitted on.
    from tfrs_movies.evaluation.run_baselines import evaluate_run_baselines

    here = evaluate_run_baselines(result.prepared, config)
    written = json.loads((result.run_dir / "metrics.json").read_text())["baselines"]
    assert set(written) == set(here) >= {"most_popular", "ease", "ials", "biased_mf"}
    for name, metrics in here.items():
        for key in ("recall@10", "ndcg@10", "rmse"):
            if key in metrics:
                assert written[name][key] == pytest.approx(metrics[key], rel=1e-9), (name, key)
    assert written["ials"]["params"] == here["ials"]["params"]
    assert any(line.startswith("baselines: fitted in a background process in ") for line in lines)


def test_existing_run_directory_is_not_overwritten_silently(tiny_run: Path):
    with pytest.raises(TfrsMoviesError, match="already exists"):
        train_and_evaluate(load_config(None, TINY_OVERRIDES), tiny_run, log=_quiet)


@pytest.mark.slow
def test_ml100k_ci_sized_run_beats_tutorial_and_most_popular_floors(ml100k_dir, tmp_path):
    """Default model on ml-100k, training capped to fit CI: floors the tutorial model
    (Recall@10 0.094, RMSE 1.09) and most-popular (Recall@10 0.118) both fail."""
    config = load_config(
        None,
        [
            f"data.source={ml100k_dir}",
            "train.epochs=6",
            "eval.baselines=false",
            "train.tensorboard=false",
        ],
    )
    result = train_and_evaluate(config, tmp_path / "ml100k", log=_quiet)
    model = result.metrics["model"]
    assert result.metrics["training"]["fit_seconds"] <= 60
    assert model["recall@10"] >= 0.15
    assert model["rmse"] <= 0.96
    assert model["factorized_top_100"] >= 0.30
    assert result.metrics["index"]["recall_at_10_vs_exact"] >= 0.95


@pytest.mark.parametrize("num_replicas", [1, 2])
@pytest.mark.parametrize("num_examples", [20, 21, 24], ids=["partial", "one-over", "whole"])
def test_epoch_stream_is_each_epochs_shuffle_in_batches(num_examples, num_replicas):
    inputs = {
        "user": np.arange(num_examples, dtype=np.int64),
        "rating": np.arange(num_examples, dtype=np.float32) / 2,
    }
    dataset, steps_per_epoch = epochs_dataset(
        inputs, 8, seed=3, epochs=range(2, 5), num_replicas=num_replicas
    )
    # Two replicas cannot split a last batch of one example: it is dropped.
    keep = num_examples - 1 if num_replicas == 2 and num_examples % 8 == 1 else num_examples
    assert steps_per_epoch == -(-keep // 8)
    # Without tf.data's autotuning, whose thread an iterator's destructor waited on for seconds.
    assert dataset.options().autotune.enabled is False
    batches = [{key: value.numpy() for key, value in batch.items()} for batch in dataset]
    assert len(batches) == 3 * steps_per_epoch
    for epoch in range(2, 5):
        order = epoch_order(num_examples, 3, epoch)[:keep]
        first = (epoch - 2) * steps_per_epoch
        expected = [order[start : start + 8] for start in range(0, keep, 8)]
        for batch, rows in zip(batches[first : first + steps_per_epoch], expected, strict=True):
            np.testing.assert_array_equal(batch["user"], rows)
            np.testing.assert_array_equal(batch["rating"], rows.astype(np.float32) / 2)


def _two_steps(optimizer, table: np.ndarray, gradients) -> tuple[np.ndarray, np.ndarray]:
    variable = tf.Variable(table)
    for gradient in gradients:
        optimizer.apply_gradients([(gradient, variable)])
    return variable.numpy(), optimizer._momentums[0].numpy()  # the table and its first moment


def test_lazy_adam_is_adam_on_touched_rows_and_leaves_other_rows_alone():
    table = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    values = tf.constant(np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3))
    # Row 1 twice: repeated rows are summed, as in a dense gradient.
    sparse = tf.IndexedSlices(values, tf.constant([1, 3, 1]), tf.constant([4, 3]))
    dense = tf.convert_to_tensor(sparse)
    lazy_table, lazy_m = _two_steps(LazyAdam(0.1), table, [sparse, sparse])
    adam_table, adam_m = _two_steps(tf.keras.optimizers.Adam(0.1), table, [dense, dense])
    # Touched rows: Adam's step exactly; untouched rows: value and moments unchanged.
    np.testing.assert_allclose(lazy_table[[1, 3]], adam_table[[1, 3]], rtol=1e-6)
    np.testing.assert_allclose(lazy_m[[1, 3]], adam_m[[1, 3]], rtol=1e-6)
    np.testing.assert_array_equal(lazy_table[[0, 2]], table[[0, 2]])
    np.testing.assert_array_equal(lazy_m[[0, 2]], 0.0)
    # A row touched once, then left: Adam keeps moving it on its momentum, LazyAdam does not.
    other = tf.IndexedSlices(values[:1], tf.constant([0]), tf.constant([4, 3]))
    lazy_table, _ = _two_steps(LazyAdam(0.1), table, [sparse, other])
    adam_table, _ = _two_steps(
        tf.keras.optimizers.Adam(0.1), table, [dense, tf.convert_to_tensor(other)]
    )
    after_first, _ = _two_steps(LazyAdam(0.1), table, [sparse])
    np.testing.assert_array_equal(lazy_table[[1, 3]], after_first[[1, 3]])
    assert not np.allclose(adam_table[[1, 3]], after_first[[1, 3]])


class _Snapshots(tf.keras.callbacks.Callback):
    """Records the model's weights (and the validation loss) at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.weights, self.val_losses = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.val_losses.append((logs or {}).get("val_loss"))


def _toy_data() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    return x, x @ np.array([[1.0], [-2.0], [0.5]], np.float32)


def _toy_fit(decay: float | None, with_validation: bool):
    """Three epochs of a dense model under SGD; snapshots inside and after the averaged stretch
    (``inside`` is empty without averaging)."""
    tf.keras.utils.set_random_seed(0)
    x, y = _toy_data()
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    inside, after = _Snapshots(), _Snapshots()
    if decay is None:
        callbacks = [after]
    else:
        average = EpochAverage(decay)
        callbacks = [average, inside, TrainingWeightsBack(average), after]
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=3,
        shuffle=False,
        validation_data=(x, y) if with_validation else None,
        callbacks=callbacks,
        verbose=0,
    )
    return inside, after


@pytest.mark.parametrize("with_validation", [True, False], ids=["validation", "no-validation"])
@pytest.mark.parametrize("decay", [0.5, 0.8])
def test_epoch_average_is_the_exponential_average_and_training_goes_on_from_its_own_weights(
    decay: float, with_validation: bool
):
    inside, after = _toy_fit(decay, with_validation)
    _, plain = _toy_fit(None, with_validation)
    # Training continues from its own weights: the trajectory is that of a run without averaging.
    for averaged_run, plain_run in zip(after.weights, plain.weights, strict=True):
        for mine, reference in zip(averaged_run, plain_run, strict=True):
            np.testing.assert_allclose(mine, reference, rtol=1e-6, atol=1e-7)
    # Between EpochAverage and TrainingWeightsBack the model holds the average, computed by hand.
    expected = None
    for epoch, training_weights in enumerate(after.weights):
        if expected is None:
            expected = training_weights
        else:
            pairs = zip(expected, training_weights, strict=True)
            expected = [decay * a + (1 - decay) * w for a, w in pairs]
        for got, want in zip(inside.weights[epoch], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(inside.weights[-1][0], after.weights[-1][0])  # it is not a no-op
    if with_validation:
        # Keras' validation pass saw the average: its loss is the averaged model's.
        x, y = _toy_data()
        kernel, bias = inside.weights[-1]
        expected_loss = float(np.mean((x @ kernel + bias - y) ** 2))
        assert after.val_losses[-1] == pytest.approx(expected_loss, rel=1e-5)


def test_epoch_tensorboard_writes_each_epoch_s_scalars_and_nothing_per_batch(
    tmp_path: Path, monkeypatch
):
    # Keras' own callback passes every batch's logs to tf.summary.scalar: the cost removed.
    # (tf_keras calls it through tensorflow.compat.v2, a module object of its own.)
    summary = tf.compat.v2.summary
    scalar_names: list[str] = []
    scalar = summary.scalar

    def counted_scalar(name, *args, **kwargs):
        scalar_names.append(name)
        return scalar(name, *args, **kwargs)

    monkeypatch.setattr(summary, "scalar", counted_scalar)
    x, y = _toy_data()
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        validation_data=(x, y),
        # fit_model's StepProgress has batch hooks, so Keras calls every callback's.
        callbacks=[
            StepProgress(steps_per_epoch=4, batch_size=16, epochs=2, log=_quiet),
            EpochTensorBoard(str(tmp_path)),
        ],
        verbose=0,
    )
    for run in ("train", "validation"):
        steps: dict[str, list[int]] = {}
        for path in (tmp_path / run).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    steps.setdefault(value.tag, []).append(event.step)
        assert steps["epoch_loss"] == [0, 1]  # Keras' standard tags, one value per epoch
        assert not [tag for tag in steps if tag.startswith("batch_")]
    assert scalar_names and not [name for name in scalar_names if name.startswith("batch_")]
    assert not list((tmp_path / "train").glob("*.profile-empty"))  # no profile either


def test_step_progress_logs_step_rate_and_eta_and_stays_quiet_in_short_epochs():
    lines: list[str] = []
    progress = StepProgress(steps_per_epoch=4, batch_size=100, epochs=2, log=lines.append)
    progress.on_epoch_begin(0)
    progress.on_train_batch_end(0)
    assert lines == []  # within the first 30 s: nothing
    progress.interval = 0.0
    progress.on_train_batch_end(1)
    assert len(lines) == 1
    assert lines[0].startswith("epoch 1/2 step 2/4 (50%)")
    assert "examples/s" in lines[0] and "ETA" in lines[0]


def test_step_progress_bar_fills_by_the_pass_it_draws(capsys):
    progress = StepProgress(
        steps_per_epoch=10,
        batch_size=100,
        epochs=1,
        log=lambda line: None,
        validation_steps=4,
        validation_batch_size=50,
        bar=True,
    )
    progress.interval = 0.0
    progress.on_epoch_begin(0)
    progress.on_train_batch_end(4)  # 5 of 10 training steps: half the bar
    assert "[" + "#" * 15 + "." * 15 + "] epoch 1/1 step 5/10 (50%)" in capsys.readouterr().out
    progress.on_test_begin()
    progress.on_test_batch_end(1)  # 2 of 4 validation steps: half, not a fifth
    drawn = capsys.readouterr().out
    assert "[" + "#" * 15 + "." * 15 + "] epoch 1/1 validation step 2/4 (50%)" in drawn
    progress.on_test_batch_end(3)
    assert "[" + "#" * 30 + "] epoch 1/1 validation step 4/4 (100%)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("intra_op_threads", "cores", "pools"),
    [(None, 2, (2, 1)), (None, 1, (2, 1)), (None, 16, (2, 8)), (0, 8, None), (3, 8, (0, 3))],
)
def test_thread_pools_for_each_setting(intra_op_threads, cores, pools):
    assert thread_pools(intra_op_threads, cores) == pools


def test_configure_threads_sizes_a_fresh_process_s_pools_and_keeps_a_started_one_s():
    # A fresh interpreter: TensorFlow has not started, so the pools take the default setting.
    code = (
        "import tensorflow as tf\n"
        "from tfrs_movies.hardware import available_cores\n"
        "from tfrs_movies.train.threads import configure_threads\n"
        "assert configure_threads(None)\n"
        "tf.constant(1.0) + 1.0\n"
        "pools = (tf.config.threading.get_inter_op_parallelism_threads(),\n"
        "         tf.config.threading.get_intra_op_parallelism_threads())\n"
        "assert pools == (2, max(1, available_cores() // 2)), pools\n"
        "assert configure_threads(None)\n"  # the same sizes again: allowed once started
        "assert not configure_threads(available_cores() + 1)\n"  # other sizes: kept
        "assert tf.config.threading.get_intra_op_parallelism_threads() == pools[1]\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
