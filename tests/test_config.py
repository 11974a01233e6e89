"""Config: file + overrides, validation messages, round trip, CLI errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfrs_movies import cli
from tfrs_movies.config import Config, load_config, save_config
from tfrs_movies.errors import ConfigError


def test_defaults_file_then_overrides(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 3\nrating_weight = 0.5\n[model]\nuse_genres = true\n")
    config = load_config(path, ["train.epochs=7", "model.rating_hidden_units=32,16"])
    assert config.train.epochs == 7  # the override wins over the file
    assert config.train.rating_weight == 0.5 and config.model.use_genres is True
    assert config.model.rating_hidden_units == (32, 16)
    assert config.train.retrieval_weight == Config().train.retrieval_weight


def test_saved_config_loads_back_identically(tmp_path: Path):
    config = load_config(None, ["data.source=synthetic", "index.num_leaves=7", "eval.ndcg_k=5"])
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.epoch=3", r"unknown config key train\.epoch; known keys in \[train\]"),
        ("training.epochs=3", r"unknown config section \[training\]"),
        ("train.epochs=three", r"train\.epochs: expected an integer, got 'three'"),
        ("train.epochs=2.5", r"expected an integer"),
        ("model.use_genres=maybe", r"expected true or false"),
        ("train.learning_rate=-1", r"train\.learning_rate must be > 0"),
        ("data.test_fraction=1.5", r"data\.test_fraction must be in \(0, 1\)"),
        ("data.split=shuffled", r"data\.split must be one of"),
        ("model.ensemble_size=0", r"model\.ensemble_size must be >= 1"),
        ("train.refit=sometimes", r"train\.refit must be one of"),
        ("data.validation_max_ratings=0", r"data\.validation_max_ratings must be >= 1"),
        ("train.rating_weight=nan", r"finite"),
        ("train.epoch_average_decay=1", r"train\.epoch_average_decay must be in \[0, 1\)"),
        ("train.epoch_average_decay=-0.1", r"train\.epoch_average_decay must be in"),
        ("train.epoch_average_decay=nan", r"train\.epoch_average_decay must be in"),
        ("train.intra_op_threads=-1", r"train\.intra_op_threads must be >= 0"),
        ("model.catalogue_scores_dtype=float16", r"model\.catalogue_scores_dtype must be one of"),
        ("model.query_dropout=1", r"model\.query_dropout must be in \[0, 1\)"),
        ("model.query_dropout=nan", r"model\.query_dropout must be in"),
        ("epochs=3", r"section\.key=value"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_unreadable_and_invalid_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_cli_reports_a_bad_override_in_one_line(capsys):
    code = cli.main(["train", "--data", "synthetic", "train.epochs=zero"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["error: train.epochs: expected an integer, got 'zero'"]
    assert "Traceback" not in err
