"""Re-scoring candidates with the rating model: the ranking SavedModel, or its head in numpy.

A call into a TensorFlow SavedModel costs 0.15-0.2 ms of CPU on a small machine even for a
trivial function, and 0.4-0.5 ms to re-score 100 candidates; numpy does the latter in about
0.07 ms (measured on ml-100k, 2-core machine). The numpy head is built from the variables the
ranking SavedModel names in its ``rating_head_weights`` attribute (see
:mod:`tfrs_movies.saved_modules`); runs exported before that attribute existed are read by the
tf-keras object names their SavedModel was saved with. The
:class:`~tfrs_movies.recommend.Recommender` uses the numpy head only after it reproduced the
SavedModel's predictions on a sample (:func:`max_difference`), so a misread head is never used;
otherwise it keeps calling the SavedModel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfrs_movies.data.vocab import NUM_OOV_INDICES, OOV_INDEX, Vocabulary
from tfrs_movies.recommend import inputs

logger = logging.getLogger(__name__)

MATCH_TOLERANCE = 1e-3
"""Largest difference (in stars) from the SavedModel for the numpy head to be used."""

DEFAULT_RERANK_WEIGHT = 0.25
"""Weight of the predicted rating in the final order, ``retrieval_score / temperature +
weight * predicted_rating``. Measured on ml-100k (see README): ordering purely by predicted
rating halves Recall@10, since a high predicted rating does not mean the user would choose the
movie; a small weight keeps the retrieval order and lets the rating break near-ties (0.25
measured best of 0-2)."""

RESCORING_CHUNK_PAIRS = 1024
"""Most (query, candidate) pairs the numpy head scores at once; larger batches are cut into
chunks of whole queries, so that the intermediate arrays stay small enough for the CPU's
caches. Measured on ml-100k with the 4-member default, 100 candidates for each of 1,000
users (2-core machine): 127-131 ms in one piece, 55-57 ms in chunks of 1,024 pairs (58-65 ms
in chunks of 512 or 2,048-8,192), and 158-170 ms through the SavedModel, so the numpy head
serves every batch size."""


NEW_PERSON_RERANK_WEIGHT = 1.0
NEW_PERSON_POPULARITY_WEIGHT = 2.0
"""For a person who was not in training, the final order is ``retrieval_score / temperature +
NEW_PERSON_RERANK_WEIGHT * predicted_rating + NEW_PERSON_POPULARITY_WEIGHT * log(1 + the
movie's training ratings)``: from 10 ratings their vector says less than a trained user's, and
popular movies win the top positions (without the prior, NDCG@10 stayed below most-popular's).
Chosen on validation hold-outs of ml-100k (``evaluate_new_users`` protocol with split seeds 1
and 2; the README's reported hold-out uses 42): over popularity weights 0, 0.5, 1, 2, 4 x
rerank weights 0.25, 1, the highest mean NDCG@10 among the settings that beat most-popular on
Recall@10 and NDCG@10 on both."""


def rerank_weight(
    value: float | None, default: float = DEFAULT_RERANK_WEIGHT, name: str = "rerank_weight"
) -> float:
    """The weight to use: ``default`` for None, else ``value`` (checked, named ``name``).

    Raises:
        ValueError: ``value`` is not a finite real number (bools and strings included).
    """
    return default if value is None else inputs.weight(value, name)


class BlockKernel:
    """A dense layer's kernel, multiplied block by block when it is block-diagonal.

    The blocks are found from the zeros: the most equal diagonal blocks (one per column group)
    outside which every entry is 0; rows past the last block must be 0 too. Any such partition
    gives the same product as the whole kernel, since only zeros are skipped.

    Args:
        kernel: (in, out) float32.
    """

    def __init__(self, kernel: np.ndarray):
        self.kernel = np.asarray(kernel, np.float32)
        self.blocks = diagonal_blocks(self.kernel)
        # Each block's kernel contiguous, with where it reads and writes.
        self._parts = [
            (rows, columns, self.kernel[rows, columns].copy())
            for rows, columns in self.blocks or []
        ]

    def times(self, inputs: np.ndarray) -> np.ndarray:
        """(n, in) -> (n, out) float32: ``inputs @ kernel``."""
        if self.blocks is None:
            return inputs @ self.kernel
        product = np.empty((len(inputs), self.kernel.shape[1]), np.float32)
        for rows, columns, part in self._parts:
            product[:, columns] = inputs[:, rows] @ part
        return product


def diagonal_blocks(kernel: np.ndarray) -> list[tuple[slice, slice]] | None:
    """The diagonal blocks of a block-diagonal kernel: ``count`` blocks of ``in // count`` rows
    and ``out // count`` columns, for the largest count (at least 2) that leaves only zeros
    outside them; None if there is none (a dense kernel, or a single output column).

    Args:
        kernel: (in, out).

    Returns:
        ``[(rows, columns)]`` slices, one pair per block, in order.
    """
    rows, columns = kernel.shape
    nonzero = kernel != 0
    for count in range(min(rows, columns), 1, -1):
        if columns % count:
            continue
        height, width = rows // count, columns // count
        blocks = [
            (slice(k * height, (k + 1) * height), slice(k * width, (k + 1) * width))
            for k in range(count)
        ]
        outside = nonzero.copy()
        for block_rows, block_columns in blocks:
            outside[block_rows, block_columns] = False
        if not outside.any():
            return blocks
    return None


class NumpyRatingHead:
    """Predicted rating = global mean + user bias + movie bias + MLP([u, m, u * m]).

    The same function as the rating head of :mod:`tfrs_movies.model.heads` in inference
    (no dropout). The first layer's movie part, ``m @ W_m + b``, is the same for every user, so
    it is computed once per movie here. A kernel that is block-diagonal (an ensemble's members
    side by side, see ``RatingHead.serving_weights``) is multiplied block by block, skipping
    the zeros (a quarter of the work with 4 members). Large batches are scored in chunks of
    whole queries (:data:`RESCORING_CHUNK_PAIRS`).

    Args:
        global_mean: the training mean rating.
        user_bias: (num_users + 1,) user biases by vocabulary index; index 0 (OOV) is the
            unknown user (new people).
        movie_bias: (num_movies + 1,) movie biases by vocabulary index (0 = unknown movie).
        movie_vectors: (num_movies, dim) movie tower outputs by row (the catalogue order of
            ``vocab/movies.csv``; row ``r`` is vocabulary index ``r + 1``).
        layers: [(kernel (in, out), bias (out,))] of the MLP; ReLU after every layer but the
            last, whose output size is 1. The first kernel takes ``3 * dim`` inputs.

    Raises:
        ValueError: shapes that do not fit together.
    """

    def __init__(
        self,
        global_mean: float,
        user_bias: np.ndarray,
        movie_bias: np.ndarray,
        movie_vectors: np.ndarray,
        layers: Sequence[tuple[np.ndarray, np.ndarray]],
    ):
        dim = movie_vectors.shape[1]
        if not layers or layers[0][0].shape[0] != 3 * dim or layers[-1][0].shape[1] != 1:
            raise ValueError(
                f"the MLP must take {3 * dim} inputs and give 1 output; got layer shapes "
                f"{[kernel.shape for kernel, _ in layers]}"
            )
        if len(movie_bias) != len(movie_vectors) + NUM_OOV_INDICES:
            raise ValueError(
                f"{len(movie_bias)} movie biases for {len(movie_vectors)} movies (+1 unknown)"
            )
        first_kernel, first_bias = (np.asarray(a, np.float32) for a in layers[0])
        self.movie_vectors = np.asarray(movie_vectors, np.float32)
        self.user_bias = np.asarray(user_bias, np.float32)
        self._user_kernel = first_kernel[:dim]
        self._product_kernel = BlockKernel(first_kernel[2 * dim :])
        self._movie_part = self.movie_vectors @ first_kernel[dim : 2 * dim] + first_bias
        # The global mean is folded into the movie biases: one addition less per candidate.
        known_movie_bias = np.asarray(movie_bias[NUM_OOV_INDICES:], np.float32)
        self._movie_offset = known_movie_bias + np.float32(global_mean)
        self._layers = [
            (BlockKernel(np.asarray(kernel, np.float32)), np.asarray(bias, np.float32))
            for kernel, bias in layers[1:]
        ]

    def __call__(
        self, user_bias_rows: np.ndarray, user_vectors: np.ndarray, movie_rows: np.ndarray
    ) -> np.ndarray:
        """Predicted ratings of each query's candidates.

        Args:
            user_bias_rows: (Q,) vocabulary indices into ``user_bias`` (``OOV_INDEX`` for a new
                person).
            user_vectors: (Q, dim) the queries' user tower outputs (or folded-in vectors).
            movie_rows: (Q, C) candidate rows of ``movie_vectors``.

        Returns:
            (Q, C) float32 predicted ratings.
        """
        movie_rows = np.asarray(movie_rows)
        users = np.asarray(user_vectors, np.float32)
        bias_rows = np.asarray(user_bias_rows)
        queries, candidates = movie_rows.shape
        ratings = np.empty((queries, candidates), np.float32)
        step = max(1, RESCORING_CHUNK_PAIRS // max(candidates, 1))
        for start in range(0, queries, step):
            chunk = slice(start, start + step)
            ratings[chunk] = self._scores(bias_rows[chunk], users[chunk], movie_rows[chunk])
        return ratings

    def _scores(
        self, user_bias_rows: np.ndarray, users: np.ndarray, movie_rows: np.ndarray
    ) -> np.ndarray:
        """:meth:`__call__` in one piece (``users`` float32)."""
        queries, candidates = movie_rows.shape
        # Each query's parts are broadcast over its candidates as (Q, C, ...), not repeated.
        products = users[:, None, :] * self.movie_vectors[movie_rows]
        hidden = self._product_kernel.times(products.reshape(queries * candidates, -1))
        hidden = hidden.reshape(queries, candidates, -1)
        hidden += self._movie_part[movie_rows]
        hidden += (users @ self._user_kernel)[:, None, :]
        hidden = hidden.reshape(queries * candidates, -1)
        for kernel, bias in self._layers:
            np.maximum(hidden, 0.0, out=hidden)
            hidden = kernel.times(hidden) + bias
        ratings = hidden.reshape(queries, candidates) + self._movie_offset[movie_rows]
        return ratings + self.user_bias[user_bias_rows][:, None]


def from_savedmodel(ranking_model, movie_vectors: np.ndarray) -> NumpyRatingHead:
    """Reads the rating head's variables out of a loaded ranking SavedModel.

    Args:
        ranking_model: ``tf.saved_model.load(run_dir / "ranking_model")``.
        movie_vectors: (num_movies, dim) ``vocab/movie_vectors.npy``.

    Raises:
        AttributeError: the SavedModel has no ``rating_head_weights`` (exported by an older
            tfrs_movies), or they lack one of the weights.
        ValueError: their shapes do not fit ``movie_vectors``.
    """
    # Named by the export (RankingModule.rating_head_weights); runs exported before it existed
    # re-score through the SavedModel instead of reading its internal object names.
    weights = getattr(ranking_model, "rating_head_weights", None)
    if weights is None:
        raise AttributeError("the ranking SavedModel names no rating_head_weights")
    try:
        kernels, biases = weights["mlp_kernels"], weights["mlp_biases"]
        global_mean, user_bias = weights["global_mean"], weights["user_bias"]
        movie_bias = weights["movie_bias"]
    except KeyError as error:
        raise AttributeError(f"rating_head_weights has no {error}") from None
    if len(kernels) != len(biases):
        raise ValueError(f"{len(kernels)} MLP kernels but {len(biases)} biases")
    return NumpyRatingHead(
        float(global_mean.numpy()),
        user_bias.numpy()[:, 0],
        movie_bias.numpy()[:, 0],
        movie_vectors,
        [(kernel.numpy(), bias.numpy()) for kernel, bias in zip(kernels, biases, strict=True)],
    )


def max_difference(
    head: NumpyRatingHead,
    ranking_model,
    user_ids: np.ndarray,
    user_vectors: np.ndarray,
    movie_ids: np.ndarray,
    num_users: int = 8,
    num_movies: int = 32,
) -> float:
    """Largest |numpy - SavedModel| predicted rating over a fixed sample of known users (by id)
    and of folded-in vectors (new people), each with random candidates.

    Args:
        head: the numpy head.
        ranking_model: the loaded ranking SavedModel.
        user_ids: (U,) str user ids; ``user_vectors``: (U, dim) their user tower outputs.
        movie_ids: (M,) str movie ids in catalogue order.
        num_users, num_movies: sample sizes (at most the number available).

    Returns:
        The largest absolute difference, in stars.
    """
    rng = np.random.default_rng(0)
    users = rng.choice(len(user_ids), size=min(num_users, len(user_ids)), replace=False)
    movies = rng.integers(0, len(movie_ids), size=(len(users), min(num_movies, len(movie_ids))))
    movie_strings = tf.constant(np.asarray(movie_ids)[movies].astype(str))
    known = ranking_model.score_candidates(
        tf.constant(np.asarray(user_ids)[users].astype(str)), movie_strings
    ).numpy()
    # New people: shifted vectors with the unknown user's bias, as in recommend_for_ratings.
    vectors = user_vectors[users] + rng.normal(0, 0.1, user_vectors[users].shape)
    vectors[:, -1] = user_vectors[users][:, -1]
    vectors = vectors.astype(np.float32)
    new = ranking_model.score_vectors(tf.constant(vectors), movie_strings).numpy()
    bias_rows = Vocabulary.index_of_row(users)  # the biases are indexed by vocabulary index
    return float(
        max(
            np.abs(head(bias_rows, user_vectors[users], movies) - known).max(),
            np.abs(head(np.full(len(users), OOV_INDEX), vectors, movies) - new).max(),
        )
    )


class Rescorer:
    """Predicted ratings of candidate movies, for known users or for query vectors.

    Calls the ranking SavedModel until :meth:`use_numpy` switches to the numpy head (after
    checking that it agrees with the SavedModel).

    Args:
        ranking_model: the loaded ranking SavedModel.
        user_ids: (U,) str user ids by user row.
        movie_ids: (M,) str movie ids by movie row.
    """

    def __init__(self, ranking_model, user_ids: np.ndarray, movie_ids: np.ndarray):
        self.ranking_model = ranking_model
        self.user_ids = user_ids
        self.movie_ids = movie_ids
        # Fixed-width bytes: TensorFlow takes them without per-string conversion.
        self._id_bytes = np.array([m.encode() for m in movie_ids.tolist()])
        # Set by use_numpy: the numpy head and every known user's tower output (U, dim).
        self.numpy_head: NumpyRatingHead | None = None
        self.user_vectors: np.ndarray | None = None

    def use_numpy(self, movie_vectors: np.ndarray, user_vectors: np.ndarray) -> bool:
        """Re-scores with the rating head in numpy from now on, if it matches the SavedModel.

        Args:
            movie_vectors: (M, dim) movie tower outputs by movie row.
            user_vectors: (U, dim) user tower outputs by user row.

        Returns:
            True if numpy re-scoring is on; False if the ranking model names no rating head
            weights (exported by an older tfrs_movies; logged at INFO) or the numpy head
            cannot be built or differs from the SavedModel by more than
            :data:`MATCH_TOLERANCE` stars (a warning is logged).
        """
        try:
            head = from_savedmodel(self.ranking_model, movie_vectors)
        except AttributeError as error:
            logger.info("re-scoring with the SavedModel: %s", error)
            return False
        except ValueError as error:
            logger.warning("re-scoring with the SavedModel: cannot use its rating head (%s)", error)
            return False
        difference = max_difference(
            head, self.ranking_model, self.user_ids, user_vectors, self.movie_ids
        )
        if not difference <= MATCH_TOLERANCE:
            logger.warning(
                "re-scoring with the SavedModel: the numpy rating head differs by %.2g stars",
                difference,
            )
            return False
        self.numpy_head, self.user_vectors = head, user_vectors
        return True

    def known(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """(Q, C) predicted ratings of known users (Q,) rows for candidate movie rows (Q, C)."""
        if self.numpy_head is not None:
            return self.numpy_head(
                Vocabulary.index_of_row(user_rows), self.user_vectors[user_rows], movie_rows
            )
        return self.ranking_model.score_candidates(
            tf.constant(self.user_ids[user_rows].astype(str)),
            tf.constant(self._id_bytes[movie_rows]),
        ).numpy()

    def people(
        self,
        vectors: np.ndarray,
        movie_rows: np.ndarray,
        rated_rows: np.ndarray,
        ratings: np.ndarray,
        given: np.ndarray,
    ) -> np.ndarray:
        """(Q, C) predicted ratings of new people given by query vectors (Q, dim), for
        candidate movie rows (Q, C), each shifted by the person's own rating bias (the model has
        none for them): their mean residual on the movies they rated, (Q, N) ``rated_rows``
        and ``ratings`` where ``given`` (padded: :func:`inputs.padded_people`). One call scores
        candidates and rated movies alike."""
        both = self.vectors(vectors, np.concatenate([movie_rows, rated_rows], axis=1))
        width = movie_rows.shape[1]
        offsets = [
            np.mean(ratings[i, mask] - both[i, width:][mask]) for i, mask in enumerate(given)
        ]
        return both[:, :width] + np.asarray(offsets, both.dtype)[:, None]

    def vectors(self, vectors: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """(Q, C) predicted ratings of people given by query vectors (Q, dim), for candidate
        movie rows (Q, C), with the unknown user's rating bias."""
        if self.numpy_head is not None:
            return self.numpy_head(np.full(len(vectors), OOV_INDEX), vectors, movie_rows)
        return self.ranking_model.score_vectors(
            tf.constant(vectors), tf.constant(self._id_bytes[movie_rows])
        ).numpy()
