"""train.interpolation (WiSE-FT) in a run: the share chosen on dev, what model/ holds, what the records say."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.config import ConfigError
from embedtune.data.prepare import prepare_data
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.training.interpolation import interpolate_on_dev
from embedtune.training.pipeline import run_training
from tests.models.test_interpolation import perturbed_copy
from tests.training.test_pipeline import tiny_config


def load(path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu")


def test_a_fixed_share_ships_the_interpolated_checkpoint(tiny_model_dir, noise_beir, tmp_path):
    settings = ("train.epochs=10", "train.selection_alpha=none")
    plain = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "a", *settings))
    mixed = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "b", *settings, "train.interpolation=0.9"))

    assert plain.metrics.selection.chosen == mixed.metrics.selection.chosen == "fine_tuned"
    assert plain.metrics.loss_history == mixed.metrics.loss_history  # same training, only the shipped model differs
    base = load(tiny_model_dir).state_dict()
    checkpoint = load(plain.folder / "model").state_dict()
    shipped = load(mixed.folder / "model").state_dict()
    for name, tensor in shipped.items():
        if torch.is_floating_point(tensor):
            torch.testing.assert_close(tensor, 0.1 * base[name] + 0.9 * checkpoint[name], rtol=1e-5, atol=1e-6)
    record = mixed.metrics.to_dict()["selection"]["interpolation"]
    assert record == {"setting": "0.9", "alpha": 0.9, "grid": []}
    assert "WiSE-FT α = 0.9" in mixed.metrics.selection.verdict
    assert plain.metrics.to_dict()["selection"]["interpolation"] is None


def test_auto_picks_the_best_share_on_dev_and_reports_that_model(tiny_model_dir, noise_beir, tmp_path):
    config = tiny_config(
        tiny_model_dir,
        noise_beir,
        tmp_path / "runs",
        "train.epochs=20",
        "train.interpolation=auto",
        "train.interpolation_grid=0.1,0.5,1",
    )
    result = run_training(config)

    metrics = result.metrics.to_dict()
    record = metrics["selection"]["interpolation"]
    assert [entry["alpha"] for entry in record["grid"]] == [0.1, 0.5, 1.0]
    best = max(record["grid"], key=lambda entry: (entry["ndcg@10"], -entry["alpha"]))
    assert record["alpha"] == best["alpha"] and record["setting"] == "auto"
    assert metrics["selection"]["chosen"] == "fine_tuned"
    assert metrics["selection"]["best_dev"] == pytest.approx(best["ndcg@10"])  # the confirmed candidate is that share
    data = prepare_data(config.data)
    test = data.report
    evaluator = RetrievalEvaluator(test.corpus, test.queries, test.qrels, metrics=["ndcg@10"], progress=False)
    assert evaluator(load(result.folder / "model"))["ndcg@10"] == pytest.approx(
        metrics["report"]["fine_tuned"]["ndcg@10"]
    )
    assert json.loads((result.folder / "metrics.json").read_text())["selection"]["interpolation"] == record


def test_auto_breaks_ties_towards_the_base(tiny_model_dir, tiny_beir):
    config = tiny_config(tiny_model_dir, tiny_beir, tiny_beir / "runs", "train.interpolation=auto")
    data = prepare_data(config.data)
    base = load(tiny_model_dir)

    same = interpolate_on_dev(config, data.dev, base, load(tiny_model_dir))
    assert same.record["alpha"] == 0.25  # every share scores alike: the one closest to the base wins
    assert len({entry["ndcg@10"] for entry in same.record["grid"]}) == 1

    moved = interpolate_on_dev(config, data.dev, base, perturbed_copy(tiny_model_dir, seed=3))
    best = max(moved.record["grid"], key=lambda entry: (entry["ndcg@10"], -entry["alpha"]))
    assert moved.record["alpha"] == best["alpha"]
    assert np.allclose(
        moved.model.encode(["apple"]),
        (perturbed_copy(tiny_model_dir, seed=3) if best["alpha"] == 1 else moved.model).encode(["apple"]),
    )


def test_without_interpolation_the_checkpoint_competes_unchanged(tiny_model_dir, tiny_beir):
    config = tiny_config(tiny_model_dir, tiny_beir, tiny_beir / "runs")
    tuned = load(tiny_model_dir)
    candidate = interpolate_on_dev(config, prepare_data(config.data).dev, load(tiny_model_dir), tuned)
    assert candidate.model is tuned and candidate.record is None


def test_head_mode_refuses_interpolation(tiny_model_dir, tiny_beir, tmp_path):
    with pytest.raises(ConfigError, match="train.interpolation: interpolates the encoder's weights, which never"):
        tiny_config(tiny_model_dir, tiny_beir, tmp_path, "train.mode=head", "train.interpolation=auto")
