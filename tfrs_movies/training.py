"""Training: from a config to a complete run directory.

``train_and_evaluate(config, workdir)`` loads and splits the data, builds vocabularies and the
model, fits it with per-epoch progress, TensorBoard logs, checkpoints and early stopping on a
validation split carved from the training data, evaluates on the test split beside baselines,
and exports the run directory atomically (see :mod:`tfrs_movies.export`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.config import Config, save_config
from tfrs_movies.data import build_vocabularies, load_source, split_ratings
from tfrs_movies.data.schema import Ratings
from tfrs_movies.errors import ConfigError, TfrsMoviesError
from tfrs_movies.model.features import FeatureTables, build_feature_tables

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Everything the model and the evaluation need, derived from the data and the config.

    Attributes:
        ratings: the whole dataset (its tables define the dataset index space).
        train: the training split (``fit`` ∪ ``validation``): what "seen" means at evaluation.
        fit: the part of ``train`` the model is fitted on; vocabularies come from it.
        validation: the part of ``train`` held out for early stopping (may be empty).
        test: the test split.
        user_vocab_of_row: (num_table_users,) int32 vocabulary index of each user-table row.
        movie_vocab_of_row: (num_table_movies,) int32, the same for movies; 0 = out of vocab.
        num_users, num_movies: vocabulary sizes (without the OOV row).
        tables: side-feature tables per vocabulary index.
        global_mean: mean rating of ``fit``.
        movie_frequencies: (num_movies + 1,) ratings per movie vocabulary index in ``fit``.
    """

    ratings: Ratings
    train: Ratings
    fit: Ratings
    validation: Ratings
    test: Ratings
    user_vocab_of_row: np.ndarray
    movie_vocab_of_row: np.ndarray
    num_users: int
    num_movies: int
    tables: FeatureTables
    global_mean: float
    movie_frequencies: np.ndarray

    def movie_row_of_vocab(self) -> np.ndarray:
        """(num_movies + 1,) dataset movie-table row of each vocabulary index; -1 for OOV."""
        rows = np.full(self.num_movies + 1, -1, np.int64)
        in_vocab = np.flatnonzero(self.movie_vocab_of_row > 0)
        rows[self.movie_vocab_of_row[in_vocab]] = in_vocab
        return rows

    def user_row_of_vocab(self) -> np.ndarray:
        """(num_users + 1,) dataset user-table row of each vocabulary index; -1 for OOV."""
        rows = np.full(self.num_users + 1, -1, np.int64)
        in_vocab = np.flatnonzero(self.user_vocab_of_row > 0)
        rows[self.user_vocab_of_row[in_vocab]] = in_vocab
        return rows

    def model_inputs(self, split: Ratings) -> dict[str, np.ndarray]:
        """Integer model inputs of a split: ``user``, ``movie``, ``rating``, ``timestamp``."""
        return {
            "user": self.user_vocab_of_row[split.user_index].astype(np.int32),
            "movie": self.movie_vocab_of_row[split.movie_index].astype(np.int32),
            "rating": split.rating.astype(np.float32),
            "timestamp": split.timestamp.astype(np.float32),
        }


