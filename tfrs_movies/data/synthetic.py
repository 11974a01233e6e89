"""A synthetic MovieLens-shaped dataset with learnable structure, for scale tests and benchmarks.

Generative story (all vectorized; 25M ratings in well under a minute):

* Movie popularity follows a Zipf-like power law over a random popularity rank, and user activity
  a log-normal skew; both are capped so no movie or user needs more partners than exist.
* Each (user, movie) pair is drawn from the product of the two distributions and de-duplicated,
  topping up until exactly ``num_ratings`` unique pairs exist.
* A rating is ``mean + user bias + movie bias + <user factors, movie factors> + noise``, rounded
  to the 0.5-5 scale in half stars, so a factorization model can learn it (RMSE well below the
  standard deviation of the ratings).
* Genres are drawn from the movie's hidden factors (each genre has a direction in factor space),
  so genres carry signal about taste, as in real data.
"""

from __future__ import annotations

import math

import numpy as np

from tfrs_movies.data.schema import GENRES, MAX_RATING, MIN_RATING, NUM_GENRES, Ratings
from tfrs_movies.errors import DataError

DEFAULTS: dict[str, int] = {"users": 943, "movies": 1682, "ratings": 100_000, "seed": 0}

# (ratings, users, movies) of real MovieLens releases; synthetic sizes interpolate log-log.
MOVIELENS_SHAPES = (
    (100_000, 943, 1_682),
    (1_000_209, 6_040, 3_706),
    (10_000_054, 69_878, 10_677),
    (20_000_263, 138_493, 26_744),
    (25_000_095, 162_541, 62_423),
)
_FIRST_TIMESTAMP = 789_652_009  # 1995-01-09, the first MovieLens rating
_LAST_TIMESTAMP = 1_574_327_703  # 2019-11-21, the last ml-25m rating
# Rough share of movies per genre in MovieLens; "Unknown" and "(no genres listed)" unused.
_GENRE_BASE_RATE = {
    "Action": 0.15,
    "Adventure": 0.10,
    "Animation": 0.04,
    "Children": 0.05,
    "Comedy": 0.33,
    "Crime": 0.10,
    "Documentary": 0.05,
    "Drama": 0.42,
    "Fantasy": 0.06,
    "Film-Noir": 0.01,
    "Horror": 0.09,
    "IMAX": 0.01,
    "Musical": 0.03,
    "Mystery": 0.05,
    "Romance": 0.15,
    "Sci-Fi": 0.08,
    "Thriller": 0.18,
    "War": 0.03,
    "Western": 0.02,
}
_CHUNK = 1 << 21  # ratings per chunk when gathering factors (bounds peak memory)


def parse_synthetic_spec(spec: str) -> dict[str, int]:
    """Parses ``synthetic`` or ``synthetic:users=…,movies=…,ratings=…,seed=…``.

    Returns:
        dict with keys users, movies, ratings, seed (defaults: the size of MovieLens 100K). When
        ``ratings`` is given without ``users`` or ``movies``, those follow
        :func:`movielens_shape` (``synthetic:ratings=25000000``: 162,541 users, 62,422 movies,
        as ml-25m).

    Raises:
        DataError: unknown key or a value that is not a non-negative integer.
    """
    options = dict(DEFAULTS)
    given: set[str] = set()
    _, _, rest = spec.partition(":")
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in options:
            raise DataError(
                f"bad synthetic option {item!r} in {spec!r}; expected "
                "synthetic:users=N,movies=N,ratings=N,seed=N (any subset)"
            )
        try:
            options[key] = int(value.replace("_", "").strip())
        except ValueError:
            raise DataError(
                f"synthetic option {key}={value!r} is not an integer (in {spec!r})"
            ) from None
        if options[key] < 0:
            raise DataError(f"synthetic option {key}={value} must not be negative")
        given.add(key)
    if "ratings" in given and options["ratings"] > 0:
        shape = dict(zip(("users", "movies"), movielens_shape(options["ratings"]), strict=True))
        options.update({key: value for key, value in shape.items() if key not in given})
    return options


def movielens_shape(num_ratings: int) -> tuple[int, int]:
    """(users, movies) of a MovieLens-like dataset of ``num_ratings`` ratings.

    Interpolated log-log between the real releases (:data:`MOVIELENS_SHAPES`); outside them,
    extrapolated with the end segments' slopes.
    """
    sizes = np.log([s[0] for s in MOVIELENS_SHAPES])
    x = math.log(num_ratings)
    users = math.exp(float(np.interp(x, sizes, np.log([s[1] for s in MOVIELENS_SHAPES]))))
    movies = math.exp(float(np.interp(x, sizes, np.log([s[2] for s in MOVIELENS_SHAPES]))))
    if x > sizes[-1] or x < sizes[0]:
        i = -2 if x > sizes[-1] else 0
        for j, name in ((1, "users"), (2, "movies")):
            y0, y1 = math.log(MOVIELENS_SHAPES[i][j]), math.log(MOVIELENS_SHAPES[i + 1][j])
            value = math.exp(y0 + (y1 - y0) / (sizes[i + 1] - sizes[i]) * (x - sizes[i]))
            users, movies = (value, movies) if name == "users" else (users, value)
    return max(10, round(users)), max(10, round(movies))


