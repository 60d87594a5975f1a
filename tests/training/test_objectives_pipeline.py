"""End-to-end runs with each objective on the tiny model, and objectives that do not fit the data refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune import runs
from embedtune.config import ConfigError
from embedtune.training import pipeline
from embedtune.training.pipeline import run_training
from tests.conftest import FRUITS, VEHICLES
from tests.training.test_pipeline import scalar_tags, tiny_config

QUICK = ("train.max_steps=2", "train.batch_size=4")


def write_pairs_file(path: Path) -> Path:
    """Labelled pairs over the tiny vocabulary: per item a relevant passage (1 or 0.8) and an irrelevant one."""
    records = []
    for index, item in enumerate(FRUITS + VEHICLES):
        other = VEHICLES[index % len(VEHICLES)] if item in FRUITS else FRUITS[index % len(FRUITS)]
        records.append({"text1": f"what color is the {item}", "text2": f"the {item} is red", "label": 1})
        records.append({"text1": f"what color is the {item}", "text2": f"the {other} is fast", "label": 0.1})
        records.append({"text1": f"which {item} is sweet", "text2": f"the sweet {item}", "label": 0.8})
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def write_records_file(path: Path) -> Path:
    """(query, positive, weighted negatives) records whose texts all differ, so batches fill up.

    The trainer's batch sampler keeps rows that share a text out of one batch; with one negative common to every
    record each batch would hold a single row, and in-batch negatives, the symmetric term and isotropy would be void.
    """
    rows = [
        {
            "query": f"what color is the {fruit}",
            "pos": [f"the {fruit} is sweet fruit"],
            "neg": [f"the {fruit} tree", f"{fruit} juice on the road"],
            "neg_weights": [1.0 + index / 4, 0.5],
        }
        for index, fruit in enumerate(FRUITS)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def finished(result) -> dict:
    folder = result.folder
    assert runs.load_run(folder).status == "finished"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["loss_history"] and all("loss" in entry for entry in metrics["loss_history"])
    assert (folder / "model").is_dir()
    return metrics


@pytest.mark.parametrize("name", ["cosent", "cosine_mse"])
def test_a_pair_objective_trains_on_labelled_pairs(tiny_model_dir, tiny_beir, tmp_path, name):
    pairs = write_pairs_file(tmp_path / "pairs.jsonl")
    config = tiny_config(
        tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.train_file={pairs}", f"loss.name={name}", *QUICK
    )
    metrics = finished(run_training(config))
    assert metrics["splits"]["train_pairs"] > 0
    assert runs.load_run(next((tmp_path / "runs").iterdir())).record.config["loss"]["name"] == name


def test_mnrl_trains_on_records(tiny_model_dir, tiny_beir, tmp_path):
    train_file = write_records_file(tmp_path / "train.jsonl")
    config = tiny_config(
        tiny_model_dir,
        tiny_beir,
        tmp_path / "runs",
        f"data.train_file={train_file}",
        "loss.name=mnrl",
        "loss.directions=query_to_doc,doc_to_query",
        *QUICK,
    )
    metrics = finished(run_training(config))
    assert not any(key.startswith("loss/") for entry in metrics["loss_history"] for key in entry)  # ST's own loss


def test_infonce_with_every_option_logs_its_components(tiny_model_dir, tiny_beir, tmp_path):
    train_file = write_records_file(tmp_path / "train.jsonl")
    config = tiny_config(
        tiny_model_dir,
        tiny_beir,
        tmp_path / "runs",
        f"data.train_file={train_file}",
        "loss.name=infonce",
        "loss.matryoshka=true",
        "loss.matryoshka_dims=16,8",
        "loss.guide=true",
        "loss.guide_margin=0.01",
        "loss.isotropy_weight=0.1",
        "loss.mini_batch_size=2",
        *QUICK,
    )
    result = run_training(config)
    metrics = finished(result)

    expected = {
        "infonce_query_to_doc",
        "infonce_doc_to_query",
        "masked_candidates",
        "masked_by_guide",
        "alignment",
        "uniformity",
        "embedding_std",
    }
    assert {f"loss_components/{name}" for name in expected} <= scalar_tags(result.folder)
    for entry in metrics["loss_history"]:
        logged = {key.removeprefix("loss/") for key in entry if key.startswith("loss/")}
        assert expected <= logged, entry  # isotropy is measured on batches of two rows or more only


def test_a_pair_objective_with_record_data_is_refused_before_any_run_folder(tiny_beir, tmp_path, monkeypatch):
    def fail_if_called(*args, **kwargs):
        raise AssertionError("a model was loaded before the objective was checked against the data")

    monkeypatch.setattr(pipeline, "load_base_model", fail_if_called)
    for name in ("cosent", "cosine_mse"):
        with pytest.raises(ConfigError) as error:
            run_training(tiny_config(Path("unused-model"), tiny_beir, tmp_path / "runs", f"loss.name={name}"))
        assert str(error.value).startswith("loss.name: ") and "labelled pairs" in str(error.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["infonce", "mnrl"])
def test_a_record_objective_trains_on_labelled_pairs_grouped_by_text1(tiny_model_dir, tiny_beir, tmp_path, name):
    pairs = write_pairs_file(tmp_path / "pairs.jsonl")
    config = tiny_config(
        tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.train_file={pairs}", f"loss.name={name}", *QUICK
    )
    metrics = finished(run_training(config))

    held_out = metrics["splits"]["dev_queries"] + metrics["splits"]["test_queries"]
    assert "train_pairs" in metrics["splits"]
    # two text1 per item, each with a relevant pair: one (query, positives, negatives) row per training text1
    assert metrics["splits"]["train_examples"] == 2 * len(FRUITS + VEHICLES) - held_out
    assert metrics["pair_diagnostics"] is not None


def write_scored_file(path: Path, scores: bool = True) -> Path:
    """Records with teacher scores for the positive and both negatives (or without any, for ``scores=False``)."""
    rows = []
    for index, fruit in enumerate(FRUITS):
        row = {
            "query": f"what color is the {fruit}",
            "pos": [f"the {fruit} is sweet fruit"],
            "neg": [f"the {fruit} tree", f"{fruit} juice on the road"],
        }
        if scores:
            row |= {"pos_scores": [0.9 - index / 100], "neg_scores": [0.6, 0.1]}
        rows.append(row)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("mode", ["full", "head"])
@pytest.mark.parametrize("name", ["margin_mse", "distill_kl"])
def test_distillation_trains_on_teacher_scores(tiny_model_dir, tiny_beir, tmp_path, name, mode):
    train_file = write_scored_file(tmp_path / "train.jsonl")
    settings = (f"data.train_file={train_file}", f"loss.name={name}", f"train.mode={mode}", *QUICK)
    metrics = finished(run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *settings)))
    assert metrics["num_train_examples"] == metrics["splits"]["train_examples"] > 0
    assert all(entry["loss"] > 0 for entry in metrics["loss_history"])


def test_distillation_without_teacher_scores_is_refused_before_any_run_folder(tiny_beir, tmp_path, monkeypatch):
    def fail_if_called(*args, **kwargs):
        raise AssertionError("a model was loaded before the teacher scores were checked")

    monkeypatch.setattr(pipeline, "load_base_model", fail_if_called)
    unscored = write_scored_file(tmp_path / "train.jsonl", scores=False)
    cases = {"the record of query 'what color is the ": (f"data.train_file={unscored}",), "no training record has": ()}
    for problem, data in cases.items():
        with pytest.raises(ConfigError) as error:
            run_training(tiny_config(Path("unused"), tiny_beir, tmp_path / "runs", "loss.name=margin_mse", *data))
        message = str(error.value)
        assert message.startswith(f"loss.name: margin_mse trains on teacher scores, but {problem}")
        assert "embedtune mine --teacher MODEL" in message
    assert not (tmp_path / "runs").exists()


def test_distillation_drops_records_without_a_hard_negative(tiny_model_dir, tiny_beir, tmp_path, caplog):
    train_file = write_scored_file(tmp_path / "train.jsonl")
    lines = train_file.read_text().splitlines()
    bare = {"query": "which fruit is sweet", "pos": ["the sweet fruit"], "pos_scores": [0.9]}
    train_file.write_text("\n".join([*lines, json.dumps(bare)]) + "\n")
    config = tiny_config(
        tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.train_file={train_file}", "loss.name=margin_mse", *QUICK
    )
    metrics = finished(run_training(config))
    assert "margin_mse: dropped 1 training records without a hard negative" in caplog.text
    assert metrics["num_train_examples"] == metrics["splits"]["train_examples"]


def test_an_anchored_run_logs_the_encoders_drift(tiny_model_dir, tiny_beir, tmp_path):
    settings = ("loss.anchor_weight=0.5", "train.logging_steps=1", "train.max_steps=4", "train.batch_size=4")
    result = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *settings))
    metrics = finished(result)
    drift = [entry["loss/anchor_drift"] for entry in metrics["loss_history"]]
    assert drift[0] == 0.0 and drift[-1] > 0  # logged before each step: the first step starts at the base weights
    assert all("loss/anchor_penalty" in entry for entry in metrics["loss_history"])
    assert {"loss_components/anchor_drift", "loss_components/anchor_penalty"} <= scalar_tags(result.folder)