def prepare_data(config: Config, ratings: Ratings | None = None, log: Log = _print) -> PreparedData:
    """Loads (unless given), splits and indexes the data as the config says.

    Raises:
        DataError: the source cannot be read; ConfigError: a split leaves nothing to train on.
    """
    d = config.data
    if ratings is None:
        ratings = load_source(d.source, manual_dir=d.manual_dir, data_dir=d.data_dir)
    train, test = split_ratings(
        ratings,
        method=d.split,
        test_fraction=d.test_fraction,
        seed=d.split_seed,
        leave_last_n=d.leave_last_n,
    )
    if train.num_ratings == 0 or test.num_ratings == 0:
        raise ConfigError(
            f"the {d.split} split of {ratings.name} left {train.num_ratings} training and "
            f"{test.num_ratings} test ratings; both must be non-empty"
        )
    if d.validation_fraction > 0:
        # Seeded apart from the test split so the test split never influences training choices.
        rng = np.random.default_rng([d.split_seed, 1])
        is_validation = rng.random(train.num_ratings) < d.validation_fraction
        fit, validation = train.subset(~is_validation), train.subset(is_validation)
    else:
        fit, validation = train, train.subset(np.zeros(train.num_ratings, bool))
    user_vocab, movie_vocab = build_vocabularies(fit)
    user_vocab_of_row = np.asarray(user_vocab.lookup(ratings.user_ids), np.int32)
    movie_vocab_of_row = np.asarray(movie_vocab.lookup(ratings.movie_ids), np.int32)
    num_movies = int(movie_vocab_of_row.max())
    frequencies = np.bincount(movie_vocab_of_row[fit.movie_index], minlength=num_movies + 1)
    prepared = PreparedData(
        ratings=ratings,
        train=train,
        fit=fit,
        validation=validation,
        test=test,
        user_vocab_of_row=user_vocab_of_row,
        movie_vocab_of_row=movie_vocab_of_row,
        num_users=int(user_vocab_of_row.max()),
        num_movies=num_movies,
        tables=build_feature_tables(fit, user_vocab_of_row, movie_vocab_of_row),
        global_mean=float(fit.rating.mean()),
        movie_frequencies=frequencies.astype(np.int64),
    )
    log(
        f"data: {ratings.name}: {ratings.num_ratings:,} ratings; split {d.split} "
        f"(seed {d.split_seed}): fit {fit.num_ratings:,}, validation {validation.num_ratings:,}, "
        f"test {test.num_ratings:,}; vocabulary {prepared.num_users:,} users, "
        f"{prepared.num_movies:,} movies"
    )
    return prepared


def build_model(prepared: PreparedData, config: Config):
    """Builds (but does not compile) the multitask model for the prepared data."""
    from tfrs_movies.model.multitask import MovieLensModel

    return MovieLensModel(
        num_users=prepared.num_users,
        num_movies=prepared.num_movies,
        tables=prepared.tables,
        global_mean=prepared.global_mean,
        movie_frequencies=prepared.movie_frequencies,
        config=config.model,
        retrieval_weight=config.train.retrieval_weight,
        rating_weight=config.train.rating_weight,
        seed=config.train.seed,
    )


def make_optimizer(config: Config):
    import tensorflow as tf

    t = config.train
    if t.optimizer == "adagrad":
        return tf.keras.optimizers.Adagrad(t.learning_rate)
    return tf.keras.optimizers.Adam(t.learning_rate)


def make_dataset(
    inputs: dict[str, np.ndarray],
    batch_size: int,
    order: np.ndarray | None = None,
    num_replicas: int = 1,
):
    """A batched tf.data pipeline over in-memory inputs, in ``order`` when given.

    ``batch_size`` is the global batch size. With ``num_replicas`` > 1 (a tf.distribute
    strategy) each global batch is split across the replicas of all workers (DATA sharding:
    every worker reads the same ordered data and keeps its replicas' share of each batch), and
    a last partial batch smaller than ``num_replicas`` is dropped so no replica gets an empty
    batch (at most ``num_replicas - 1`` examples per epoch).
    """
    import tensorflow as tf

    if order is not None:
        inputs = {key: value[order] for key, value in inputs.items()}
    # tf.distribute (issue 8): no empty replica batches; shard by data, not files.
    num_examples = len(next(iter(inputs.values())))
    if num_replicas > 1 and 0 < num_examples % batch_size < num_replicas:
        keep = num_examples - num_examples % batch_size
        inputs = {key: value[:keep] for key, value in inputs.items()}
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size)
    if num_replicas > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of one epoch: a function of (seed, epoch) only, so resuming reproduces it."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def validation_recall(model, prepared: PreparedData, user_rows: np.ndarray) -> float:
    """Recall@10 on the validation split for ``user_rows``, excluding their ``fit`` movies."""
    from tfrs_movies import evaluation

    validation = prepared.validation.subset(np.isin(prepared.validation.user_index, user_rows))
    metrics = evaluation.topn_metrics(
        model_scores(model, prepared), prepared.fit, validation, ks=(10,), ndcg_k=10
    )
    return float(metrics["recall@10"])


