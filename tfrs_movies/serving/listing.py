"""What the API lists of a run on top of the Recommender: movie payloads, title search and
the order users are listed in.

Ids and titles are resolved by the Recommender's catalogue
(:class:`tfrs_movies.recommend.Catalogue`), the run's one id <-> row mapping; this module only
adds the search index and the listing order, which are the API's own concerns.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from tfrs_movies.recommend import AmbiguousTitleError, Recommender


def message(error: BaseException) -> str:
    """The message of an exception (a KeyError's ``str`` would add quotes)."""
    return str(error.args[0]) if error.args else type(error).__name__


class Listing:
    """The run's movies and users as the API lists and searches them.

    Args:
        recommender: the loaded run.
    """

    def __init__(self, recommender: Recommender):
        self.catalogue = recommender.catalogue
        titles = [str(title) for title in self.catalogue.titles.tolist()]
        num_ratings = self.catalogue.num_ratings.tolist()
        # Search results come most rated first, then by title.
        self.popular_rows = sorted(
            range(len(titles)), key=lambda row: (-num_ratings[row], titles[row])
        )
        # Titles as queries are normalized: single spaces, casefolded.
        self.search_titles = [" ".join(title.split()).casefold() for title in titles]
        # Numeric ids in numeric order, then the others (ids of 19+ digits sort as text).
        self.users = sorted(
            (str(user) for user in self.catalogue.users.ids.tolist()),
            key=lambda u: (0, int(u), u) if u.isdigit() and len(u) < 19 else (1, 0, u),
        )

    @property
    def num_movies(self) -> int:
        return len(self.search_titles)

    def movie(self, row: int) -> dict[str, Any]:
        """A :class:`~tfrs_movies.serving.schemas.Movie` as plain data."""
        catalogue = self.catalogue
        return {
            "movie_id": str(catalogue.movies.ids[row]),
            "title": str(catalogue.titles[row]),
            "genres": str(catalogue.genres[row]),
            "num_ratings": int(catalogue.num_ratings[row]),
        }

    def resolve(self, key: str) -> int:
        """Row of a movie given by id or exact title.

        Raises:
            HTTPException: 404 unknown movie; 422 a title shared by several movies.
        """
        try:
            return self.catalogue.movie_row(key)
        except AmbiguousTitleError as error:
            raise HTTPException(422, message(error)) from None
        except KeyError as error:
            raise HTTPException(404, message(error)) from None

    def search(self, query: str, limit: int) -> tuple[int, list[int]]:
        """Rows of the movies whose titles contain ``query``, most rated first.

        Args:
            query: any text; spaces are collapsed and case ignored. Empty matches every movie.
            limit: most rows returned.

        Returns:
            (number of matches, their first ``limit`` rows).
        """
        needle = " ".join(query.split()).casefold()
        if not needle:
            return len(self.popular_rows), self.popular_rows[:limit]
        matches = [row for row in self.popular_rows if needle in self.search_titles[row]]
        return len(matches), matches[:limit]
