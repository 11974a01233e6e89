"""The multitask model: hand-computed losses, loss-weight validation, tower shapes and sizes."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies.config import ModelConfig, load_config
from tfrs_movies.errors import ConfigError

tf = pytest.importorskip("tensorflow")

from tfrs_movies.data.features import FeatureTables, release_year, title_words  # noqa: E402
from tfrs_movies.model import CatalogueRetrieval, MovieLensModel, multitask  # noqa: E402
from tfrs_movies.model.heads import StatelessDropout  # noqa: E402
from tfrs_movies.model.penalties import count_weights, inverse_presence  # noqa: E402
from tfrs_movies.model.tasks import log_sum_exp  # noqa: E402

NUM_USERS, NUM_MOVIES = 4, 6


def _tables() -> FeatureTables:
    return FeatureTables(
        movie_genres=np.zeros((NUM_MOVIES + 1, 21), np.float32),
        movie_year=np.zeros(NUM_MOVIES + 1, np.int32),
        movie_title_tokens=np.zeros((NUM_MOVIES + 1, 8), np.int32),
        num_title_words=0,
        user_age=np.zeros(NUM_USERS + 1, np.int32),
        user_gender=np.zeros(NUM_USERS + 1, np.int32),
        user_occupation=np.zeros(NUM_USERS + 1, np.int32),
        has_demographics=False,
        timestamp_mean=0.0,
        timestamp_std=1.0,
    )


def _model(
    negatives: str,
    retrieval_weight: float,
    rating_weight: float,
    use_timestamp: bool = False,
    ensemble_size: int = 1,
    query_dropout: float = 0.0,
) -> MovieLensModel:
    config = ModelConfig(
        ensemble_size=ensemble_size,
        use_timestamp=use_timestamp,
        embedding_dim=3,
        use_genres=False,
        use_year=False,
        use_demographics=False,
        rating_hidden_units=(4,),
        rating_dropout=0.0,
        query_dropout=query_dropout,
        embedding_l2=0.0,
        temperature=0.5,
        retrieval_negatives=negatives,
        # The hand-computed references are float32; bfloat16 products have their own test.
        catalogue_scores_dtype="float32",
    )
    tf.keras.utils.set_random_seed(1)
    frequencies = np.array([0, 5, 1, 1, 2, 3, 1])
    return MovieLensModel(
        NUM_USERS,
        NUM_MOVIES,
        _tables(),
        3.5,
        frequencies,
        config,
        retrieval_weight,
        rating_weight,
    )


BATCH = {
    "user": np.array([1, 2, 3], np.int32),
    "movie": np.array([2, 2, 5], np.int32),
    "rating": np.array([4.0, 2.0, 5.0], np.float32),
}


# Users 1 and 3 rate twice: the catalogue softmax scores each distinct user once.
REPEATED_USERS_BATCH = {
    "user": np.array([3, 1, 3, 1, 2], np.int32),
    "movie": np.array([2, 4, 5, 1, 2], np.int32),
    "rating": np.array([4.0, 2.0, 5.0, 1.0, 3.5], np.float32),
}


def _reference_losses(
    model: MovieLensModel, negatives: str, batch: dict = BATCH
) -> tuple[float, float]:
    """Numpy re-computation of both task losses from the model's own tower outputs."""
    users = model.user_tower(batch["user"]).numpy()
    catalogue = model.catalogue_vectors().numpy()
    positives = catalogue[batch["movie"]]
    predictions = model.predict_ratings(batch["user"], batch["movie"]).numpy()
    rating_loss = float(np.mean((predictions - batch["rating"]) ** 2))
    if negatives == "catalogue":
        logits = users @ catalogue.T / 0.5  # every movie (incl. the OOV row) is a candidate
        target = logits[np.arange(len(users)), batch["movie"]]
    else:
        logits = users @ positives.T / 0.5
        probability = model.sampling_probability.numpy()[BATCH["movie"]]
        logits = logits - np.log(probability)[None, :]
        # Accidental hits: rows 0 and 1 share movie 2, so each masks the other's column.
        same = BATCH["movie"][:, None] == BATCH["movie"][None, :]
        logits = np.where(same & ~np.eye(3, dtype=bool), -np.inf, logits)
        target = np.diag(logits)
    log_normalizer = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    retrieval_loss = float(np.mean(log_normalizer - target))
    return retrieval_loss, rating_loss


