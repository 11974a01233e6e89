"""Summary statistics of a :class:`Ratings`, for ``tfrs-movies data info`` and run manifests."""

from __future__ import annotations

import datetime

import numpy as np

from tfrs_movies.data.schema import Ratings


def _spread(counts: np.ndarray) -> dict[str, float]:
    if counts.size == 0:
        return {"min": 0, "median": 0.0, "max": 0}
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "max": int(counts.max()),
    }


def _date(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.timezone.utc).strftime(
        "%Y-%m-%d"
    )


def describe(ratings: Ratings) -> dict:
    """Counts and distributions of a dataset (JSON-serializable).

    Args:
        ratings: any Ratings (a whole source or a split).

    Returns:
        dict with name, users, movies (table sizes), ratings, users_with_ratings,
        movies_with_ratings, rating_histogram ({"0.5": count, ...} for the values present),
        mean_rating, sparsity (1 - R / (U * M)), ratings_per_user and ratings_per_movie
        ({min, median, max} over the whole tables, so unrated movies count as 0), first_date,
        last_date (UTC, YYYY-MM-DD; None without ratings), duplicates_dropped, demographics
        (the user feature names present).
    """
    per_user = np.bincount(ratings.user_index, minlength=ratings.num_users)
    per_movie = np.bincount(ratings.movie_index, minlength=ratings.num_movies)
    values, counts = np.unique(ratings.rating, return_counts=True)
    cells = ratings.num_users * ratings.num_movies
    has_ratings = ratings.num_ratings > 0
    return {
        "name": ratings.name,
        "users": ratings.num_users,
        "movies": ratings.num_movies,
        "ratings": ratings.num_ratings,
        "users_with_ratings": int(np.count_nonzero(per_user)),
        "movies_with_ratings": int(np.count_nonzero(per_movie)),
        "rating_histogram": {f"{v:.1f}": int(c) for v, c in zip(values, counts, strict=True)},
        "mean_rating": float(ratings.rating.mean(dtype=np.float64)) if has_ratings else None,
        "sparsity": 1.0 - ratings.num_ratings / cells if cells else 1.0,
        "ratings_per_user": _spread(per_user),
        "ratings_per_movie": _spread(per_movie),
        "first_date": _date(ratings.timestamp.min()) if has_ratings else None,
        "last_date": _date(ratings.timestamp.max()) if has_ratings else None,
        "duplicates_dropped": int(ratings.num_duplicates_dropped),
        "demographics": sorted(ratings.user_features),
    }


def format_description(info: dict) -> str:
    """Renders :func:`describe` output as aligned text lines (thousands separators)."""

    def spread(s: dict) -> str:
        return f"min {s['min']:,} / median {s['median']:,g} / max {s['max']:,}"

    total = max(info["ratings"], 1)
    width = max((len(k) for k in info["rating_histogram"]), default=3)
    histogram = [
        f"  {value:>{width}}  {count:>12,}  {100 * count / total:5.1f}%"
        for value, count in info["rating_histogram"].items()
    ]
    mean = "n/a" if info["mean_rating"] is None else f"{info['mean_rating']:.3f}"
    lines = [
        f"source:              {info['name']}",
        f"users:               {info['users']:,} ({info['users_with_ratings']:,} with ratings)",
        f"movies:              {info['movies']:,} ({info['movies_with_ratings']:,} with ratings)",
        f"ratings:             {info['ratings']:,}",
        f"mean rating:         {mean}",
        f"sparsity:            {100 * info['sparsity']:.2f}%",
        f"ratings per user:    {spread(info['ratings_per_user'])}",
        f"ratings per movie:   {spread(info['ratings_per_movie'])}",
        f"date range:          {info['first_date']} .. {info['last_date']} (UTC)",
        f"duplicates dropped:  {info['duplicates_dropped']:,}",
        f"demographics:        {', '.join(info['demographics']) or 'none'}",
        "rating histogram:",
        *histogram,
    ]
    return "\n".join(lines)
