"""L2-SP (loss.anchor_weight): the penalty, its gradient, what is anchored, the drift logged, the config checks."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense

from embedtune.config import ConfigError, LoraConfig, LossConfig, build_config
from embedtune.losses import build_loss
from embedtune.losses.anchor import L2SPLoss
from embedtune.losses.info_nce import InfoNCELoss
from embedtune.models.lora import add_lora
from tests.losses.test_objectives import TEXTS


def fresh(tiny_model_dir) -> SentenceTransformer:
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def batch(model):
    labels = torch.tensor([[float(row), 1.0] for row in range(len(TEXTS[0]))])
    return [model.tokenize(texts) for texts in TEXTS], labels


def test_at_the_start_the_anchor_adds_nothing_then_grows_with_the_distance(tiny_model_dir):
    model = fresh(tiny_model_dir)
    plain = InfoNCELoss(model)
    anchored = L2SPLoss(model, plain, anchor_weight=0.5)
    features, labels = batch(model)
    assert anchored(features, labels).item() == pytest.approx(plain(features, labels).item(), abs=1e-6)
    assert anchored.components.pop_means()["anchor_drift"] == 0.0

    moved = next(model[0].parameters())
    with torch.no_grad():
        moved.add_(0.1)
    expected = 0.5 * 0.01 * moved.numel()
    assert anchored.squared_drift().item() == pytest.approx(0.01 * moved.numel(), rel=1e-4)
    assert (anchored(features, labels) - plain(features, labels)).item() == pytest.approx(expected, rel=1e-4)
    means = anchored.components.pop_means()
    assert means["anchor_drift"] == pytest.approx((0.01 * moved.numel()) ** 0.5, rel=1e-4)
    assert "infonce_query_to_doc" in means  # one accumulator with the objective's own parts


def test_the_gradient_pulls_each_weight_back_towards_its_start(tiny_model_dir):
    model = fresh(tiny_model_dir)
    weight = next(model[0].parameters())
    start = weight.detach().clone()
    anchored = L2SPLoss(model, lambda features, labels: torch.zeros(()), anchor_weight=2.0)
    with torch.no_grad():
        weight.add_(torch.randn_like(weight) * 0.1)
    anchored(None, None).backward()
    torch.testing.assert_close(weight.grad, 2.0 * 2 * (weight.detach() - start))


def test_only_the_weights_that_train_in_the_encoder_are_anchored(tiny_model_dir):
    model = fresh(tiny_model_dir)
    dim = model.get_embedding_dimension()
    model.append(Dense(dim, 8, activation_function=torch.nn.Identity()))
    full = L2SPLoss(model, InfoNCELoss(model), 1.0)
    assert {id(p) for p in full._anchored} == {id(p) for p in model[0].parameters()}  # no head weight

    adapted = fresh(tiny_model_dir)
    add_lora(adapted, LoraConfig(rank=2))
    lora = L2SPLoss(adapted, InfoNCELoss(adapted), 1.0)
    names = {id(p): name for name, p in adapted[0].named_parameters()}
    assert lora._anchored and all("lora_" in names[id(p)] for p in lora._anchored)

    frozen = fresh(tiny_model_dir)
    frozen[0].requires_grad_(False)
    with pytest.raises(ValueError, match="encoder is frozen"):
        L2SPLoss(frozen, InfoNCELoss(frozen), 1.0)
    with pytest.raises(ValueError, match="anchor_weight must be > 0"):
        L2SPLoss(model, InfoNCELoss(model), 0.0)


@pytest.mark.parametrize("name", ["infonce", "mnrl"])
def test_build_loss_wraps_any_objective_outside_matryoshka(tiny_model_dir, name):
    model = fresh(tiny_model_dir)
    assert not isinstance(build_loss(model, LossConfig(name=name)), L2SPLoss)
    wrapped = build_loss(model, LossConfig(name=name, anchor_weight=0.1, matryoshka=True, matryoshka_dims=[16]))
    assert isinstance(wrapped, L2SPLoss) and type(wrapped.loss).__name__ == "MatryoshkaLoss"
    features, labels = batch(model)
    assert torch.isfinite(wrapped(features, labels))


def test_anchor_weight_is_checked(tiny_beir):
    with pytest.raises(ConfigError, match="loss.anchor_weight: must be >= 0"):
        build_config(overrides=[f"data.path={tiny_beir}", "loss.anchor_weight=-1"])
    with pytest.raises(ConfigError, match="loss.anchor_weight: anchors the encoder's weights, which never train"):
        build_config(overrides=[f"data.path={tiny_beir}", "loss.anchor_weight=0.1", "train.mode=head"])
