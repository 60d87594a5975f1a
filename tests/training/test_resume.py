"""Resuming a stopped run: the same folder continues from its last checkpoint and ends as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from embedtune.cli import main
from embedtune.config import config_from_dict
from embedtune.runs import read_run_record
from embedtune.runs.errors import RunStoreError
from embedtune.runs.outputs import last_checkpoint
from embedtune.runs.writer import check_resumable
from embedtune.training import fine_tune as fine_tune_module
from embedtune.training import head_training
from embedtune.training import mode as mode_module
from embedtune.training.final_eval import FinalEvaluation
from embedtune.training.pipeline import RunFailedError, run_training
from tests.training.test_pipeline import tiny_config

MODES = {
    "full": [],
    "lora": ["train.mode=lora", "lora.rank=4", "lora.alpha=8"],
    "head": ["train.mode=head", "head.dim=16", "train.head_learning_rate=3e-2"],
}
CRASH_STEP = 5  # inside epoch 2 of 3 (3 steps an epoch): after the epoch-1 checkpoint, before the next one


class CrashAt(TrainerCallback):
    """Raise at the end of one optimiser step, as a killed process would stop there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def inject_crash(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Add :class:`CrashAt` to the callbacks of every training mode."""
    add_callback(monkeypatch, CrashAt(step))


def add_callback(monkeypatch: pytest.MonkeyPatch, callback) -> None:
    """Append ``callback`` to the standard callbacks of every training path (full/LoRA and head)."""
    for module in (fine_tune_module, head_training):
        standard = module.standard_callbacks
        monkeypatch.setattr(module, "standard_callbacks", lambda *a, standard=standard: [*standard(*a), callback])


def config_for(mode: str, model_dir: Path, data_dir: Path, runs_dir: Path):
    return tiny_config(model_dir, data_dir, runs_dir, "train.epochs=3", "train.batch_size=6", *MODES[mode])


def dev_scores(metrics) -> list[tuple[int, float]]:
    return [(row["step"], row["ndcg@10"]) for row in metrics.to_dict()["dev_history"]]


def losses(metrics) -> dict[int, tuple[float, float]]:
    """Step -> (loss, grad norm) of every logged step: they drift at once if weights, optimiser or data differ."""
    return {row["step"]: (row["loss"], row["grad_norm"]) for row in metrics.loss_history}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_crashed_run_resumes_to_the_same_result_as_an_uninterrupted_one(
    mode, tiny_model_dir, noise_beir, tmp_path, monkeypatch
):
    reference = run_training(config_for(mode, tiny_model_dir, noise_beir, tmp_path / "reference"))

    with monkeypatch.context() as patch:
        inject_crash(patch, CRASH_STEP)
        with pytest.raises(RunFailedError) as failure:
            run_training(config_for(mode, tiny_model_dir, noise_beir, tmp_path / "runs"))
    folder = failure.value.folder
    assert read_run_record(folder).status == "failed"
    checkpoint = last_checkpoint(folder)
    assert checkpoint is not None and checkpoint.name == "checkpoint-3"

    config = config_from_dict(check_resumable(folder).config)
    resumed = run_training(config, resume=folder)

    assert resumed.folder == folder and read_run_record(folder).status == "finished"
    expected_losses = losses(reference.metrics)
    assert sorted(losses(resumed.metrics)) == sorted(expected_losses) == list(range(1, 10))
    for step, (loss, grad_norm) in losses(resumed.metrics).items():
        assert (loss, grad_norm) == pytest.approx(expected_losses[step], abs=1e-4), f"step {step}"
    assert [step for step, _ in dev_scores(resumed.metrics)] == [step for step, _ in dev_scores(reference.metrics)]
    for (_, got), (_, expected) in zip(dev_scores(resumed.metrics), dev_scores(reference.metrics), strict=True):
        assert got == pytest.approx(expected, abs=1e-4)
    assert resumed.metrics.selection.step == reference.metrics.selection.step
    for metric, value in reference.metrics.report.fine_tuned.items():
        assert resumed.metrics.report.fine_tuned[metric] == pytest.approx(value, abs=1e-4)
    assert len(list((tmp_path / "runs").iterdir())) == 1  # the same folder, no second run


class CountSteps(TrainerCallback):
    """Count the optimiser steps a training call runs."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


@pytest.mark.parametrize("mode", list(MODES))
def test_a_run_that_crashed_in_the_final_evaluation_resumes_without_training_again(
    mode, tiny_model_dir, noise_beir, tmp_path, monkeypatch
):
    shipped = []  # what the model written to model/ encodes, at each attempt
    finish_mode_model = mode_module.finish_mode_model

    def record(*args, **kwargs):
        model = finish_mode_model(*args, **kwargs)
        shipped.append(encode(model))
        return model

    monkeypatch.setattr(mode_module, "finish_mode_model", record)
    significance = FinalEvaluation.significance

    def crash_once(self, *args, **kwargs):
        if len(shipped) == 1:
            raise RuntimeError("simulated crash in the final evaluation")
        return significance(self, *args, **kwargs)

    monkeypatch.setattr(FinalEvaluation, "significance", crash_once)
    with pytest.raises(RunFailedError, match="simulated crash in the final evaluation") as failure:
        run_training(config_for(mode, tiny_model_dir, noise_beir, tmp_path / "runs"))
    folder = failure.value.folder
    assert read_run_record(folder).status == "failed"
    assert (folder / "model").is_dir()  # written before the crash
    adapter = (folder / "adapter").is_dir()
    checkpoint = last_checkpoint(folder)
    assert checkpoint is not None and checkpoint.name == "checkpoint-9"  # kept: the run did not finish

    steps = CountSteps()
    add_callback(monkeypatch, steps)
    resumed = run_training(config_from_dict(check_resumable(folder).config), resume=folder)

    assert read_run_record(folder).status == "finished"
    assert steps.steps == 0  # nothing trained again: the last checkpoint is the end of training
    assert len(shipped) == 2 and torch.allclose(shipped[1], shipped[0], atol=1e-4)  # the same selection, again
    assert [step for step, _ in dev_scores(resumed.metrics)] == [0, 3, 6, 9]
    assert sorted(losses(resumed.metrics)) == list(range(1, 10))
    assert not (folder / "checkpoints").exists()  # removed once the run is recorded finished
    assert (folder / "adapter").is_dir() == adapter == (mode == "lora" and resumed.metrics.selection.chosen != "base")
    assert torch.allclose(encode(SentenceTransformer(str(folder / "model"), device="cpu")), shipped[0], atol=1e-4)
    assert not list(folder.glob(".*.partial"))
    assert len(list((tmp_path / "runs").iterdir())) == 1


def encode(model) -> torch.Tensor:
    return model.encode(["apple tree", "fast car"], convert_to_tensor=True).cpu()


def test_a_killed_run_is_resumed_from_the_command_line(tiny_model_dir, noise_beir, tmp_path):
    runs_dir = tmp_path / "runs"
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config_for("full", tiny_model_dir, noise_beir, runs_dir).to_dict()))
    command = [sys.executable, "-m", "embedtune", "train", "--config", str(config_file)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    try:
        wait_for(lambda: any(runs_dir.glob("*/checkpoints/checkpoint-3/trainer_state.json")), process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (folder,) = runs_dir.iterdir()
    assert read_run_record(folder).status == "running"  # SIGKILL leaves no chance to record anything

    assert main(["train", "--resume", folder.name, "--runs-dir", str(runs_dir)]) == 0
    assert read_run_record(folder).status == "finished"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [row["step"] for row in metrics["dev_history"]] == [0, 3, 6, 9]


def test_resume_refuses_finished_runs_changed_data_and_extra_settings(tiny_model_dir, noise_beir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    finished = run_training(config_for("full", tiny_model_dir, noise_beir, runs_dir)).folder
    assert main(["train", "--resume", str(finished)]) == 2
    assert "already finished" in capsys.readouterr().err

    record_path = finished / "run.json"
    record = json.loads(record_path.read_text())
    record["status"] = "interrupted"
    record_path.write_text(json.dumps(record))
    assert main(["train", "--resume", str(finished), "--set", "train.epochs=9"]) == 2
    assert "--resume continues a run with its own settings" in capsys.readouterr().err

    corpus = noise_beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "new", "text": "a new document"}) + "\n")
    assert main(["train", "--resume", str(finished)]) == 2
    assert "its data changed since it started" in capsys.readouterr().err
    assert read_run_record(finished).status == "interrupted"  # refused before anything was touched