@pytest.mark.parametrize("negatives", ["catalogue", "in_batch"])
@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (2.0, 0.5)])
def test_loss_is_the_weighted_sum_of_hand_computed_task_losses(negatives, weights):
    model = _model(negatives, *weights)
    retrieval, rating = _reference_losses(model, negatives)
    got_retrieval, got_rating = model.task_losses(BATCH, training=False)
    assert float(got_retrieval) == pytest.approx(retrieval, rel=1e-5)
    assert float(got_rating) == pytest.approx(rating, rel=1e-5)
    total = float(model.compute_loss(BATCH, training=False))
    assert total == pytest.approx(weights[0] * retrieval + weights[1] * rating, rel=1e-5)


@pytest.mark.parametrize("weights", [(1.0, 0.0), (2.0, 0.5)])
def test_catalogue_loss_with_repeated_users_matches_the_per_example_softmax(weights):
    model = _model("catalogue", *weights)
    retrieval, rating = _reference_losses(model, "catalogue", REPEATED_USERS_BATCH)
    got_retrieval, got_rating = model.task_losses(REPEATED_USERS_BATCH, training=False)
    assert float(got_retrieval) == pytest.approx(retrieval, rel=1e-5)
    assert float(got_rating) == pytest.approx(rating, rel=1e-5)


def test_catalogue_loss_with_timestamps_scores_each_example_s_own_query():
    # With timestamps the query depends on the example, not on the user alone.
    model = _model("catalogue", 1.0, 0.0, use_timestamp=True)
    batch = dict(REPEATED_USERS_BATCH, timestamp=np.array([0.0, 1.0, 2.0, -1.0, 0.5], np.float32))
    got_retrieval, _ = model.task_losses(batch, training=False)  # builds the timestamp layer
    model.user_tower.timestamp_projection.kernel.assign([[0.3, -0.2, 0.5]])
    got_retrieval, _ = model.task_losses(batch, training=False)
    users = model.user_tower(batch["user"], batch["timestamp"]).numpy()
    assert not np.allclose(users[0], users[2])  # user 3 at two times: two queries
    logits = users @ model.catalogue_vectors().numpy().T / 0.5
    log_normalizer = np.log(np.exp(logits).sum(1))
    expected = np.mean(log_normalizer - logits[np.arange(5), batch["movie"]])
    assert float(got_retrieval) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("temperature", [None, 0.25])
