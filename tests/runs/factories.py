"""Run folders made through the real writer API (start_run / finish_run / fail_run), for the runs tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from embedtune.runs import Report, RunMetrics, Selection, finish_run, start_run

DATA_HASHES = {"data/fiqa/corpus.jsonl": "ab" * 32}


def make_config(**overrides) -> dict:
    """A nested config; ``training__learning_rate=5e-5`` style overrides set nested keys."""
    config = {
        "model": {"name_or_path": "sentence-transformers/all-MiniLM-L6-v2", "max_seq_length": 256},
        "training": {"learning_rate": 2e-5, "epochs": 1, "batch_size": 32, "loss": {"name": "infonce", "scale": 20}},
        "data": {"path": "data/fiqa", "hard_negatives": True},
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return config


def make_metrics(
    base: float = 0.3000,
    tuned: float = 0.3456,
    *,
    wall: float = 3723.0,
    role: str = "test",
    split: str = "test",
    chosen: str = "fine_tuned",
) -> RunMetrics:
    """Metrics of a finished run whose primary metric is ndcg@10."""
    if chosen == "fine_tuned":
        step, base_dev, verdict = 200, 0.3300, "fine-tuned checkpoint beats the base model on dev"
    else:
        step, base_dev, verdict = None, 0.3500, "kept the base model: no checkpoint beat it on dev"
    return RunMetrics(
        primary_metric="ndcg@10",
        report=Report(
            split=split,
            role=role,
            base={"ndcg@10": base, "map@100": 0.2500, "mrr@10": 0.4000},
            fine_tuned={"ndcg@10": tuned, "map@100": 0.2750, "mrr@10": 0.4400},
        ),
        selection=Selection(
            chosen=chosen, step=step, base_dev=base_dev, best_dev=0.3477, delta=0.3477 - base_dev, verdict=verdict
        ),
        dev_history=[
            {"step": 100, "epoch": 0.5, "ndcg@10": 0.3311, "mrr@10": 0.4012},
            {"step": 200, "epoch": 1.0, "ndcg@10": 0.3477, "mrr@10": 0.4123},
        ],
        loss_history=[{"step": 10, "loss": 1.2345}, {"step": 200, "loss": 0.4321}],
        splits={"train": 900, "dev": 100, "test": 200},
        num_train_examples=5000,
        wall_time_s=wall,
        train_time_s=3000.0,
        peak_memory_mb=2048.5,
    )


def started_run(runs_dir: Path, name: str, config: dict | None = None) -> Path:
    """A run started with ``start_run`` and left running."""
    return start_run(
        runs_dir,
        name,
        config=make_config() if config is None else config,
        data_hashes=dict(DATA_HASHES),
        command=f"embedtune train --name {name}",
    )


def finished_run(runs_dir: Path, name: str, metrics: RunMetrics | None = None, config: dict | None = None) -> Path:
    """A run started with ``start_run`` and ended with ``finish_run``."""
    folder = started_run(runs_dir, name, config)
    finish_run(folder, make_metrics() if metrics is None else metrics)
    return folder


def dead_pid() -> int:
    """The pid of a process that has already exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def started_by_dead_process(
    runs_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch, host: str | None = None
) -> Path:
    """A run whose ``run.json`` says ``running`` for a process that is gone (optionally on another host)."""
    pid = dead_pid()
    with monkeypatch.context() as patch:
        patch.setattr("embedtune.runs.writer.os.getpid", lambda: pid)
        if host is not None:
            patch.setattr("embedtune.runs.writer.socket.gethostname", lambda: host)
        return started_run(runs_dir, name)
