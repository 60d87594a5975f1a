"""Adding an objective is this one module: a loss, its builder and one registry entry; nothing else changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embedtune.config import ConfigError, LossConfig
from embedtune.losses import registry
from embedtune.losses.registry import Objective
from embedtune.training.pipeline import run_training
from tests.training.test_pipeline import tiny_config

CALLS: list[int] = []


class AlignmentLoss(nn.Module):
    """Mean ``1 - cos(query, positive)`` at ``scale``; counts its calls in :data:`CALLS`."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, features: list[dict[str, torch.Tensor]], labels: torch.Tensor | None) -> torch.Tensor:
        queries, positives = (self.model(feature)["sentence_embedding"] for feature in features[:2])  # (batch, dim)
        CALLS.append(len(queries))
        return self.scale * (1 - torch.cosine_similarity(queries, positives)).mean()


def alignment(model, config, context) -> nn.Module:
    return AlignmentLoss(model, config.scale)


@pytest.fixture
def registered():
    registry.register("alignment", Objective(f"{__name__}:alignment", ("scale",), "test: pull positives closer"))
    CALLS.clear()
    yield
    del registry.OBJECTIVES["alignment"]


def test_a_registered_objective_is_configurable_and_declares_what_it_reads(registered):
    assert "alignment" in registry.names() and "'alignment' (test: pull positives closer)" in registry.describe()
    assert LossConfig(name="alignment", scale=5.0).scale == 5.0
    with pytest.raises(ConfigError, match="loss.symmetric: not used by loss.name alignment"):
        LossConfig(name="alignment", symmetric=False)


def test_a_registered_objective_trains_a_model_end_to_end(registered, tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "loss.name=alignment", "train.max_steps=2")
    result = run_training(config)
    assert len(CALLS) == 2 and all(size > 0 for size in CALLS)
    assert len(result.metrics.loss_history) == 2 and (result.folder / "model").is_dir()


def test_a_taken_name_or_an_unknown_data_kind_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("infonce", registry.OBJECTIVES["infonce"])
    with pytest.raises(ValueError, match="data must be one of"):
        registry.register("other", Objective("x:y", (), "bad", data="triples"))
    assert "other" not in registry.OBJECTIVES