def test_distinct_query_catalogue_loss_equals_the_one_hot_loss_and_its_gradients(temperature):
    rng = np.random.default_rng(0)
    queries = tf.constant(rng.normal(size=(3, 4)), tf.float32)  # 3 distinct queries
    catalogue = tf.constant(rng.normal(size=(7, 4)), tf.float32)
    query_rows = tf.constant([0, 2, 0, 1, 2, 2])
    positive_rows = tf.constant([6, 0, 3, 3, 1, 6])
    task = CatalogueRetrieval(temperature=temperature)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([queries, catalogue])
        per_example = task.catalogue_loss(tf.gather(queries, query_rows), catalogue, positive_rows)
        distinct = task.catalogue_loss(queries, catalogue, positive_rows, query_rows=query_rows)
    # Hand-computed: sum over examples of logsumexp(scores) - the positive's score.
    scores = queries.numpy()[query_rows.numpy()] @ catalogue.numpy().T / (temperature or 1.0)
    expected = np.sum(np.log(np.exp(scores).sum(1)) - scores[np.arange(6), positive_rows.numpy()])
    assert float(per_example) == pytest.approx(expected, rel=1e-5)
    assert float(distinct) == pytest.approx(expected, rel=1e-5)
    for variable in (queries, catalogue):
        np.testing.assert_allclose(
            tf.convert_to_tensor(tape.gradient(distinct, variable)).numpy(),
            tf.convert_to_tensor(tape.gradient(per_example, variable)).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize("query_rows", [None, [0, 2, 0, 1, 2, 2]], ids=["per_example", "distinct"])
def test_bfloat16_catalogue_scores_give_the_float32_loss_and_gradients_within_rounding(
    query_rows,
):
    # The shapes and scales of a trained ml-100k model: dim 64, temperature 0.1, logits ~ +-20.
    rng = np.random.default_rng(5)
    queries = tf.constant(rng.normal(scale=0.35, size=(3, 64)), tf.float32)
    catalogue = tf.constant(rng.normal(scale=0.35, size=(50, 64)), tf.float32)
    positive_rows = tf.constant([6, 0, 3, 3, 1, 49])
    rows = tf.constant([0, 2, 0, 1, 2, 2])
    if query_rows is None:
        queries = tf.gather(queries, rows)
    else:
        query_rows = tf.constant(query_rows)
    losses, gradients = {}, {}
    for dtype in ("float32", "bfloat16"):
        task = CatalogueRetrieval(temperature=0.1, scores_dtype=dtype)
        with tf.GradientTape() as tape:
            tape.watch([queries, catalogue])
            loss = task.catalogue_loss(queries, catalogue, positive_rows, query_rows=query_rows)
        losses[dtype] = float(loss)
        gradients[dtype] = [
            tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [queries, catalogue])
        ]
    assert losses["bfloat16"] != losses["float32"]  # the setting takes effect
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=5e-3)
    for ours, reference in zip(gradients["bfloat16"], gradients["float32"], strict=True):
        cosine = np.sum(ours * reference) / np.linalg.norm(ours) / np.linalg.norm(reference)
        assert cosine > 0.9999
        np.testing.assert_allclose(ours, reference, atol=0.02 * np.abs(reference).max())


@pytest.mark.parametrize(
    ("configured", "negatives", "native", "expected"),
    [
        ("auto", "catalogue", True, "bfloat16"),
        ("auto", "catalogue", False, "float32"),
        ("auto", "in_batch", True, "float32"),  # the in-batch softmax is not switched
        ("float32", "catalogue", True, "float32"),
        ("bfloat16", "catalogue", False, "bfloat16"),
    ],
)
def test_catalogue_scores_dtype_auto_is_bfloat16_where_the_cpu_multiplies_it(
    monkeypatch, configured, negatives, native, expected
):
    monkeypatch.setattr(multitask, "native_bfloat16", lambda: native)
    config = ModelConfig(
        embedding_dim=3,
        rating_hidden_units=(4,),
        retrieval_negatives=negatives,
        catalogue_scores_dtype=configured,
    )
    model = MovieLensModel(
        NUM_USERS, NUM_MOVIES, _tables(), 3.5, np.ones(NUM_MOVIES + 1), config, seed=0
    )
    assert model.retrieval_task.scores_dtype.name == expected


def test_log_sum_exp_and_its_gradient_equal_tensorflow_s_composite():
    rng = np.random.default_rng(3)
    # Members x queries x candidates; one row of large logits that a naive exp would overflow.
    scores = rng.normal(size=(2, 5, 9)) * 4.0
    scores[1, 2] += 500.0
    scores = tf.constant(scores, tf.float32)
    upstream = tf.constant(rng.uniform(0.5, 3.0, size=(2, 5)), tf.float32)  # e.g. user counts
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(scores)
        ours = tf.reduce_sum(log_sum_exp(scores) * upstream)
        reference = tf.reduce_sum(tf.reduce_logsumexp(scores, axis=-1) * upstream)
    np.testing.assert_allclose(
        log_sum_exp(scores).numpy(), tf.reduce_logsumexp(scores, axis=-1).numpy(), rtol=1e-6
    )
    assert float(ours) == pytest.approx(float(reference), rel=1e-6)
    gradient = tape.gradient(ours, scores).numpy()
    np.testing.assert_allclose(gradient, tape.gradient(reference, scores).numpy(), atol=1e-6)
    # The gradient of a row's log-normalizer is its softmax: each row sums to its upstream.
    np.testing.assert_allclose(gradient.sum(-1), upstream.numpy(), rtol=1e-5)


