"""Loss-weight sweeps: grid parsing, resume, failure handling, tables, plot, compare, CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tfrs_movies.cli import main
from tfrs_movies.config import load_config
from tfrs_movies.errors import ConfigError
from tfrs_movies.experiments import (
    WeightPair,
    compare_runs,
    pareto_front,
    parse_seeds,
    parse_weights,
    run_name,
    run_sweep,
)

TINY = [
    "data.source=synthetic:users=60,movies=150,ratings=3000,seed=0",
    "train.epochs=1",
    "train.batch_size=256",
    "eval.baselines=false",
    "train.tensorboard=false",
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_parse_weights_and_seeds():
    pairs = parse_weights("1:0, 0:1,1:0.1,0.1:1")
    assert pairs == [WeightPair(1, 0), WeightPair(0, 1), WeightPair(1, 0.1), WeightPair(0.1, 1)]
    assert [p.label for p in pairs] == ["1:0", "0:1", "1:0.1", "0.1:1"]
    assert run_name(pairs[2], 2) == "r1-s0.1-seed2"
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("1", "1:x", "", "1:1,1:1"):
        with pytest.raises(ConfigError):
            parse_weights(bad)
    for bad in ("a", "0,0", ""):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_pareto_front():
    rmse = np.array([0.90, 0.95, 0.92, 1.00, np.nan])
    recall = np.array([0.10, 0.20, 0.09, 0.15, 0.50])
    # 0.92/0.09 is dominated by 0.90/0.10; 1.00/0.15 by 0.95/0.20; NaN is never on the front.
    assert pareto_front(rmse, recall).tolist() == [0, 1]


def fake_metrics(pair: WeightPair, seed: int) -> dict:
    recall = 0.1 + 0.1 * pair.retrieval / (pair.retrieval + pair.rating) + 0.01 * seed
    rmse = (
        0.9
        + 0.1 * pair.retrieval / (pair.retrieval + pair.rating)
        + (2.0 if pair.rating == 0 else 0.0)
    )
    return {
        "protocol": {
            "dataset": "fake",
            "split": "random",
            "split_seed": 42,
            "num_test_ratings": 100,
        },
        "model": {
            "recall@10": recall,
            "recall@100": 2 * recall,
            "ndcg@10": recall,
            "factorized_top_100": 0.3,
            "rmse": rmse,
            "mae": rmse - 0.2,
        },
        "baselines": {
            "most_popular": {"recall@10": 0.12, "ndcg@10": 0.1},
            "ease": {"recall@10": 0.22, "ndcg@10": 0.2},
            "biased_mf": {"recall@10": 0.03, "rmse": 0.91, "mae": 0.72},
        },
        "training": {"fit_seconds": 1.0, "total_seconds": 2.0},
        "pipeline": {"reranked": {"recall@10": recall}},
    }


class FakeTrainer:
    """Stands in for train_run: writes metrics.json; fails for ``fail_seeds``."""

    def __init__(self, fail_seeds=()):
        self.calls: list[tuple[float, float, int, bool]] = []
        self.resumed: list[bool] = []
        self.fail_seeds = set(fail_seeds)

    def __call__(self, config, workdir, *, resume, overwrite, ratings, log):
        t = config.train
        self.calls.append((t.retrieval_weight, t.rating_weight, t.seed, config.eval.baselines))
        self.resumed.append(resume)
        if t.seed in self.fail_seeds:
            raise RuntimeError(f"boom on seed {t.seed}")
        metrics = fake_metrics(WeightPair(t.retrieval_weight, t.rating_weight), t.seed)
        if not config.eval.baselines:
            metrics.pop("baselines")
        Path(workdir).mkdir(parents=True, exist_ok=resume)
        (Path(workdir) / "config.json").write_text(json.dumps(config.to_dict()))
        (Path(workdir) / "metrics.json").write_text(json.dumps(metrics))
        return SimpleNamespace(metrics=metrics)


def test_failed_runs_are_recorded_and_the_sweep_goes_on(tmp_path: Path):
    config = load_config(None, [*TINY, "eval.baselines=true"])
    trainer = FakeTrainer(fail_seeds={1})
    lines: list[str] = []
    weights = parse_weights("1:0,0:0,1:1")
    result = run_sweep(config, weights, [0, 1], tmp_path, train_fn=trainer, log=lines.append)

    rows = read_csv(tmp_path / "results.csv")
    assert [(r["weights"], r["seed"], r["status"]) for r in rows] == [
        ("1:0", "0", "done"),
        ("1:0", "1", "failed"),
        ("0:0", "0", "failed"),
        ("0:0", "1", "failed"),
        ("1:1", "0", "done"),
        ("1:1", "1", "failed"),
    ]
    assert "boom on seed 1" in rows[1]["error"]
    assert "both 0" in rows[2]["error"]  # config validation rejects 0:0 before training
    assert rows[1]["recall@10"] == ""
    # Baselines are computed by the first run only, then reused from baselines.json.
    assert [call[3] for call in trainer.calls] == [True, False, False, False]
    assert json.loads((tmp_path / "baselines.json").read_text())["ease"]["recall@10"] == 0.22
    assert any(line.startswith("[1/6] weights 1:0 seed 0 ... done in") for line in lines)
    assert any("[2/6] weights 1:0 seed 1 ... FAILED" in line for line in lines)
    assert len(result.failed) == 4

    markdown = (tmp_path / "results.md").read_text()
    assert "| `1:0` | 1/2 |" in markdown and "†" in markdown  # rating_weight 0 marked
    assert "*ease* (baseline)" in markdown and "Failed runs:" in markdown
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000

    # Re-running retries only the failed (trainable) runs.
    trainer.fail_seeds.clear()
    result = run_sweep(config, weights, [0, 1], tmp_path, train_fn=trainer, log=lines.append)
    assert [(c[0], c[1], c[2]) for c in trainer.calls[4:]] == [(1, 0, 1), (1, 1, 1)]
    assert [r.status for r in result.records] == [
        "done",
        "done",
        "failed",
        "failed",
        "done",
        "done",
    ]


def test_a_different_grid_or_config_in_the_same_dir_is_an_error(tmp_path: Path):
    config = load_config(None, TINY)
    trainer = FakeTrainer()
    run_sweep(config, parse_weights("1:1"), [0], tmp_path, train_fn=trainer, log=lambda _: None)
    with pytest.raises(ConfigError, match="different sweep.*grid"):
        run_sweep(config, parse_weights("1:1"), [0, 1], tmp_path, train_fn=trainer)
    other = load_config(None, [*TINY, "train.epochs=3"])
    with pytest.raises(ConfigError, match="train.epochs: 1 -> 3"):
        run_sweep(other, parse_weights("1:1"), [0], tmp_path, train_fn=trainer)
    # The per-run keys of the base config do not matter.
    same = load_config(None, [*TINY, "train.seed=7", "train.rating_weight=3"])
    run_sweep(same, parse_weights("1:1"), [0], tmp_path, train_fn=trainer, log=lambda _: None)
    assert len(trainer.calls) == 1


def test_a_complete_run_without_pipeline_metrics_is_resumed_not_retrained(tmp_path: Path):
    """A sweep interrupted after training but before the pipeline was scored finishes the run."""
    config = load_config(None, TINY)
    trainer = FakeTrainer()
    run_sweep(
        config, parse_weights("1:1,1:0.5"), [0], tmp_path, train_fn=trainer, log=lambda _: None
    )
    metrics_path = tmp_path / "runs" / "r1-s0.5-seed0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    del metrics["pipeline"]
    metrics_path.write_text(json.dumps(metrics))

    result = run_sweep(config, parse_weights("1:1,1:0.5"), [0], tmp_path, train_fn=trainer)
    assert trainer.calls[2:] == [(1, 0.5, 0, False)] and trainer.resumed == [False, False, True]
    assert [r.skipped for r in result.records] == [True, False]
    assert [r.status for r in result.records] == ["done", "done"]


def test_tiny_sweep_end_to_end_and_rerun_skips_finished_runs(tmp_path: Path, capsys):
    """2 weight pairs × 2 seeds of real training on tiny synthetic data, through the CLI."""
    sweep_dir = tmp_path / "sweep"
    argv = [
        "sweep",
        "--weights",
        "1:0.1,0.1:1",
        "--seeds",
        "0,1",
        "--workdir",
        str(sweep_dir),
        "--quiet",
        *TINY,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[4/4] weights 0.1:1 seed 1 ... done in" in out

    rows = read_csv(sweep_dir / "results.csv")
    assert [(r["weights"], r["seed"], r["status"]) for r in rows] == [
        ("1:0.1", "0", "done"),
        ("1:0.1", "1", "done"),
        ("0.1:1", "0", "done"),
        ("0.1:1", "1", "done"),
    ]
    for row in rows:
        assert 0 <= float(row["recall@10"]) <= 1 and float(row["rmse"]) > 0
        metrics = json.loads(
            (sweep_dir / "runs" / Path(row["run_dir"]).name / "metrics.json").read_text()
        )
        # The exported pipeline of every run is scored after training.
        assert 0 <= metrics["pipeline"]["reranked"]["recall@10"] <= 1
    configs = [
        json.loads((sweep_dir / "runs" / n / "config.json").read_text())
        for n in ("r1-s0.1-seed0", "r1-s0.1-seed1")
    ]
    assert [c["train"]["seed"] for c in configs] == [0, 1]
    assert {c["data"]["split_seed"] for c in configs} == {42}
    markdown = (sweep_dir / "results.md").read_text()
    assert "| `1:0.1` | 2/2 |" in markdown and "| `0.1:1` | 2/2 |" in markdown
    assert " ± " in markdown
    assert (sweep_dir / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["grid"]["weights"] == [[1.0, 0.1], [0.1, 1.0]]

    mtimes = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("runs/*/metrics.json")}
    assert main([*argv, "--y", "ndcg@10"]) == 0
    out = capsys.readouterr().out
    assert out.count("already finished, skipped") == 4 and "training into" not in out
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("runs/*/metrics.json")} == mtimes

    # compare: a sweep expands to its runs, a run dir is one row.
    one_run = sweep_dir / "runs" / "r1-s0.1-seed0"
    comparison = compare_runs([sweep_dir, one_run])
    assert [r["name"] for r in comparison["runs"]] == [
        "sweep/r1-s0.1-seed0",
        "sweep/r1-s0.1-seed1",
        "sweep/r0.1-s1-seed0",
        "sweep/r0.1-s1-seed1",
    ]
    assert comparison["same_split"]
    assert main(["compare", str(sweep_dir)]) == 0
    table = capsys.readouterr().out
    assert "sweep/r0.1-s1-seed1" in table and "recall@10" in table and "0.1:1" in table


def test_cli_rejects_per_run_overrides_and_bad_weights(tmp_path: Path, capsys):
    base = ["sweep", "--weights", "1:1", "--workdir", str(tmp_path), *TINY]
    assert main([*base, "train.seed=3"]) == 2
    assert "set per run by --weights/--seeds" in capsys.readouterr().err
    assert main(["sweep", "--weights", "1-1", "--workdir", str(tmp_path), *TINY]) == 2
    assert "retrieval_weight:rating_weight" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert not os.listdir(tmp_path)