def test_a_run_interrupted_while_writing_its_report_is_finished_by_resume(
    tiny_model_dir, noise_beir, tmp_path, monkeypatch, caplog, capsys
):
    from embedtune.training import run_records

    def interrupt(folder):
        (Path(folder) / "figures").mkdir()  # a partial report
        raise KeyboardInterrupt

    monkeypatch.setattr(run_records, "write_report", interrupt)
    runs_dir = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        run_training(config_for("full", tiny_model_dir, noise_beir, runs_dir))
    (folder,) = runs_dir.iterdir()
    assert read_run_record(folder).status == "finished" and not (folder / "report.md").exists()
    assert f"`embedtune train --resume {folder}`" in caplog.text
    monkeypatch.undo()

    assert main(["train", "--resume", str(folder)]) == 0
    assert "its report was missing and is now written" in capsys.readouterr().out
    assert (folder / "report.md").is_file() and read_run_record(folder).status == "finished"
    assert main(["train", "--resume", str(folder)]) == 2  # now complete: nothing left to resume
    assert "already finished" in capsys.readouterr().err


def test_a_live_run_cannot_be_resumed(tiny_model_dir, noise_beir, tmp_path):
    folder = run_training(config_for("full", tiny_model_dir, noise_beir, tmp_path / "runs")).folder
    record = json.loads((folder / "run.json").read_text())
    record.update(status="running", finished=None, pid=os.getpid())  # this very process: alive
    (folder / "run.json").write_text(json.dumps(record))
    with pytest.raises(RunStoreError, match="is still running"):
        check_resumable(folder)


def test_last_checkpoint_skips_checkpoints_whose_save_did_not_finish(tmp_path):
    for step, complete in ((3, True), (6, True), (9, False)):
        checkpoint = tmp_path / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        if complete:
            (checkpoint / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-6"
    assert last_checkpoint(tmp_path / "elsewhere") is None


def child_env() -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    import time

    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training exited with {process.returncode} before the checkpoint appeared")
        if time.time() > deadline:
            raise AssertionError("no checkpoint within the timeout")
        time.sleep(0.05)