def test_stateless_dropout_is_a_function_of_seed_and_step_at_the_configured_rate():
    inputs = tf.ones([512, 4, 96])
    dropout = StatelessDropout(0.3, seed=7)
    first = dropout(inputs, step=tf.constant(5), training=True).numpy()
    np.testing.assert_array_equal(first, dropout(inputs, step=5, training=True).numpy())
    again = StatelessDropout(0.3, seed=7)(inputs, step=5, training=True).numpy()
    np.testing.assert_array_equal(first, again)  # a new layer (a resumed run): the same mask
    other_step = dropout(inputs, step=6, training=True).numpy()
    assert (first != other_step).mean() > 0.3
    dropped = (first == 0).mean()
    assert dropped == pytest.approx(0.3, abs=0.005)  # 196,608 elements: sd of the share 0.001
    # Kept elements are scaled by 1 / P(kept): the expectation of each element is its input.
    assert first.mean() == pytest.approx(1.0, abs=0.01)
    values = np.unique(first)
    assert values[0] == 0.0 and values[1:] == pytest.approx([1 / (1 - 19661 / 65536)])
    # An odd element count: the last 32-bit draw serves one element.
    odd = dropout(tf.ones([3, 5]), step=1, training=True).numpy()
    assert odd.shape == (3, 5) and 0 < (odd == 0).sum() < 15
    for identity in (
        dropout(inputs, step=5, training=False),
        dropout(inputs, step=None, training=True),
        StatelessDropout(0.0, seed=7)(inputs, step=5, training=True),
    ):
        np.testing.assert_array_equal(identity.numpy(), inputs.numpy())


@pytest.mark.parametrize("negatives", ["catalogue", "in_batch"])
def test_query_dropout_acts_on_the_retrieval_loss_in_training_only(negatives):
    """``model.query_dropout`` drops the free coordinates of the members' queries in the
    retrieval loss, keeping the constant 1 that carries the retrieval bias; the mask is a
    function of the step; the rating loss and evaluation are untouched."""
    members = 2
    model = _model(negatives, 1.0, 1.0, ensemble_size=members, query_dropout=0.99999)
    model.compile(optimizer=tf.keras.optimizers.Adam())
    model.task_losses(BATCH)  # builds the weights
    biases = np.arange((NUM_MOVIES + 1) * members, dtype=np.float32).reshape(-1, members) / 10
    model.movie_tower.bias.embeddings.assign(biases)
    rng = np.random.default_rng(0)
    for weight in model.user_tower.trainable_weights:  # queries far from (0, ..., 0, 1)
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    evaluation = [float(x) for x in model.task_losses(BATCH)]
    no_dropout = _model(negatives, 1.0, 1.0, ensemble_size=members)
    no_dropout.task_losses(BATCH)
    no_dropout.set_weights(model.get_weights())
    assert [float(x) for x in no_dropout.task_losses(BATCH)] == pytest.approx(evaluation, rel=1e-6)
    model.optimizer.iterations.assign(7)
    retrieval, rating = (float(x) for x in model.task_losses(BATCH, training=True))
    assert rating == pytest.approx(evaluation[1], rel=1e-6)
    # At a rate within 2**-16 of 1 every free coordinate is dropped (at this step): each query
    # is (0, ..., 0, 1), so a member's scores are its retrieval biases over the temperature.
    expected = 0.0
    for k in range(members):
        if negatives == "catalogue":
            logits = np.tile(biases[:, k] / 0.5, (len(BATCH["movie"]), 1))
            target = logits[np.arange(len(logits)), BATCH["movie"]]
        else:
            positives = biases[BATCH["movie"], k] / 0.5
            logits = np.tile(positives, (len(positives), 1))
            logits = logits - np.log(model.sampling_probability.numpy()[BATCH["movie"]])[None, :]
            same = BATCH["movie"][:, None] == BATCH["movie"][None, :]
            logits = np.where(same & ~np.eye(len(logits), dtype=bool), -np.inf, logits)
            target = np.diag(logits)
        peak = logits.max(1, keepdims=True)
        expected += float(np.mean(np.log(np.exp(logits - peak).sum(1)) + peak[:, 0] - target))
    assert retrieval == pytest.approx(expected, rel=1e-5)
    assert retrieval != pytest.approx(evaluation[0], rel=1e-3)
    # A usual rate: the same step gives the same loss, another step another loss.
    model.query_dropout = StatelessDropout(0.5, seed=1)
    at_step = [float(model.task_losses(BATCH, training=True)[0]) for _ in range(2)]
    model.optimizer.iterations.assign(8)
    assert at_step[0] == at_step[1] != float(model.task_losses(BATCH, training=True)[0])