def _water_fill(weights: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Expected counts proportional to ``weights``, summing to ``total``, none above ``cap``."""
    expected = weights / weights.sum() * total
    for _ in range(50):
        over = expected > cap
        if not over.any():
            break
        free = ~over
        expected[over] = cap
        remaining = total - cap * over.sum()
        expected[free] = weights[free] / weights[free].sum() * remaining
    return np.minimum(expected, cap)


def _sample(cdf: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    # Inverse-CDF sampling: one searchsorted, much faster than rng.choice(p=...) at 25M.
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1]), len(cdf) - 1)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # Sort-based: numpy 2.3+'s hash-based np.unique is several times slower on 10M+ int64.
    values = np.sort(values)
    keep = np.empty(len(values), dtype=bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _unique_pairs(
    user_p: np.ndarray, movie_p: np.ndarray, num_ratings: int, rng: np.random.Generator
) -> np.ndarray:
    """Draws exactly ``num_ratings`` distinct pair keys ``user * M + movie``, in random order."""
    num_users, num_movies = len(user_p), len(movie_p)
    user_cdf, movie_cdf = np.cumsum(user_p), np.cumsum(movie_p)
    uniform_user = np.arange(1, num_users + 1, dtype=np.float64)
    uniform_movie = np.arange(1, num_movies + 1, dtype=np.float64)
    # Disjoint sorted chunks of unique keys: a top-up is checked against earlier chunks with
    # searchsorted instead of re-sorting everything drawn so far.
    chunks: list[np.ndarray] = []
    have = 0
    for attempt in range(40):
        missing = num_ratings - have
        if missing <= 0:
            break
        draw = int(missing * (1.15 if attempt == 0 else 1.5)) + 64
        # After a few rounds the skewed cells are saturated; top up uniformly so this ends.
        ucdf, mcdf = (user_cdf, movie_cdf) if attempt < 6 else (uniform_user, uniform_movie)
        fresh = _sample(ucdf, draw, rng).astype(np.int64) * num_movies + _sample(mcdf, draw, rng)
        fresh = _sorted_unique(fresh)
        for chunk in chunks:
            position = np.minimum(np.searchsorted(chunk, fresh), len(chunk) - 1)
            fresh = fresh[chunk[position] != fresh]
        chunks.append(fresh)
        have += len(fresh)
    if have < num_ratings:
        raise DataError(f"could not draw {num_ratings} distinct (user, movie) pairs")
    keys = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    # A random subset of exactly num_ratings, in random order (like a shuffled export).
    return keys[rng.permutation(have)[:num_ratings]]


def synthetic_ratings(
    num_users: int = DEFAULTS["users"],
    num_movies: int = DEFAULTS["movies"],
    num_ratings: int = DEFAULTS["ratings"],
    seed: int = DEFAULTS["seed"],
    *,
    num_factors: int = 8,
    popularity_exponent: float = 0.9,
    activity_sigma: float = 0.9,
    noise_std: float = 0.45,
) -> Ratings:
    """Generates a MovieLens-shaped dataset; the same arguments always give the same data.

    Args:
        num_users: U, users in the user table (ids "1".."U"); a few may have no rating.
        num_movies: M, movies in the movie table (ids "1".."M").
        num_ratings: R, distinct (user, movie) ratings; at most half of U * M.
        seed: seed of the single numpy Generator used for everything.
        num_factors: dimension of the hidden user/movie factors.
        popularity_exponent: Zipf exponent of movie popularity (higher: more skew).
        activity_sigma: log-normal sigma of user activity (higher: more skew).
        noise_std: standard deviation of the rating noise before rounding.

    Returns:
        Ratings with movie table (M,), user table (U,), no demographics, R ratings in random
        order with half-star values in [0.5, 5] and timestamps in 1995-2019.

    Raises:
        DataError: sizes are not positive or R is too dense for U * M.
    """
    if min(num_users, num_movies, num_ratings) <= 0:
        raise DataError(
            f"synthetic sizes must be positive, got users={num_users}, movies={num_movies}, "
            f"ratings={num_ratings}"
        )
    density = num_ratings / (num_users * num_movies)
    if density > 0.5:
        raise DataError(
            f"synthetic ratings={num_ratings} is more than half of users*movies="
            f"{num_users * num_movies}; use fewer ratings or more users/movies"
        )
    rng = np.random.default_rng(seed)
    headroom = min(1.0, max(0.5, 2 * density))

    # Popularity by a random rank, so popularity is not tied to movie id.
    popularity_rank = rng.permutation(num_movies) + 1.0
    movie_weight = popularity_rank**-popularity_exponent
    movie_expected = _water_fill(movie_weight, num_ratings, headroom * num_users)
    user_weight = rng.lognormal(0.0, activity_sigma, num_users)
    user_expected = _water_fill(user_weight, num_ratings, headroom * num_movies)

    keys = _unique_pairs(
        user_expected / user_expected.sum(), movie_expected / movie_expected.sum(), num_ratings, rng
    )
    user_index = (keys // num_movies).astype(np.int32)
    movie_index = (keys % num_movies).astype(np.int32)
    del keys

    user_factors = rng.standard_normal((num_users, num_factors), dtype=np.float32)
    movie_factors = rng.standard_normal((num_movies, num_factors), dtype=np.float32)
    user_bias = rng.normal(0.0, 0.35, num_users).astype(np.float32)
    # Popular movies are rated a little higher, as in MovieLens.
    log_pop = np.log(movie_expected + 1.0)
    movie_bias = (
        rng.normal(0.0, 0.4, num_movies)
        + 0.15 * (log_pop - log_pop.mean()) / (log_pop.std() + 1e-9)
    ).astype(np.float32)
    rating = np.empty(num_ratings, dtype=np.float32)
    scale = np.float32(0.8 / np.sqrt(num_factors))
    for start in range(0, num_ratings, _CHUNK):
        users = user_index[start : start + _CHUNK]
        movies = movie_index[start : start + _CHUNK]
        affinity = np.einsum("ij,ij->i", user_factors[users], movie_factors[movies])
        noise = rng.standard_normal(len(users), dtype=np.float32) * np.float32(noise_std)
        score = 3.5 + user_bias[users] + movie_bias[movies] + scale * affinity + noise
        rating[start : start + _CHUNK] = np.clip(np.round(score * 2) / 2, MIN_RATING, MAX_RATING)

    # Each user rates within an active window; timestamps spread over 1995-2019.
    span = _LAST_TIMESTAMP - _FIRST_TIMESTAMP
    user_start = _FIRST_TIMESTAMP + rng.random(num_users) * span * 0.9
    user_window = np.minimum(rng.exponential(2 * 365 * 86400, num_users), span)
    timestamp = user_start[user_index] + rng.random(num_ratings) * user_window[user_index]
    timestamp = np.minimum(timestamp, _LAST_TIMESTAMP).astype(np.int64)

    genres = _genres(movie_factors, rng)
    years = rng.integers(1920, 2020, num_movies)
    movie_ids = np.arange(1, num_movies + 1).astype(str)
    titles = np.empty(num_movies, dtype=object)
    titles[:] = [f"Synthetic Movie {i} ({y})" for i, y in enumerate(years.tolist(), start=1)]
    return Ratings(
        name=f"synthetic:users={num_users},movies={num_movies},ratings={num_ratings},seed={seed}",
        movie_ids=movie_ids,
        movie_titles=titles,
        movie_genres=genres,
        user_ids=np.arange(1, num_users + 1).astype(str),
        user_features={},
        user_index=user_index,
        movie_index=movie_index,
        rating=rating,
        timestamp=timestamp,
        num_duplicates_dropped=0,
    )


def _genres(movie_factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(M, NUM_GENRES) bool: genre g is likelier when the movie's factors align with its axis."""
    num_movies, num_factors = movie_factors.shape
    directions = rng.standard_normal((NUM_GENRES, num_factors)).astype(np.float32)
    base = np.full(NUM_GENRES, 1e-6)
    for name, rate in _GENRE_BASE_RATE.items():
        base[GENRES.index(name)] = rate
    logits = (movie_factors @ directions.T) * np.float32(1.5 / np.sqrt(num_factors))
    logits += np.log(base / (1 - base)).astype(np.float32)
    probability = 1.0 / (1.0 + np.exp(-logits))
    hot = rng.random((num_movies, NUM_GENRES)) < probability
    hot[:, GENRES.index("Unknown")] = False
    hot[:, GENRES.index("(no genres listed)")] = False
    # Every movie gets at least its most likely genre.
    eligible = np.where(base > 1e-5, logits, -np.inf)
    hot[np.arange(num_movies), np.argmax(eligible, axis=1)] = True
    return hot
