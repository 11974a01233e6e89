"""What several commands share: argparse types and the config arguments of train and sweep."""

from __future__ import annotations

import argparse

from tfrs_movies.config import Config, load_config


def whole_number(text: str) -> int:
    """argparse type of counts: rejects fractions and non-finite values ('nan', 'inf').

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number.
    """
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments that build a config: config file, data source, overrides."""
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON config file")
    parser.add_argument(
        "--data",
        metavar="SOURCE",
        help="MovieLens folder or .zip, tfds:movielens/<config>, or synthetic[:...] "
        "(default: $TFRS_MOVIES_DATA, else tfds:movielens/100k-ratings)",
    )
    parser.add_argument("--manual-dir", metavar="DIR", help="tfds manual_dir (offline archives)")
    parser.add_argument("--data-dir", metavar="DIR", help="tfds data directory")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. train.epochs=5 train.rating_weight=0.5",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The resolved config: defaults, --config file, --data/--manual-dir, then overrides.

    Args:
        args: parsed arguments of a parser set up by :func:`add_config_arguments`.

    Returns:
        the validated config.

    Raises:
        ConfigError: the file, an override or a resulting value is invalid.
    """
    overrides = []
    for key, value in (
        ("source", args.data),
        ("manual_dir", args.manual_dir),
        ("data_dir", args.data_dir),
    ):
        if value is not None:
            overrides.append(f"data.{key}={value}")
    return load_config(args.config, [*overrides, *args.overrides])