def test_distinct_query_catalogue_loss_refuses_a_custom_loss():
    task = CatalogueRetrieval(loss=tf.keras.losses.CategoricalHinge())
    with pytest.raises(ValueError, match="default loss"):
        task.catalogue_loss(
            tf.ones([1, 2]), tf.ones([3, 2]), tf.constant([1]), query_rows=tf.constant([0])
        )


@pytest.mark.parametrize(
    "weights", [(0.0, 0.0), (-1.0, 1.0), (1.0, float("nan")), (float("inf"), 1.0)]
)
def test_invalid_loss_weights_are_rejected(weights):
    with pytest.raises(ConfigError, match="weight"):
        _model("catalogue", *weights)
    overrides = [f"train.retrieval_weight={weights[0]}", f"train.rating_weight={weights[1]}"]
    with pytest.raises(ConfigError, match="weight"):
        load_config(None, overrides)


def test_towers_output_bias_coordinate_and_pinned_parameter_count():
    model = _model("catalogue", 1.0, 1.0)
    users = model.user_tower(BATCH["user"]).numpy()
    movies = model.movie_tower(BATCH["movie"]).numpy()
    assert users.shape == (3, 4) and movies.shape == (3, 4)
    np.testing.assert_array_equal(users[:, -1], 1.0)  # the constant that multiplies the bias
    np.testing.assert_array_equal(movies[:, -1], 0.0)  # biases start at zero
    # (users+1) * dim user ids; (movies+1) * dim movie ids + (movies+1) biases.
    assert model.user_tower.count_params() == (NUM_USERS + 1) * 3
    assert model.movie_tower.count_params() == (NUM_MOVIES + 1) * 4


def test_rating_predictions_start_near_the_global_mean_and_stay_on_scale():
    model = _model("catalogue", 1.0, 1.0)
    predictions = model.predict_ratings(BATCH["user"], BATCH["movie"]).numpy()
    assert np.all(np.abs(predictions - 3.5) < 1.0)


@pytest.mark.parametrize(
    ("title", "year", "words"),
    [
        ("Toy Story (1995)", 1995, ["toy", "story"]),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 1995, None),
        ("Unknown movie", None, ["unknown", "movie"]),
    ],
)
def test_title_parsing(title, year, words):
    assert release_year(title) == year
    if words is not None:
        assert title_words(title) == words


def _penalty_model(
    negatives: str, user_l2_count_power: float = 0.5, **frequencies
) -> tuple[MovieLensModel, dict]:
    """A one-member model (L2 0.5) with its weights built on a batch (users 1, 1, 3; movies 2,
    5, 2), user biases set to 2 and movie biases to 3 (they start at zero, where their penalty
    would not show).

    Args:
        negatives: ``model.retrieval_negatives``.
        user_l2_count_power: ``model.user_l2_count_power``.
        **frequencies: ``user_frequencies`` and ``batch_size`` for the model, or nothing.

    Returns:
        The model and the batch.
    """
    config = ModelConfig(
        embedding_dim=3,
        ensemble_size=1,
        rating_hidden_units=(4,),
        embedding_l2=0.5,
        user_l2_count_power=user_l2_count_power,
        retrieval_negatives=negatives,
    )
    tf.keras.utils.set_random_seed(1)
    model = MovieLensModel(
        NUM_USERS,
        NUM_MOVIES,
        _tables(),
        3.5,
        np.ones(NUM_MOVIES + 1),
        config,
        seed=0,
        **frequencies,
    )
    batch = {
        "user": tf.constant([1, 1, 3]),
        "movie": tf.constant([2, 5, 2]),
        "rating": tf.constant([4.0, 3.0, 5.0]),
    }
    model.task_losses(batch)  # builds the weights
    model.rating_head.user_bias.embeddings.assign(tf.fill([NUM_USERS + 1, 1], 2.0))
    model.rating_head.movie_bias.embeddings.assign(tf.fill([NUM_MOVIES + 1, 1], 3.0))
    return model, batch


