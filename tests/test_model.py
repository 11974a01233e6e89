"""The multitask model: hand-computed losses, loss-weight validation, tower shapes and sizes."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies.config import ModelConfig, load_config
from tfrs_movies.errors import ConfigError

tf = pytest.importorskip("tensorflow")

from tfrs_movies.data.features import FeatureTables, release_year, title_words  # noqa: E402
from tfrs_movies.model import CatalogueRetrieval, MovieLensModel  # noqa: E402
from tfrs_movies.model.penalties import inverse_presence  # noqa: E402

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
    negatives: str, retrieval_weight: float, rating_weight: float, use_timestamp: bool = False
) -> MovieLensModel:
    config = ModelConfig(
        use_timestamp=use_timestamp,
        embedding_dim=3,
        use_genres=False,
        use_year=False,
        use_demographics=False,
        rating_hidden_units=(4,),
        rating_dropout=0.0,
        embedding_l2=0.0,
        temperature=0.5,
        retrieval_negatives=negatives,
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


def test_l2_penalty_covers_only_the_distinct_rows_of_the_batch():
    config = ModelConfig(embedding_dim=3, rating_hidden_units=(4,), embedding_l2=0.5)
    tf.keras.utils.set_random_seed(1)
    model = MovieLensModel(
        NUM_USERS, NUM_MOVIES, _tables(), 3.5, np.ones(NUM_MOVIES + 1), config, seed=0
    )
    batch = {
        "user": tf.constant([1, 1, 3]),
        "movie": tf.constant([2, 5, 2]),
        "rating": tf.constant([4.0, 3.0, 5.0]),
    }
    model.task_losses(batch)  # builds the weights
    # The biases start at zero: give them values so that their penalty counts too.
    model.rating_head.user_bias.embeddings.assign(tf.fill([NUM_USERS + 1, 1], 2.0))
    model.rating_head.movie_bias.embeddings.assign(tf.fill([NUM_MOVIES + 1, 1], 3.0))
    users = model.user_tower.user_embedding.embeddings.numpy()
    movies = model.movie_tower.movie_embedding.embeddings.numpy()
    expected = 0.5 * (
        np.square(users[[1, 3]]).sum() + np.square(movies[[2, 5]]).sum() + 2 * 4.0 + 2 * 9.0
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