@dataclasses.dataclass(frozen=True)
class FitResult:
    epochs_run: int
    best_epoch: int
    best_validation_value: float  # of the early-stopping metric (recall negated: lower is better)
    history: list[dict[str, float]]
    seconds: float
    examples_per_second: float


def fit_model(
    model,
    prepared: PreparedData,
    config: Config,
    checkpoint_dir: Path | None = None,
    tensorboard_dir: Path | None = None,
    log: Log = _print,
    resume_from: Path | None = None,
) -> FitResult:
    """Trains ``model`` epoch by epoch; checkpoints each epoch; stops early on validation loss.

    The model ends with the weights of its best validation epoch (the last epoch when there is
    no validation split). With ``checkpoint_dir`` (or ``resume_from``, when given: a non-chief
    worker resumes from the chief's checkpoints) holding a checkpoint of an interrupted run,
    training continues from it and ends where an uninterrupted run would have. Under a
    tf.distribute strategy (the model's), every worker must call this with the same data.
    """
    import tensorflow as tf

    t = config.train
    # tf.distribute (issue 8): the global batch is split across the model's strategy's replicas.
    num_replicas = model.distribute_strategy.num_replicas_in_sync
    resume_from = checkpoint_dir if resume_from is None else resume_from
    fit_inputs = prepared.model_inputs(prepared.fit)
    has_validation = prepared.validation.num_ratings > 0
    validation_data = (
        make_dataset(prepared.model_inputs(prepared.validation), 8192, num_replicas=num_replicas)
        if has_validation
        else None
    )
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    best_loss = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_loss")
    best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
    history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
    manager = best_manager = None
    if checkpoint_dir is not None:
        state = tf.train.Checkpoint(
            model=model,
            optimizer=model.optimizer,
            epoch=epoch,
            best_loss=best_loss,
            best_epoch=best_epoch,
            history=history_json,
        )
        manager = tf.train.CheckpointManager(state, str(checkpoint_dir / "last"), max_to_keep=1)
        best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), str(checkpoint_dir / "best"), max_to_keep=1
        )
        # tf.distribute (issue 8): every worker restores from the chief's checkpoints.
        latest = tf.train.latest_checkpoint(str(resume_from / "last"))
        if latest:
            state.restore(latest).expect_partial()
            log(f"resumed from {latest} after epoch {int(epoch.numpy())}")
    writer = tf.summary.create_file_writer(str(tensorboard_dir)) if tensorboard_dir else None
    callbacks = []
    if tensorboard_dir is not None:
        callbacks.append(tf.keras.callbacks.TensorBoard(str(tensorboard_dir), profile_batch=0))

    monitor = t.early_stopping_metric
    if monitor == "auto":
        monitor = "recall" if t.retrieval_weight > 0 else "rmse"
    validation_users = np.unique(prepared.validation.user_index)
    if len(validation_users) > t.validation_max_users:
        validation_users = np.random.default_rng(config.data.split_seed).choice(
            validation_users, t.validation_max_users, replace=False
        )
    history: list[dict[str, float]] = json.loads(history_json.numpy().decode())
    fit_seconds = 0.0
    fit_examples = 0
    start_epoch = int(epoch.numpy())
    for current in range(start_epoch, t.epochs):
        if (
            t.early_stopping_patience
            and current - int(best_epoch.numpy()) >= (t.early_stopping_patience)
            and has_validation
        ):
            break
        started = time.perf_counter()
        order = epoch_order(prepared.fit.num_ratings, t.seed, current)
        dataset = make_dataset(fit_inputs, t.batch_size, order, num_replicas=num_replicas)
        logs = model.fit(
            dataset, epochs=current + 1, initial_epoch=current, verbose=0, callbacks=callbacks
        ).history
        seconds = time.perf_counter() - started
        fit_seconds += seconds
        fit_examples += prepared.fit.num_ratings
        record = {
            "epoch": current + 1,
            "seconds": round(seconds, 3),
            "retrieval_loss": float(logs["retrieval_loss"][-1]),
            "rating_loss": float(logs["rating_loss"][-1]),
        }
        if has_validation:
            val = model.evaluate(validation_data, verbose=0, return_dict=True)
            record["val_retrieval_loss"] = float(val["retrieval_loss"])
            record["val_rmse"] = float(val["rmse"])
            record["val_loss"] = t.retrieval_weight * record[
                "val_retrieval_loss"
            ] + t.rating_weight * float(val["rating_loss"])
            record["val_recall@10"] = validation_recall(model, prepared, validation_users)
            # Lower is better for the tracked value.
            tracked = {
                "recall": -record["val_recall@10"],
                "rmse": record["val_rmse"],
                "loss": record["val_loss"],
            }[monitor]
            improved = tracked < float(best_loss.numpy())
        else:
            tracked = 0.0
            improved = True
        if improved:
            best_loss.assign(tracked)
            best_epoch.assign(current + 1)
            if best_manager is not None:
                best_manager.save(checkpoint_number=current + 1)
            else:
                best_weights = [w.numpy() for w in model.weights]
        history.append(record)
        history_json.assign(json.dumps(history))
        epoch.assign(current + 1)
        if manager is not None:
            manager.save(checkpoint_number=current + 1)
        if writer is not None:
            with writer.as_default(step=current + 1):
                for key, value in record.items():
                    if key != "epoch":
                        tf.summary.scalar(key, value)
        log(
            f"epoch {current + 1}/{t.epochs} {seconds:5.1f}s"
            f"  retrieval {record['retrieval_loss']:.4f}  rating {record['rating_loss']:.4f}"
            + (
                f"  | val recall@10 {record['val_recall@10']:.4f}"
                f"  val rmse {record['val_rmse']:.4f}{'  *best' if improved else ''}"
                if has_validation
                else ""
            )
        )
    # Best weights back in place: from the best checkpoint, or from memory without checkpoints.
    # tf.distribute (issue 8): a resumed non-chief worker's best epoch may be in the chief's dir.
    best = best_manager is not None and (
        best_manager.latest_checkpoint or tf.train.latest_checkpoint(str(resume_from / "best"))
    )
    if best:
        tf.train.Checkpoint(model=model).restore(best).expect_partial()
    elif best_manager is None and history:
        for weight, value in zip(model.weights, best_weights, strict=True):
            weight.assign(value)
    if writer is not None:
        writer.flush()
    return FitResult(
        epochs_run=len(history),
        best_epoch=int(best_epoch.numpy()),
        best_validation_value=float(best_loss.numpy()),
        history=history,
        seconds=fit_seconds,
        examples_per_second=fit_examples / fit_seconds if fit_seconds else 0.0,
    )