@pytest.mark.parametrize("negatives", ["in_batch", "catalogue"])
def test_l2_penalty_covers_the_rows_the_loss_moves(negatives):
    """In-batch negatives: the distinct rows of the batch. The catalogue softmax moves every
    movie row each step, so every movie-tower row is penalized, once."""
    model, batch = _penalty_model(negatives)
    users = model.user_tower.user_embedding.embeddings.numpy()
    movies = model.movie_tower.movie_embedding.embeddings.numpy()
    penalized_movies = [2, 5] if negatives == "in_batch" else list(range(NUM_MOVIES + 1))
    expected = 0.5 * (
        np.square(users[[1, 3]]).sum()
        + np.square(movies[penalized_movies]).sum()
        + 2 * 4.0
        + 2 * 9.0
    )
    with tf.GradientTape() as tape:
        penalty = model.penalty(batch)
    np.testing.assert_allclose(penalty.numpy(), expected, rtol=1e-6)
    gradient = tape.gradient(penalty, model.user_tower.user_embedding.embeddings)
    assert isinstance(gradient, tf.IndexedSlices)  # row-sparse: no dense table gradient
    assert sorted(gradient.indices.numpy()) == [1, 3]
    assert not model.losses  # no whole-table regularizer left


def test_inverse_presence_makes_the_batch_penalty_an_unbiased_whole_table_l2():
    counts = np.array([0, 1, 3, 6])
    weights = inverse_presence(counts, batch_size=2)
    # P(row in a batch of 2 drawn from 10 examples) = 1 - (1 - count / 10) ** 2; a row with no
    # example is never in a batch (weight 1, unused).
    presence = 1 - (1 - counts[1:] / 10) ** 2
    np.testing.assert_allclose(weights, [1.0, *(1 / presence)], rtol=1e-6)


