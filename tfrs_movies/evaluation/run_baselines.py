"""A run's baselines: fitted in a child process at the lowest CPU priority while the model
trains, or in the run's own process (``eval.baselines_in_background``).

The baselines (numpy and ``implicit``; no TensorFlow) need only the data splits, which exist
before the first epoch, and a run leaves CPU time idle: a core while TensorFlow traces its
graphs, evaluates and exports (mostly single-threaded Python), and part of both cores during the
steps. A child process at the lowest priority (nice 19), which the kernel runs on that idle time
and hardly ever instead of the run, fits the baselines there, so that their 9-10 s on ml-100k
leave the run's wall-clock time (README, "Performance"). Its BLAS and OpenMP pools are held to
one thread: a multi-threaded BLAS call waits at each step for its slowest thread, which a busy
machine runs last (two BLAS threads took EASE from 1.7 s to 10 s beside the export), and the
training steps slowed less than with two.

The child runs :func:`~tfrs_movies.evaluation.baseline_suite.evaluate_baselines` on the same
arrays, so the results are those of fitting in-process up to float rounding (tested). The
arguments go to the child through its stdin, and its results come back through an unnamed
temporary file, which the OS deletes once closed, also when either process dies.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import threadpoolctl

from tfrs_movies.config import Config
from tfrs_movies.data.prepare import PreparedData
from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation.baseline_suite import evaluate_baselines
from tfrs_movies.log import Log, silent

# The child's priority: Linux's scheduler weights a nice-19 process at 15 against 1,024 for a
# nice-0 one on a contended core, and gives it the whole core when it is idle. Not Linux's
# SCHED_IDLE (weight 3): it measured about the same here (README, "Performance") but starves
# five times more next to other busy processes, and an unprivileged process can raise neither
# back when the run starts waiting.
LOWEST_NICE = 19
# Lines of the child's stderr quoted when it fails.
STDERR_TAIL_LINES = 20


def baseline_arguments(selection: PreparedData, config: Config) -> dict[str, Any]:
    """The arguments of :func:`evaluate_baselines` (and of a :class:`BaselineProcess`) for a run.

    Args:
        selection: the data the run chose its epoch count on: its ``fit`` and ``validation``
            parts choose iALS's and EASE's hyperparameters; its ``train`` and ``test`` (the
            same as the refitted data's) fit and score every baseline.
        config: the run's config (cut-offs; the seed of the stochastic baselines).

    Returns:
        Keyword arguments, all but ``log``.
    """
    return {
        "train": selection.train,
        "test": selection.test,
        "ks": config.eval.recall_ks,
        "seed": config.train.seed,
        "ndcg_k": config.eval.ndcg_k,
        "fit": selection.fit,
        "validation": selection.validation,
    }


def evaluate_run_baselines(
    selection: PreparedData,
    config: Config,
    background: BaselineProcess | None = None,
    log: Log = silent,
) -> dict[str, dict[str, Any]]:
    """The baselines' metrics for a run: ``background``'s when given, else fitted here.

    Args:
        selection: as for :func:`baseline_arguments` (what ``background`` was started with).
        config: the run's config.
        background: the baselines already being fitted in a child process.
        log: receives progress lines.

    Returns:
        What :func:`evaluate_baselines` returns.
    """
    if background is not None:
        return background.result(log)
    started = time.perf_counter()
    results = evaluate_baselines(**baseline_arguments(selection, config), log=log)
    log(f"evaluated baselines in {time.perf_counter() - started:.1f}s")
    return results


class BaselineProcess:
    """:func:`evaluate_baselines` running in a child process from construction on.

    Use as a context manager (or call :meth:`close`): leaving it stops a child that is still
    running. :meth:`result` waits for the child and returns what ``evaluate_baselines`` returned.

    Args:
        train, test, ks, seed, ndcg_k, fit, validation: as for :func:`evaluate_baselines`.
    """

    def __init__(
        self,
        train: Ratings,
        test: Ratings,
        *,
        ks: Sequence[int] = (10, 100),
        seed: int = 0,
        ndcg_k: int = 10,
        fit: Ratings | None = None,
        validation: Ratings | None = None,
    ):
        self._arguments = {
            "train": train,
            "test": test,
            "ks": tuple(ks),
            "seed": seed,
            "ndcg_k": ndcg_k,
            "fit": fit,
            "validation": validation,
        }
        self._stdout: IO[bytes] = tempfile.TemporaryFile()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        # The child must import this very package (a source checkout, a frozen copy): first on
        # its path, before the current directory that `python -c` puts there (which may hold
        # another copy, as a repository's root does).
        package_root = str(Path(__file__).resolve().parents[2])
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {package_root!r}); "
                f"from {__name__} import child_main; child_main()",
            ],
            stdin=subprocess.PIPE,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        stdin = self._process.stdin
        assert stdin is not None
        # BrokenPipeError: the child died at start; result() reports it and falls back.
        with contextlib.suppress(BrokenPipeError):
            try:
                pickle.dump(self._arguments, stdin, protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                stdin.close()

    def result(self, log: Log = silent) -> dict[str, dict[str, Any]]:
        """Waits for the child and returns its baselines.

        The child's progress lines (iALS's and EASE's choices, skipped baselines) go to ``log``
        now, in the order the child wrote them. If the child failed (killed, out of memory, an
        error), its stderr's last lines go to ``log`` and the baselines are fitted here instead,
        so a real error surfaces with its own traceback.

        Args:
            log: receives the child's progress lines and how long the wait took.

        Returns:
            What :func:`evaluate_baselines` returns.
        """
        waited = time.perf_counter()
        returncode = self._process.wait()
        waited = time.perf_counter() - waited
        failure = None if returncode == 0 else f"exit status {returncode}"
        if failure is None:
            self._stdout.seek(0)
            try:
                results, lines, seconds = pickle.load(self._stdout)
            except Exception as error:  # noqa: BLE001 - any unreadable output: fit them here
                failure = f"unreadable output ({type(error).__name__}: {error})"
        if failure is not None:
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:]
            self.close()
            log(f"baselines: the background process failed ({failure}); fitting them here")
            for line in tail:
                log(f"  {line}")
            return evaluate_baselines(**self._arguments, log=log)
        self.close()
        for line in lines:
            log(line)
        log(
            f"baselines: fitted in a background process in {seconds:.1f}s, "
            f"{waited:.1f}s of it waited for"
        )
        return results

    def close(self) -> None:
        """Stops the child if it still runs and releases its files (idempotent)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._stdout.close()
        self._stderr.close()

    def __enter__(self) -> BaselineProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def child_main() -> None:
    """The child's entry point: arguments from stdin, ``(results, log lines, seconds)`` to
    stdout."""
    if hasattr(os, "nice"):  # not on Windows
        os.nice(LOWEST_NICE)
    started = time.perf_counter()
    arguments = pickle.load(sys.stdin.buffer)
    lines: list[str] = []
    # One BLAS and OpenMP thread (see the module's docstring).
    with threadpoolctl.threadpool_limits(1):
        results = evaluate_baselines(**arguments, log=lines.append)
    seconds = time.perf_counter() - started
    pickle.dump((results, lines, seconds), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()
