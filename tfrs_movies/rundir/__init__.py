"""The run directory: its layout, manifest, atomic finalize, verification and the index loader.

This package is the one place that knows where a run keeps what (the contract with downstream
code; see the README)::

    config.json, metrics.json, manifest.json
    retrieval_index/   SavedModel: ScaNN; __call__(user_ids [B] string)
                       -> (scores [B, K], movie ids [B, K])
    exact_index/       SavedModel: brute force, same signature
    ranking_model/     SavedModel: __call__(user_ids [B], movie_ids [B]) -> ratings [B]
    vocab/             movies.csv, users.txt, movie_vectors.npy
    seen/              indptr.npy, movies.npy (CSR of each user's training movies)
    checkpoints/, tensorboard/

``layout`` names the files (:class:`RunPaths`) and writes the plain ones; ``manifest`` writes
``manifest.json`` (format version, library versions, sha256 of every file), verifies a run
against it (:func:`verify_run`), updates ``metrics.json`` of a complete run crash-safely
(:func:`update_metrics`, written ahead to ``metrics.json.pending``) and loads the index
(:func:`load_index`); ``workdir`` checks where a run may go (:func:`check_workdir`) and renames
a finished ``<run>.partial`` into place (:func:`finalize_run`), so a folder under the run's
name is always complete. metrics.json and manifest.json are written by
:func:`tfrs_movies.atomic.write_json`.
"""

from tfrs_movies.rundir.layout import (
    FORMAT_VERSION,
    READABLE_FORMATS,
    RunPaths,
    file_checksums,
    write_seen,
    write_vocab,
)
from tfrs_movies.rundir.manifest import (
    is_run,
    load_index,
    update_metrics,
    verify_run,
    write_manifest,
)
from tfrs_movies.rundir.workdir import check_workdir, finalize_run

__all__ = [
    "FORMAT_VERSION",
    "READABLE_FORMATS",
    "RunPaths",
    "check_workdir",
    "file_checksums",
    "finalize_run",
    "is_run",
    "load_index",
    "update_metrics",
    "verify_run",
    "write_manifest",
    "write_seen",
    "write_vocab",
]