def protocol(prepared: PreparedData, config: Config) -> dict[str, Any]:
    """Names the dataset, split and evaluation protocol that every reported number refers to."""
    d = config.data
    return {
        "dataset": prepared.ratings.name,
        "split": d.split,
        "test_fraction": d.test_fraction if d.split != "leave_last_n" else None,
        "leave_last_n": d.leave_last_n if d.split == "leave_last_n" else None,
        "split_seed": d.split_seed,
        "validation_fraction": d.validation_fraction,
        "num_train_ratings": prepared.train.num_ratings,
        "num_test_ratings": prepared.test.num_ratings,
        "factorized_top_k": "TFRS FactorizedTopK over all vocabulary movies, per test rating, "
        "seen movies not excluded (the TFRS tutorials' metric)",
        "per_user": "per test user, the user's training-split movies excluded from the ranking; "
        "every test rating is relevant (binary); recall = hits / relevant; NDCG with ideal DCG "
        "over min(relevant, k); coverage = share of all movies in any user's top-k",
        "rating": "RMSE and MAE over the test ratings, predictions clipped to the training scale",
    }


def model_scores(model, prepared: PreparedData) -> Callable[[np.ndarray], np.ndarray]:
    """A score function over dataset rows for :func:`tfrs_movies.evaluation.topn_metrics`.

    Returns:
        ``score_fn(user_rows) -> (len(user_rows), num_table_movies)`` retrieval scores; movies
        outside the vocabulary score -inf (the model cannot retrieve them).
    """
    import tensorflow as tf

    catalogue = model.catalogue_vectors().numpy()
    movie_rows = prepared.movie_row_of_vocab()[1:]
    num_table_movies = prepared.ratings.num_movies

    def score_fn(user_rows: np.ndarray) -> np.ndarray:
        user_index = prepared.user_vocab_of_row[user_rows]
        queries = model.user_tower(tf.constant(user_index)).numpy()
        scores = np.full((len(user_rows), num_table_movies), -np.inf, np.float32)
        scores[:, movie_rows] = queries @ catalogue[1:].T
        return scores

    return score_fn


