"""Command line: ``tfrs-movies <command> ...``; thin wrappers over the library.

This folder parses arguments and calls the library; it holds no logic of its own. One module per
command group, each with an ``add_commands(commands)`` that adds its subparsers and handlers
``cmd_<name>(args) -> int``: :mod:`.data` (data info), :mod:`.model` (train, evaluate, recommend,
similar), :mod:`.experiments` (sweep, compare, analyze), :mod:`.serve` (serve); :mod:`.arguments`
holds what several commands share (config arguments, argparse types). A new command group gets its
own module, added in :func:`build_parser`.

Errors meant for a person (:class:`~tfrs_movies.errors.TfrsMoviesError`, missing files,
permissions, bad arguments) are printed as one ``error: ...`` line on stderr, exit status 2;
Ctrl-C exits with 130. Neither prints a traceback. Native log lines of TensorFlow and ScaNN are
hidden unless ``--verbose`` (see :mod:`tfrs_movies.log`).

Each handler imports what its command needs inside the function: importing TensorFlow takes
seconds (measured: ``tfrs-movies --help`` 0.2 s and ``data info synthetic`` 0.6 s with these
imports deferred, against 10 s or more for importing TensorFlow and the training, recommend and
experiment modules at the top, on this 2-core machine under load), and data-only commands never
need it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tfrs_movies import __version__
from tfrs_movies.cli import data, experiments, model, serve
from tfrs_movies.errors import TfrsMoviesError, one_line
from tfrs_movies.log import VERBOSE_ENV, set_native_logs

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="tfrs-movies",
        description="Multitask two-tower movie recommender on TensorFlow Recommenders.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress at INFO level and show TensorFlow's and ScaNN's native log lines "
        f"(also: {VERBOSE_ENV}=1)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    data.add_commands(commands)
    model.add_commands(commands)
    serve.add_commands(commands)
    experiments.add_commands(commands)
    return parser


def run_reporting_errors(handler: Callable[[], int | None]) -> int:
    """Runs ``handler()``; errors meant for a person become one stderr line and exit 2.

    Args:
        handler: the command to run; returns its exit status (None means 0).

    Returns:
        the handler's exit status, 2 after a reported error, 130 after ^C.
    """
    try:
        return int(handler() or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TfrsMoviesError, FileNotFoundError, PermissionError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: arguments without the program name; None means ``sys.argv[1:]``.

    Returns:
        exit status: 0 on success, 2 on a reported error, 130 on ^C.

    Raises:
        SystemExit: after ``--help`` or ``--version`` (status 0), or a usage error (status 2,
            one ``error:`` line on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        set_native_logs(verbose=True)  # before any handler imports TensorFlow
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    return run_reporting_errors(lambda: args.handler(args))


def console_main(argv: Sequence[str] | None = None) -> int:
    """:func:`main` for a process that ends with it: the ``tfrs-movies`` console script,
    ``python -m tfrs_movies.cli``, ``scripts/train.py`` and ``scripts/sweep.py``.

    The same, then every object still alive is frozen out of the garbage collector
    (``gc.freeze``): the interpreter's last collection at exit walks them all, which took about
    1.1 s after a training run (TensorFlow's graphs, Keras' layers, the datasets) and 0.18 s
    frozen (measured on ml-100k, 2026-11-30). The process ends either way; what is written is
    closed where it is written (atomic writes), so no buffer waits on that collection. Callers
    that go on running use :func:`main`: frozen objects are never collected.

    Args, Returns, Raises: as :func:`main`.
    """
    status = main(argv)
    gc.freeze()
    return status
