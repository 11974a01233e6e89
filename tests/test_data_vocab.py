"""Vocabularies: built from train only, 0 is OOV, vectorized lookups."""

from __future__ import annotations

import numpy as np

from tfrs_movies.data import (
    Vocabulary,
    build_vocabularies,
    leave_last_n_split,
    random_split,
    synthetic_ratings,
)


def test_oov_and_known_ids():
    vocab = Vocabulary.from_ids(["b", "a", "c", "a"])
    assert vocab.ids.tolist() == ["a", "b", "c"] and len(vocab) == 3 and vocab.num_indices == 4
    np.testing.assert_array_equal(vocab.lookup(["a", "c", "zz", "b", ""]), [1, 3, 0, 2, 0])
    np.testing.assert_array_equal(vocab.lookup(np.array([b"c", b"nope"])), [3, 0])
    assert vocab.lookup(["a"]).dtype == np.int32
    assert vocab.id_of([0, 1, 3]).tolist() == ["", "a", "c"]


def test_build_from_train_only():
    ratings = synthetic_ratings(200, 150, 3000, seed=5)
    train, test = random_split(ratings, 0.3, seed=0)
    user_vocab, movie_vocab = build_vocabularies(train)
    assert set(movie_vocab.ids.tolist()) == set(train.movie_ids[train.movie_index].tolist())
    assert set(user_vocab.ids.tolist()) == set(train.user_ids[train.user_index].tolist())
    # Row lookups agree with string lookups, and test-only movies are OOV.
    by_rows = movie_vocab.lookup_rows(test.movie_index)
    by_ids = movie_vocab.lookup(test.movie_ids[test.movie_index])
    np.testing.assert_array_equal(by_rows, by_ids)
    test_only = ~np.isin(test.movie_index, train.movie_index)
    assert (by_rows[test_only] == 0).all() and (by_rows[~test_only] > 0).all()
    assert (user_vocab.lookup_rows(train.user_index) > 0).all()


def test_unrated_table_rows_are_oov(tiny_csv):
    from tfrs_movies.data import load_source

    ratings = load_source(str(tiny_csv))  # movie "20" is in movies.csv but never rated
    train, _ = leave_last_n_split(ratings, n=5)
    _, movie_vocab = build_vocabularies(train)
    assert movie_vocab.ids.tolist() == ["1", "11"]
    assert movie_vocab.lookup(["20"])[0] == 0
    assert movie_vocab.table_index.tolist() == [1, 2, 0]


def test_save_load_roundtrip(tmp_path):
    vocab = Vocabulary.from_ids(["10", "2", "Caf\xe9"])
    vocab.save(tmp_path / "v.txt")
    loaded = Vocabulary.load(tmp_path / "v.txt")
    np.testing.assert_array_equal(loaded.ids, vocab.ids)
    np.testing.assert_array_equal(loaded.lookup(["2", "x"]), vocab.lookup(["2", "x"]))