def evaluate_model(model, prepared: PreparedData, config: Config, log: Log = _print):
    """Evaluates the model (and baselines) on the test split as DESIGN's protocol says.

    Returns:
        ``{"protocol": ..., "model": {metric: value}, "baselines": {name: {metric: value}}}``.
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from tfrs_movies import evaluation

    e = config.eval
    started = time.perf_counter()
    test_inputs = prepared.model_inputs(prepared.test)
    catalogue = model.catalogue_vectors()
    # A cut-off at or beyond the catalogue size is trivially 1.0; such ks are reported so.
    ks = tuple(k for k in e.factorized_ks if k < prepared.num_movies)
    results: dict[str, float] = {
        f"factorized_top_{k}": 1.0 for k in e.factorized_ks if k >= prepared.num_movies
    }
    if ks:
        candidates = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
        candidates.index(catalogue[1:], identifiers=tf.range(1, prepared.num_movies + 1))
        factorized = tfrs.metrics.FactorizedTopK(candidates=candidates, ks=ks)
    predictions = []
    for start in range(0, len(test_inputs["user"]), 8192):
        batch = {key: value[start : start + 8192] for key, value in test_inputs.items()}
        timestamps = batch["timestamp"] if config.model.use_timestamp else None
        if ks:
            queries = model.user_tower(batch["user"], timestamps)
            factorized.update_state(
                queries, tf.gather(catalogue, batch["movie"]), true_candidate_ids=batch["movie"]
            )
        predictions.append(model.predict_ratings(batch["user"], batch["movie"]).numpy())
    if ks:
        results.update(
            {
                f"factorized_top_{k}": float(v.numpy())
                for k, v in zip(ks, factorized.result(), strict=True)
            }
        )
    results.update(evaluation.rating_metrics(np.concatenate(predictions), prepared.test.rating))
    results.update(
        evaluation.topn_metrics(
            model_scores(model, prepared),
            prepared.train,
            prepared.test,
            ks=e.recall_ks,
            ndcg_k=e.ndcg_k,
        )
    )
    metrics: dict[str, Any] = {"protocol": protocol(prepared, config), "model": results}
    log(f"evaluated model in {time.perf_counter() - started:.1f}s")
    if e.baselines:
        started = time.perf_counter()
        metrics["baselines"] = evaluation.evaluate_baselines(
            prepared.train, prepared.test, ks=e.recall_ks, seed=config.train.seed
        )
        log(f"evaluated baselines in {time.perf_counter() - started:.1f}s")
    log(format_metrics(metrics))
    return metrics


RERANK_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 1000.0)


def evaluate_recommender(recommender, prepared: PreparedData, k: int = 10) -> dict[str, Any]:
    """Top-N metrics of the exported pipeline on the test split: retrieval order vs re-ranked.

    Both orders come from :meth:`Recommender.recommend` on the exported artifacts (ScaNN
    candidates, seen movies excluded, ``num_candidates`` = 100), so this measures what
    downstream code gets, and what re-scoring with the ranking model adds.
    """
    from tfrs_movies import evaluation

    test_users = np.unique(prepared.test.user_index)
    test_users = test_users[prepared.user_vocab_of_row[test_users] > 0]
    user_ids = prepared.ratings.user_ids[test_users].astype(str).tolist()
    row_of_movie = {m: r for r, m in enumerate(prepared.ratings.movie_ids.astype(str).tolist())}
    relevant = prepared.test.subset(np.isin(prepared.test.user_index, test_users))
    results = {}
    from tfrs_movies.recommender import DEFAULT_RERANK_WEIGHT

    orders = {"retrieval_order": 0.0, "reranked": DEFAULT_RERANK_WEIGHT}
    orders.update({f"rerank_weight_{w:g}": w for w in RERANK_WEIGHTS})
    for name, weight in orders.items():
        lists = recommender.recommend(user_ids, k=k, rerank_weight=weight)
        top = np.full((len(user_ids), k), -1, np.int64)
        for i, records in enumerate(lists):
            top[i, : len(records)] = [row_of_movie[r.movie_id] for r in records]
        metrics = evaluation.topn_metrics_from_lists(
            top, test_users, relevant, ks=(k,), ndcg_k=k, coverage_k=k
        )
        results[name] = {key: metrics[key] for key in (f"recall@{k}", f"ndcg@{k}")}
    results["num_users"] = len(user_ids)
    results["default_rerank_weight"] = DEFAULT_RERANK_WEIGHT
    results["protocol"] = (
        "Recommender.recommend(k=10, num_candidates=100, exclude_seen=True) on the exported "
        "run, final order = retrieval_score / temperature + rerank_weight * predicted_rating "
        "(retrieval_order: weight 0; rerank_weight_1000: essentially by predicted rating); "
        "users of the test split that are in the training vocabulary"
    )
    return results


# The metrics every table of runs shows (train's summary, compare, the tests).
HEADLINE_METRICS = (
    "recall@10",
    "recall@100",
    "ndcg@10",
    "coverage@10",
    "factorized_top_100",
    "rmse",
    "mae",
)


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table: the model beside the baselines, one column per headline metric."""
    rows = {"model": metrics["model"], **metrics.get("baselines", {})}
    keys = [k for k in HEADLINE_METRICS if any(k in row for row in rows.values())]
    width = max(len(name) for name in rows) + 2
    lines = ["".ljust(width) + "".join(k.rjust(20) for k in keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.4f}" if k in row else "-" for k in keys]
        lines.append(name.ljust(width) + "".join(c.rjust(20) for c in cells))
    split = metrics["protocol"]
    lines.append(
        f"({split['dataset']}, {split['split']} split seed {split['split_seed']}, test ratings "
        f"{split['num_test_ratings']:,}; per-user metrics exclude training movies)"
    )
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a training run produced.

    Attributes:
        run_dir: the complete run directory.
        metrics: the contents of ``metrics.json``.
        config: the resolved config.
    """

    run_dir: Path
    metrics: dict[str, Any]
    config: Config


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow, and asks TensorFlow for deterministic kernels."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    ratings: Ratings | None = None,
    log: Log = _print,
) -> RunResult:
    """Trains, evaluates and exports one run into ``workdir``.

    Work happens in ``<workdir>.partial`` (checkpoints included, so ``resume=True`` can continue
    an interrupted run); only a complete run is renamed to ``workdir``.

    Args:
        config: the resolved config.
        workdir: the run directory to create.
        resume: continue ``<workdir>.partial`` from its last checkpoint.
        overwrite: replace an existing ``workdir`` (or an interrupted ``.partial``).
        ratings: use this dataset instead of loading ``config.data.source``.
        log: receives one line per progress step.

    Returns:
        The run's directory, metrics and config.

    Raises:
        TfrsMoviesError: the run directory exists, or data/config problems.
    """
    import tensorflow as tf

    from tfrs_movies import distributed, export
    from tfrs_movies.recommender import Recommender

    # tf.distribute (issue 8): the strategy comes first (MultiWorkerMirroredStrategy must be
    # created before other TensorFlow ops); only the chief writes the run directory.
    strategy = distributed.make_strategy(config.train.strategy)
    chief = distributed.is_chief(strategy)
    replicated = strategy is not tf.distribute.get_strategy()  # not the default strategy
    workdir = Path(workdir)
    partial = workdir.with_name(workdir.name + ".partial")
    if workdir.exists():
        if resume and (workdir / "metrics.json").exists():
            log(f"{workdir} is already complete; nothing to resume")
            return RunResult(workdir, json.loads((workdir / "metrics.json").read_text()), config)
        if not overwrite:
            raise TfrsMoviesError(
                f"run directory {workdir} already exists; choose another --workdir or pass "
                "--overwrite to replace it"
            )
    if partial.exists():
        if resume:
            saved = json.loads((partial / "config.json").read_text())
            if saved != json.loads(json.dumps(config.to_dict())):
                raise ConfigError(
                    f"{partial} was started with a different config; resume with the same "
                    "config and overrides, or pass --overwrite to start over"
                )
        elif overwrite:
            if chief:  # tf.distribute (issue 8)
                shutil.rmtree(partial)
        else:
            raise TfrsMoviesError(
                f"{partial} holds an interrupted run; pass --resume to continue it or "
                "--overwrite to start over"
            )
    # tf.distribute (issue 8): every worker checks before the chief writes; a non-chief worker
    # writes into a temporary directory instead of `partial` and resumes from the chief's.
    distributed.all_workers_ok(strategy)
    work = distributed.worker_dir(partial, strategy)
    work.mkdir(parents=True, exist_ok=True)
    save_config(config, work / "config.json")

    started = time.perf_counter()
    prepared = prepare_data(config, ratings=ratings, log=log)
    seed_everything(config.train.seed)
    with strategy.scope():  # tf.distribute (issue 8): model, optimizer and metrics replicated
        model = build_model(prepared, config)
        model.compile(optimizer=make_optimizer(config))
        if replicated:
            # Metric results are already aggregated across replicas: take one, do not sum.
            model.distribute_reduction_method = "first"
    fit = fit_model(
        model,
        prepared,
        config,
        checkpoint_dir=work / "checkpoints",
        tensorboard_dir=(work / "tensorboard") if config.train.tensorboard and chief else None,
        log=log,
        resume_from=partial / "checkpoints",
    )
    # tf.distribute (issue 8): non-chief workers are done once the chief has exported; the
    # chief evaluates and exports an unreplicated copy of the best weights (no collectives).
    if not chief:
        chief_ok = distributed.all_workers_ok(strategy)
        distributed.remove_worker_dir(partial, strategy)
        if not chief_ok:
            raise TfrsMoviesError("the chief worker failed after training; see its log")
        log(f"worker done; the chief writes {workdir}")
        return RunResult(workdir, {}, config)
    if replicated:
        model = build_model(prepared, config)
        restored = (
            tf.train.Checkpoint(model=model)
            .restore(tf.train.latest_checkpoint(str(partial / "checkpoints" / "best")))
            .expect_partial()
        )
        sample = prepared.model_inputs(prepared.fit)
        model.task_losses({key: value[:2] for key, value in sample.items()})  # creates weights
        restored.assert_existing_objects_matched()
    metrics = evaluate_model(model, prepared, config, log=log)
    metrics["training"] = {
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "best_validation_value": fit.best_validation_value,
        "fit_seconds": round(fit.seconds, 2),
        "examples_per_second": round(fit.examples_per_second, 1),
        "history": fit.history,
    }
    export.export_run(model, prepared, config, metrics, partial, log=log)
    metrics["pipeline"] = evaluate_recommender(Recommender.load(partial, verify=False), prepared)
    pipeline = metrics["pipeline"]
    log(
        "exported pipeline on test users: recall@10 retrieval order "
        f"{pipeline['retrieval_order']['recall@10']:.4f}, re-ranked "
        f"{pipeline['reranked']['recall@10']:.4f}; ndcg@10 "
        f"{pipeline['retrieval_order']['ndcg@10']:.4f} vs {pipeline['reranked']['ndcg@10']:.4f}"
    )
    metrics["training"]["total_seconds"] = round(time.perf_counter() - started, 2)
    export.finalize_run(partial, workdir, metrics, overwrite=overwrite)
    distributed.all_workers_ok(strategy)  # tf.distribute (issue 8): releases the other workers
    log(f"run complete: {workdir} ({metrics['training']['total_seconds']:.0f}s)")
    return RunResult(workdir, metrics, config)
