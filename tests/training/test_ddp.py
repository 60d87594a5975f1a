"""Multi-process training (DDP, gloo on CPU): one run folder written by rank 0, whatever the number of processes.

More processes per node than visible GPUs stop with one line before any run folder exists.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embedtune import runs
from embedtune.cli import main
from embedtune.cli.console import configure_console_logging
from embedtune.config import ConfigError
from embedtune.losses.distributed import check_processes_fit_gpus, join_process_group
from embedtune.runs import RunStoreError, fail_run, start_run
from embedtune.runs.writer import is_main_process, run_on_main_process

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def writer_worker(rank: int, port: int, runs_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        folder = start_run(runs_dir, "ddp", config={}, data_hashes={}, command="torchrun")
        try:
            start_run(runs_dir, "bad/name", config={}, data_hashes={}, command="torchrun")
            error = None
        except RunStoreError as raised:
            error = str(raised)
        try:
            run_on_main_process(lambda: 1 / 0)
            work_error = None
        except ZeroDivisionError as raised:
            work_error = str(raised)
        result = {
            "folder": str(folder),
            "error": error,
            "work_error": work_error,
            "main": is_main_process(),
            "pid": os.getpid(),
            "rank0_pid": run_on_main_process(os.getpid),
            "recorded_failure": fail_run(folder, "stopped by the test"),
        }
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_rank_zero_alone_creates_the_run_folder_and_every_rank_gets_it(tmp_path):
    runs_dir, out_dir = tmp_path / "runs", tmp_path / "out"
    out_dir.mkdir()
    mp.spawn(writer_worker, args=(free_port(), str(runs_dir), str(out_dir)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(2))

    assert [path.name for path in runs_dir.iterdir()] == [Path(rank0["folder"]).name]  # one folder, no second one
    assert rank0["folder"] == rank1["folder"]
    assert rank0["error"] == rank1["error"] and "invalid run name" in rank0["error"]  # rank 0's error, everywhere
    assert rank0["work_error"] == rank1["work_error"] == "division by zero"
    assert (rank0["main"], rank1["main"]) == (True, False)
    assert rank0["rank0_pid"] == rank1["rank0_pid"] == rank0["pid"] != rank1["pid"]
    assert (rank0["recorded_failure"], rank1["recorded_failure"]) == (True, False)  # rank 0 alone writes the record
    info = runs.load_run(Path(rank0["folder"]))
    assert info.status == "failed" and info.record.pid == rank0["pid"]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
@pytest.mark.parametrize(
    "backend",
    [
        "gloo",
        pytest.param(
            "nccl",
            marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL with 2 processes needs 2 GPUs"),
        ),
    ],
)
@pytest.mark.parametrize("precision", ["auto", "fp32"])  # fp32 on a CPU: a plain CPU without bf16 instructions
def test_torchrun_with_two_processes_trains_into_one_finished_run(
    tiny_model_dir, tiny_beir, tmp_path, backend, precision
):
    runs_dir = tmp_path / "runs"
    command = [
        *(TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "embedtune", "train"),
        *("--data", str(tiny_beir), "--model", str(tiny_model_dir), "--runs-dir", str(runs_dir), "--name", "ddp"),
        *("--max-steps", "2", "--batch-size", "4", "--lr", "1e-3"),
        *("--set", "data.dev_fraction=0.25", "--set", "train.logging_steps=1", "--set", "loss.isotropy_weight=0.1"),
        *("--set", f"train.precision={precision}"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if backend == "gloo":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the documented way to train on CPUs, also on a machine with GPUs
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert completed.returncode == 0, completed.stderr[-5000:]
    folders = list(runs_dir.iterdir())
    assert len(folders) == 1, folders
    folder = folders[0]
    assert runs.load_run(folder).status == "finished"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["loss_history"]] == [1, 2]  # 8 training rows = 2 processes x 4
    assert (folder / "model").is_dir() and not (folder / "checkpoints").exists()
    assert f"Process 0 of 2 ({backend})" in completed.stderr  # trained in 2 processes
    assert completed.stdout.count("Run folder:") == 1  # the summary is printed once, by rank 0
    assert "[rank 1] INFO" not in completed.stderr
    assert (folder / "train.log").read_text().count("Run folder ") == 1  # rank 0 alone writes train.log
    assert len(list((folder / "tensorboard").iterdir())) == 1  # and TensorBoard events


def launched(monkeypatch: pytest.MonkeyPatch, gpus: int, **variables: str) -> None:
    """Pretend to be a launcher's process (``variables``: WORLD_SIZE, LOCAL_RANK, ...) on a machine with ``gpus``."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)


@pytest.mark.parametrize(
    ("gpus", "variables", "processes"),
    [
        (1, {"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "0"}, 2),  # rank 0 would fit: every process stops alike
        (1, {"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 2),
        (2, {"LOCAL_RANK": "3"}, 4),  # a launcher that sets LOCAL_RANK alone
        (2, {"LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "0"}, 4),
    ],
)
def test_more_processes_than_gpus_stop_with_one_line_naming_both_and_the_fix(monkeypatch, gpus, variables, processes):
    launched(monkeypatch, gpus, WORLD_SIZE="8", **variables)
    with pytest.raises(ConfigError) as raised:
        join_process_group()
    message = str(raised.value)
    assert message.startswith(f"{processes} processes per node but {gpus} visible GPU")
    assert f"--nproc_per_node {gpus}" in message and 'CUDA_VISIBLE_DEVICES=""' in message and "gloo" in message
    assert "\n" not in message and not dist.is_initialized()


@pytest.mark.parametrize(
    ("gpus", "variables"),
    [(2, {"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1"}), (8, {"LOCAL_RANK": "0"}), (0, {"LOCAL_WORLD_SIZE": "16"})],
)
def test_processes_that_fit_the_gpus_or_run_on_cpus_pass_the_check(monkeypatch, gpus, variables):
    launched(monkeypatch, gpus, WORLD_SIZE="16", **variables)
    check_processes_fit_gpus()  # no GPU at all (CUDA_VISIBLE_DEVICES=""): gloo on CPUs, any number of processes


def test_train_with_more_processes_than_gpus_exits_2_before_any_run_folder(
    tiny_model_dir, tiny_beir, tmp_path, monkeypatch, capsys
):
    launched(monkeypatch, 1, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2")
    runs_dir = tmp_path / "runs"
    args = ["train", "--data", str(tiny_beir), "--model", str(tiny_model_dir), "--runs-dir", str(runs_dir)]

    assert main(args) == 2

    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: 2 processes per node but 1 visible GPU: ")
    assert not runs_dir.exists() and not dist.is_initialized()


def test_processes_other_than_rank_zero_log_only_warnings_marked_with_their_rank(monkeypatch, capsys):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.setenv("RANK", "1")
    try:
        configure_console_logging(verbose=True)
        logging.getLogger("embedtune.training").info("step 1/2")
        logging.getLogger("embedtune.training").warning("careful")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    stderr = capsys.readouterr().err
    assert "step 1/2" not in stderr and "[rank 1] WARNING careful" in stderr


@pytest.mark.parametrize(("rank", "prints"), [(None, True), ("0", True), ("1", False)])
def test_python_m_embedtune_prints_on_rank_zero_only(rank, prints):
    env = {key: value for key, value in os.environ.items() if key != "RANK"} | ({"RANK": rank} if rank else {})
    completed = subprocess.run(
        [sys.executable, "-m", "embedtune", "runs", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0
    assert ("usage: embedtune runs" in completed.stdout) is prints
