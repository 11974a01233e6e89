"""tf.distribute training: TF_CONFIG handling, and two workers on loopback matching one process.

Every test here is marked ``multiworker``; deselect them with ``pytest -m "not multiworker"``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TINY_OVERRIDES
from tfrs_movies.errors import ConfigError
from tfrs_movies.train import distributed

pytestmark = pytest.mark.multiworker

WORKER_TIMEOUT_SECONDS = 150  # both workers together; about 45 s on 2 cores
# Two workers vs one process, same data, seed and global batch size (256 = 2 x 128). The
# catalogue softmax (120 movies) does not depend on the batch, so only the summation order of
# gradients, the dropout masks (drawn per replica batch) and the L2 term (added per replica)
# differ; measured differences are below 0.01 on every headline metric. 0.05 absolute catches
# a wrong batch split or scaling (e.g. each worker seeing the whole batch moves them by > 0.1).
TOLERANCE = {"rmse": 0.05, "mae": 0.05, "recall@10": 0.05, "ndcg@10": 0.05, "recall@100": 0.05}


def _cluster(index: int, ports: list[int]) -> str:
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "no 'cluster'"),
        ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker"}}', "host:port"),
        ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps"}}', "no 'worker'"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "no 'task'"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief"}}', "not in the"),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
            "out of range",
        ),
    ],
)
def test_invalid_tf_config_is_a_clear_config_error(monkeypatch, text: str, message: str):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ConfigError, match=message):
        distributed.read_tf_config()


def test_tf_config_names_the_workers(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distributed.read_tf_config() is None
    monkeypatch.setenv("TF_CONFIG", _cluster(1, [1, 2]))
    resolver = distributed.read_tf_config()
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert distributed.num_workers(resolver) == 2 and distributed.num_workers(None) == 1


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        distributed.make_strategy("multi_worker")


def test_auto_without_cluster_or_gpus_is_the_default_strategy(monkeypatch, tmp_path: Path):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distributed.make_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert distributed.is_chief(strategy) and not distributed.is_multi_worker(strategy)
    assert distributed.worker_dir(tmp_path / "run", strategy) == tmp_path / "run"
    assert distributed.all_workers_ok(strategy) and not distributed.all_workers_ok(strategy, False)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_workers_on_loopback_match_a_single_process_run(tiny_run: Path, tmp_path: Path):
    from tfrs_movies.recommend import Recommender

    ports = _free_ports(2)
    run_dir = tmp_path / "run"
    logs = [tmp_path / f"worker{index}.log" for index in range(2)]
    workers = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": _cluster(index, ports),
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        command = [
            sys.executable, "-m", "tfrs_movies.cli", "train", "--workdir", str(run_dir),
            "--strategy", "multi_worker", *TINY_OVERRIDES,
        ]  # fmt: skip
        with open(logs[index], "wb") as log:
            workers.append(
                subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=log)
            )
    deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
    try:
        for worker in workers:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        timed_out = [w for w in workers if w.poll() is None]
        for worker in timed_out:
            worker.kill()
            worker.wait()
    tails = "\n".join(f"--- worker {i}\n{p.read_text()[-3000:]}" for i, p in enumerate(logs))
    assert not timed_out, f"workers still running after {WORKER_TIMEOUT_SECONDS}s\n{tails}"
    assert [w.returncode for w in workers] == [0, 0], tails

    # The chief (worker 0) wrote a complete run; worker 1's temporary directory is gone.
    assert not run_dir.with_name("run.partial").exists()
    for name in (
        "config.json",
        "metrics.json",
        "manifest.json",
        "vocab/movies.csv",
        "retrieval_index/saved_model.pb",
        "exact_index/saved_model.pb",
        "ranking_model/saved_model.pb",
        "checkpoints/best/checkpoint",
    ):
        assert (run_dir / name).is_file(), name
    assert not (Path(tempfile.gettempdir()) / f"tfrs_movies-worker1-{workers[1].pid}").exists()
    assert "worker done" in logs[1].read_text()
    recommender = Recommender.load(run_dir)
    user = (run_dir / "vocab" / "users.txt").read_text().split()[0]
    assert len(recommender.recommend([user], k=5)[0]) == 5

    multi = json.loads((run_dir / "metrics.json").read_text())
    single = json.loads((tiny_run / "metrics.json").read_text())
    assert multi["protocol"] == single["protocol"]
    for key, tolerance in TOLERANCE.items():
        assert multi["model"][key] == pytest.approx(single["model"][key], abs=tolerance), key
    # Training losses are reported per example over the global batch, as in one process.
    for got, want in zip(multi["training"]["history"], single["training"]["history"], strict=True):
        for key in ("retrieval_loss", "rating_loss", "val_rmse"):
            assert got[key] == pytest.approx(want[key], rel=0.05), key
