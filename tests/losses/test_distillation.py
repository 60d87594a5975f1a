"""Distillation objectives (margin_mse, distill_kl): scores on the student's scale, zero at the teacher, learning."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.config import ConfigError, LossConfig, build_config
from embedtune.losses import build_loss
from embedtune.losses.distillation import MarginMSE
from tests.losses.test_objectives import NEGATIVES, POSITIVES, QUERIES

DISTILLATION = ["margin_mse", "distill_kl"]


@pytest.fixture
def student(tiny_model_dir) -> SentenceTransformer:
    torch.manual_seed(0)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.eval()  # no dropout: the student's own scores are reproducible
    return model


def features(model: SentenceTransformer) -> list[dict[str, torch.Tensor]]:
    return [model.tokenize(texts) for texts in (QUERIES, POSITIVES, NEGATIVES)]


def own_cosines(model: SentenceTransformer) -> torch.Tensor:
    """``(batch, 2)``: the student's cosine of each query with its positive and its negative."""
    with torch.no_grad():
        query, *candidates = (model.encode(texts, convert_to_tensor=True) for texts in (QUERIES, POSITIVES, NEGATIVES))
    return torch.stack([torch.nn.functional.cosine_similarity(query, c) for c in candidates], dim=1)


@pytest.mark.parametrize("name", DISTILLATION)
def test_a_teacher_that_agrees_with_the_student_gives_zero_loss(student, name):
    loss = build_loss(student, LossConfig(name=name))
    agreeing = own_cosines(student)
    assert loss(features(student), agreeing).item() == pytest.approx(0.0, abs=1e-5)

    disagreeing = agreeing.flip(dims=[1])  # the teacher ranks each negative above its positive
    assert loss(features(student), disagreeing).item() > 1e-3


def test_teacher_scale_puts_logits_on_the_students_scale(student):
    """A cross-encoder's scores 20x the cosines, with teacher_scale 1, are the same target as cosines at 20."""
    cosines = own_cosines(student)
    as_logits = build_loss(student, LossConfig(name="margin_mse", teacher_scale=1.0))
    assert as_logits(features(student), cosines * 20).item() == pytest.approx(0.0, abs=1e-4)
    margins = MarginMSE(student, scale=20.0, teacher_scale=20.0)
    expected = ((20 * (cosines[:, 0] - cosines[:, 1]) - 20 * 0.5 * (cosines[:, 0] - cosines[:, 1])) ** 2).mean()
    assert margins(features(student), cosines * 0.5).item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("name", DISTILLATION)
def test_training_moves_the_student_towards_the_teacher(tiny_model_dir, name):
    torch.manual_seed(0)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    target = own_cosines(model).flip(dims=[1])
    loss = build_loss(model, LossConfig(name=name))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        value = loss(features(model), target)
        value.backward()
        optimiser.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0]


def test_teacher_scale_is_refused_by_objectives_without_a_teacher(tiny_beir):
    with pytest.raises(ConfigError, match="loss.teacher_scale: not used by loss.name infonce"):
        build_config(overrides=[f"data.path={tiny_beir}", "loss.teacher_scale=1"])
    with pytest.raises(ConfigError, match="loss.teacher_scale: must be a positive number"):
        build_config(overrides=[f"data.path={tiny_beir}", "loss.name=margin_mse", "loss.teacher_scale=0"])
