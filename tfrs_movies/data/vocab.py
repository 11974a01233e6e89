"""Id vocabularies built from the training split only.

Index 0 is the explicit out-of-vocabulary (OOV) index; known ids map to 1..n in the order of
:attr:`Vocabulary.ids` (sorted), which is also what
``tf.keras.layers.StringLookup(vocabulary=vocab.ids, mask_token=None, num_oov_indices=1)``
produces, so a model can embed with ``input_dim=vocab.num_indices``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfrs_movies.data.schema import Ratings

OOV_INDEX = 0


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A sorted id vocabulary with vectorized lookups.

    Attributes:
        ids: (n,) str, sorted and unique; ``ids[i]`` has index ``i + 1``.
        table_index: optional (T,) int32 mapping each row of the source Ratings table (user or
            movie table) to its vocabulary index (0 when that id is not in the vocabulary), so
            dataset rows map without string work; None for a vocabulary loaded from a file.
    """

    ids: np.ndarray
    table_index: np.ndarray | None = None

    @classmethod
    def from_ids(cls, ids, table_ids: np.ndarray | None = None) -> Vocabulary:
        """Builds a vocabulary over ``ids`` (any order, repeats allowed).

        Args:
            ids: (N,) str-like ids.
            table_ids: optional (T,) ids of a Ratings table, to precompute :attr:`table_index`.
        """
        vocab = cls(np.unique(np.asarray(ids, dtype=str)))
        if table_ids is not None:
            vocab = dataclasses.replace(vocab, table_index=vocab.lookup(table_ids))
        return vocab

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_indices(self) -> int:
        """n + 1: the embedding table size including the OOV index."""
        return len(self) + 1

    def lookup(self, ids) -> np.ndarray:
        """Maps ids to indices.

        Args:
            ids: (...,) str or bytes ids (a scalar works too).

        Returns:
            (...,) int32; 0 for ids not in the vocabulary, else 1..n.
        """
        query = np.asarray(ids)
        if query.dtype.kind == "S" or (
            query.dtype == object and query.size and isinstance(query.flat[0], bytes)
        ):
            query = np.char.decode(query.astype("S"), "utf-8")
        query = query.astype(str)
        if len(self) == 0:
            return np.zeros(query.shape, dtype=np.int32)
        position = np.searchsorted(self.ids, query)
        clipped = np.minimum(position, len(self) - 1)
        found = self.ids[clipped] == query
        return np.where(found, clipped + 1, OOV_INDEX).astype(np.int32)

    def lookup_rows(self, rows: np.ndarray) -> np.ndarray:
        """Maps Ratings table rows (e.g. ``ratings.user_index``) to indices, without strings.

        Args:
            rows: (...,) int rows of the table this vocabulary was built against.

        Returns:
            (...,) int32 indices (0 = OOV).

        Raises:
            ValueError: the vocabulary has no :attr:`table_index` (loaded from a file).
        """
        if self.table_index is None:
            raise ValueError("this vocabulary has no table_index; use lookup(ids)")
        return self.table_index[np.asarray(rows)]

    def id_of(self, indices) -> np.ndarray:
        """Inverse lookup: (...,) int indices -> (...,) str ids; index 0 gives ``""``."""
        indices = np.asarray(indices)
        padded = np.concatenate([np.array([""], dtype=self.ids.dtype), self.ids])
        return padded[indices]

    def save(self, path: str | os.PathLike) -> None:
        """Writes one id per line (UTF-8), in index order 1..n."""
        with open(path, "w", encoding="utf-8", newline="\n") as stream:
            stream.writelines(f"{i}\n" for i in self.ids.tolist())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Reads a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as stream:
            ids = [line.rstrip("\n") for line in stream if line.rstrip("\n")]
        return cls(np.array(ids, dtype=str))


def build_vocabularies(train: Ratings) -> tuple[Vocabulary, Vocabulary]:
    """User and movie vocabularies over the ids that occur in ``train``'s ratings.

    Users or movies only in the test split (or in no rating) are therefore out of vocabulary,
    which is what keeps evaluation honest.

    Args:
        train: the training split.

    Returns:
        (user_vocab, movie_vocab), each with ``table_index`` over ``train``'s tables (which test
        splits share), so ``user_vocab.lookup_rows(test.user_index)`` works.
    """
    used_users = np.unique(train.user_index)
    used_movies = np.unique(train.movie_index)
    user_vocab = Vocabulary.from_ids(train.user_ids[used_users], table_ids=train.user_ids)
    movie_vocab = Vocabulary.from_ids(train.movie_ids[used_movies], table_ids=train.movie_ids)
    return user_vocab, movie_vocab
