"""train.report_to: runs log to a real local MLflow tracking store (SQLite), TensorBoard stays optional."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from embedtune.cli import main
from embedtune.config import ConfigError, build_config
from embedtune.training import mlflow_report
from embedtune.training.pipeline import RunFailedError, run_training
from embedtune.training.trainer_setup import extra_callbacks
from tests.training.test_pipeline import tiny_config
from tests.training.test_resume import CrashAt

STEPS = ("train.max_steps=6", "train.batch_size=4", "train.eval_strategy=steps", "train.eval_steps=2")
DEV_METRIC = "eval_dev_ndcg_10"  # eval_dev_ndcg@10, with '@' replaced as MLflow requires


def only_run(uri: str, experiment: str):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    (run,) = client.search_runs([found.experiment_id])
    return client, run


def event_files(folder: Path) -> list[Path]:
    return list((folder / "tensorboard").glob("events.out.tfevents.*")) if (folder / "tensorboard").exists() else []


def test_a_run_logs_its_settings_and_every_dev_evaluation_to_a_local_mlflow_store(tiny_model_dir, tiny_beir, tmp_path):
    runs = tmp_path / "runs"
    config = tiny_config(tiny_model_dir, tiny_beir, runs, *STEPS, "train.report_to=tensorboard,mlflow")

    result = run_training(config)

    client, run = only_run(f"sqlite:///{runs / 'mlflow.db'}", "embedtune")
    assert run.info.run_name == result.folder.name and run.info.status == "FINISHED"
    assert run.data.tags["embedtune.run_folder"] == str(result.folder.resolve())
    assert run.data.params["embedtune.train.learning_rate"] == "0.003"
    assert run.data.params["embedtune.model.name_or_path"] == str(tiny_model_dir)
    assert float(run.data.params["learning_rate"]) == 3e-3  # the trainer's own arguments, logged by transformers
    history = client.get_metric_history(run.info.run_id, DEV_METRIC)
    dev = result.metrics.dev_history
    assert [point.step for point in history] == [entry["step"] for entry in dev]
    assert [point.value for point in history] == pytest.approx([entry["ndcg@10"] for entry in dev], abs=1e-6)
    assert client.get_metric_history(run.info.run_id, "loss")
    stored = json.loads((result.folder / mlflow_report.RUN_ID_FILE).read_text())
    assert stored["run_id"] == run.info.run_id
    assert event_files(result.folder)


def test_mlflow_alone_writes_no_tensorboard_and_a_study_names_the_experiment(tiny_model_dir, tiny_beir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    settings = ("train.report_to=mlflow", f"train.mlflow_tracking_uri={uri}", "study=lr-search")
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *STEPS, *settings)

    result = run_training(config)

    _, run = only_run(uri, "lr-search")
    assert run.data.tags["embedtune.study"] == "lr-search" and run.info.run_name == result.folder.name
    assert not event_files(result.folder) and not (tmp_path / "runs" / "mlflow.db").exists()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow sets it; the next run's default must not change


def test_a_resumed_run_goes_on_logging_to_the_same_mlflow_run(tiny_model_dir, tiny_beir, tmp_path):
    runs = tmp_path / "runs"
    config = tiny_config(tiny_model_dir, tiny_beir, runs, *STEPS, "train.report_to=mlflow")
    with extra_callbacks(CrashAt(3)), pytest.raises(RunFailedError):
        run_training(config)
    (folder,) = [path for path in runs.iterdir() if path.is_dir()]

    result = run_training(config, resume=folder)

    client, run = only_run(f"sqlite:///{runs / 'mlflow.db'}", "embedtune")
    steps = [point.step for point in client.get_metric_history(run.info.run_id, DEV_METRIC)]
    assert steps == [entry["step"] for entry in result.metrics.dev_history] and max(steps) == 6
    assert run.info.status == "FINISHED"


def test_report_to_names_only_known_targets_once():
    with pytest.raises(ConfigError, match="^train.report_to: unknown wandb; choose from tensorboard, mlflow"):
        build_config(overrides=["data.path=/tmp/d", "train.report_to=tensorboard,wandb"])
    with pytest.raises(ConfigError, match="^train.report_to: names a target twice"):
        build_config(overrides=["data.path=/tmp/d", "train.report_to=mlflow,mlflow"])
    assert build_config(overrides=["data.path=/tmp/d"]).train.report_to == ["tensorboard"]


def test_mlflow_missing_is_one_clear_error_before_any_run_folder(
    tiny_model_dir, tiny_beir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(mlflow_report.importlib.util, "find_spec", lambda name, *args: None)
    runs = tmp_path / "runs"
    args = ["train", "--data", str(tiny_beir), "--model", str(tiny_model_dir), "--set", f"runs_dir={runs}"]

    code = main([*args, "--set", "train.report_to=mlflow"])

    assert code == 2 and not runs.exists()
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: train.report_to: mlflow needs MLflow: pip install 'embedtune[mlflow]' (or mlflow-skinny)"
    ]