def test_count_weights_are_count_plus_one_to_the_power_with_mean_one():
    counts = np.array([0, 3, 8, 15])
    np.testing.assert_allclose(count_weights(counts, 0.5), np.array([1, 2, 3, 4]) / 2.5, rtol=1e-6)
    np.testing.assert_allclose(count_weights(counts, 0.0), np.ones(4))
    np.testing.assert_allclose(count_weights(counts, -1.0).mean(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_user_embedding_penalty_is_weighted_by_presence_and_rating_count(power):
    """User embedding rows: ``1 / P(in a batch) * (n + 1) ** power / mean``; the user bias
    rows of the rating head keep ``1 / P(in a batch)`` alone."""
    user_counts = np.array([0, 3, 8, 15, 24])
    model, batch = _penalty_model("in_batch", power, user_frequencies=user_counts, batch_size=4)
    users = model.user_tower.user_embedding.embeddings.numpy()
    movies = model.movie_tower.movie_embedding.embeddings.numpy()
    presence = 1 - (1 - user_counts / user_counts.sum()) ** 4  # batch of 4 drawn from 50
    by_count = (user_counts + 1.0) ** power / ((user_counts + 1.0) ** power).mean()
    movie_presence = inverse_presence(np.ones(NUM_MOVIES + 1), 4)
    expected = 0.5 * (
        sum(np.square(users[u]).sum() * by_count[u] / presence[u] for u in (1, 3))
        + sum(np.square(movies[m]).sum() * movie_presence[m] for m in (2, 5))
        + sum(4.0 / presence[u] for u in (1, 3))
        + sum(9.0 * movie_presence[m] for m in (2, 5))
    )
    np.testing.assert_allclose(model.penalty(batch).numpy(), expected, rtol=1e-5)


def _member_slices(vectors: np.ndarray, members: int) -> list[np.ndarray]:
    """Splits (n, members * dim + 1) tower outputs into members' (n, dim) slices."""
    return np.split(vectors[:, :-1], members, axis=1)


@pytest.mark.parametrize("negatives", ["catalogue", "in_batch"])
@pytest.mark.parametrize("batch", [BATCH, REPEATED_USERS_BATCH], ids=["distinct", "repeated"])
def test_ensemble_losses_are_the_sums_of_the_members_own_losses(negatives, batch):
    """Each member: its own slices, its own retrieval bias, its own softmax and rating head."""
    members = 3
    model = _model(negatives, 1.0, 1.0, ensemble_size=members)
    model.task_losses(batch)  # builds the weights
    # Distinct retrieval biases per member, so that a mix-up between members would show.
    biases = np.arange((NUM_MOVIES + 1) * members, dtype=np.float32).reshape(-1, members) / 10
    model.movie_tower.bias.embeddings.assign(biases)
    retrieval_loss, rating_loss = (float(x) for x in model.task_losses(batch))
    users = _member_slices(model.user_tower(batch["user"]).numpy(), members)
    catalogue = model.movie_tower.embedding_parts(tf.range(NUM_MOVIES + 1))[0].numpy()
    member_catalogues = np.split(catalogue, members, axis=1)
    expected_retrieval = 0.0
    for k in range(members):
        query = np.concatenate([users[k], np.ones((len(users[k]), 1))], 1)
        movies = np.concatenate([member_catalogues[k], biases[:, k : k + 1]], 1)
        if negatives == "catalogue":
            logits = query @ movies.T / 0.5
            target = logits[np.arange(len(query)), batch["movie"]]
        else:
            positives = movies[batch["movie"]]
            logits = query @ positives.T / 0.5
            probability = model.sampling_probability.numpy()[batch["movie"]]
            logits = logits - np.log(probability)[None, :]
            same = batch["movie"][:, None] == batch["movie"][None, :]
            logits = np.where(same & ~np.eye(len(query), dtype=bool), -np.inf, logits)
            target = np.diag(logits)
        peak = logits.max(1, keepdims=True)
        normalizer = np.log(np.exp(logits - peak).sum(1)) + peak[:, 0]
        expected_retrieval += float(np.mean(normalizer - target))
    np.testing.assert_allclose(retrieval_loss, expected_retrieval, rtol=1e-5)
    member_predictions = model.rating_head.member_predictions(
        batch["user"],
        batch["movie"],
        model.user_tower(batch["user"]),
        model.movie_tower(batch["movie"]),
    ).numpy()
    assert member_predictions.shape == (len(batch["user"]), members)
    expected_rating = np.mean((member_predictions - batch["rating"][:, None]) ** 2, 0).sum()
    np.testing.assert_allclose(rating_loss, expected_rating, rtol=1e-5)
    np.testing.assert_allclose(
        model.predict_ratings(batch["user"], batch["movie"]).numpy(),
        member_predictions.mean(1),
        rtol=1e-6,
    )


def test_ensemble_members_do_not_read_each_other():
    """Changing member 1's embeddings and biases leaves member 0's losses as they were."""
    model = _model("catalogue", 1.0, 1.0, ensemble_size=2)
    model.task_losses(BATCH)

    def member_zero_losses():
        users = model.user_tower.member_vectors(model.user_tower(BATCH["user"]))[0]
        movies = model.movie_tower.member_vectors(tf.range(NUM_MOVIES + 1))[0]
        retrieval = model.retrieval_task.catalogue_loss(users, movies, BATCH["movie"])
        ratings = model.rating_head.member_predictions(
            BATCH["user"],
            BATCH["movie"],
            model.user_tower(BATCH["user"]),
            model.movie_tower(BATCH["movie"]),
        )[:, 0]
        return float(retrieval), ratings.numpy()

    before = member_zero_losses()
    for table in (model.user_tower.user_embedding, model.movie_tower.movie_embedding):
        values = table.embeddings.numpy()
        values[:, 3:] += 1.0  # member 1's columns (embedding_dim 3)
        table.embeddings.assign(values)
    for table in (
        model.movie_tower.bias,
        model.rating_head.user_bias,
        model.rating_head.movie_bias,
    ):
        values = table.embeddings.numpy()
        values[:, 1] += 1.0
        table.embeddings.assign(values)
    after = member_zero_losses()
    assert after[0] == pytest.approx(before[0], rel=1e-6)
    np.testing.assert_allclose(after[1], before[1], rtol=1e-6)


def test_ensemble_served_score_is_the_sum_of_the_members_scores():
    members = 2
    model = _model("catalogue", 1.0, 1.0, ensemble_size=members)
    model.task_losses(BATCH)
    model.movie_tower.bias.embeddings.assign(
        np.random.default_rng(0).normal(size=(NUM_MOVIES + 1, members)).astype(np.float32)
    )
    served = model.user_tower(BATCH["user"]).numpy() @ model.catalogue_vectors().numpy().T
    member_queries = model.user_tower.member_vectors(model.user_tower(BATCH["user"])).numpy()
    member_catalogues = model.movie_tower.member_vectors(tf.range(NUM_MOVIES + 1)).numpy()
    assert member_queries.shape == (members, 3, 4) and member_catalogues.shape == (members, 7, 4)
    summed = sum(q @ c.T for q, c in zip(member_queries, member_catalogues, strict=True))
    np.testing.assert_allclose(served, summed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("members", [1, 3])
def test_rating_head_serving_weights_are_one_plain_mlp_with_the_same_predictions(members):
    """What the ranking export hands to numpy re-scoring: one dense MLP, one output."""
    from tfrs_movies.recommend.rescoring import NumpyRatingHead

    model = _model("catalogue", 1.0, 1.0, ensemble_size=members)
    model.task_losses(BATCH)
    rng = np.random.default_rng(1)
    for table in (model.rating_head.user_bias, model.rating_head.movie_bias):
        table.embeddings.assign(rng.normal(size=table.embeddings.shape).astype(np.float32))
    weights = model.rating_head.serving_weights()
    movie_vectors = model.catalogue_vectors().numpy()[1:]
    head = NumpyRatingHead(
        float(weights["global_mean"].numpy()),
        np.asarray(weights["user_bias"])[:, 0],
        np.asarray(weights["movie_bias"])[:, 0],
        movie_vectors,
        [
            (np.asarray(kernel), np.asarray(bias))
            for kernel, bias in zip(weights["mlp_kernels"], weights["mlp_biases"], strict=True)
        ],
    )
    assert np.asarray(weights["mlp_kernels"][-1]).shape[1] == 1
    users = np.array([1, 2, 4])
    candidates = np.array([[0, 1, 5], [2, 2, 3], [4, 0, 1]])  # movie rows (vocabulary - 1)
    numpy_ratings = head(users, model.user_tower(users).numpy(), candidates)
    keras_ratings = np.stack(
        [model.predict_ratings(np.repeat(users[i], 3), candidates[i] + 1).numpy() for i in range(3)]
    )
    np.testing.assert_allclose(numpy_ratings, keras_ratings, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("configured", "negatives", "members"),
    [(None, "catalogue", 4), (None, "in_batch", 1), (2, "in_batch", 2), (1, "catalogue", 1)],
)
def test_ensemble_size_unset_means_four_with_the_catalogue_softmax_and_one_in_batch(
    configured, negatives, members
):
    config = ModelConfig(
        embedding_dim=3,
        ensemble_size=configured,
        rating_hidden_units=(4,),
        retrieval_negatives=negatives,
    )
    model = MovieLensModel(
        NUM_USERS, NUM_MOVIES, _tables(), 3.5, np.ones(NUM_MOVIES + 1), config, seed=0
    )
    assert model.user_tower.members == model.movie_tower.members == members
    assert model.rating_head.members == members
    assert model.user_tower(BATCH["user"]).shape == (3, 3 * members + 1)
