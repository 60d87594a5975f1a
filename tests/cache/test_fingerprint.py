from __future__ import annotations

import re

import pytest
import torch
from sentence_transformers import SentenceTransformer, models

from embedtune.cache import fingerprint as fingerprint_module
from embedtune.cache import fingerprint_settings, forget_fingerprint, model_fingerprint
from embedtune.models.prompts import set_prompts


def test_fingerprint_is_stable_across_loads(model, tiny_model_dir):
    value = model_fingerprint(model)
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert model_fingerprint(SentenceTransformer(str(tiny_model_dir), device="cpu")) == value


def test_encoding_does_not_change_the_fingerprint(model):
    """The fast tokenizer's truncation and padding state, set by the first encode, is not part of it."""
    before = model_fingerprint(model)
    model.encode_document(["the apple is red"])
    model.encode_query(["what color"])
    assert model_fingerprint(model) == before == model_fingerprint(model, refresh=True)


@pytest.mark.parametrize("how", ["in_place", "through_data", "replaced"])
def test_a_changed_weight_changes_the_fingerprint(model, how):
    before = model_fingerprint(model)
    parameter = next(model.parameters())
    with torch.no_grad():
        if how == "in_place":
            parameter.view(-1)[0].add_(1e-3)
        elif how == "through_data":  # does not bump the version counter; the word sum still sees it
            parameter.data.view(-1)[0] += 1e-3
        else:
            parameter.data = parameter.data.clone().view(-1).add_(1e-3).view(parameter.shape)
    assert model_fingerprint(model) != before


def test_a_fused_optimizer_step_changes_the_fingerprint(model):
    """Fused AdamW writes the weights without bumping their version counters: the probe must still notice."""
    before = model_fingerprint(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.01)
    optimizer.step()
    assert model_fingerprint(model) != before


@pytest.mark.parametrize(
    "change",
    [
        lambda m: set_prompts(m, query_prefix="query: "),
        lambda m: set_prompts(m, passage_prefix="passage: "),
        lambda m: setattr(m, "max_seq_length", 16),
        lambda m: setattr(m, "truncate_dim", 16),
        lambda m: m.append(models.Normalize()),
    ],
    ids=["query_prompt", "document_prompt", "max_seq_length", "truncate_dim", "normalize"],
)
def test_a_changed_encoding_setting_changes_the_fingerprint(model, change):
    before = model_fingerprint(model)
    change(model)
    assert model_fingerprint(model) != before


def test_autocast_changes_the_fingerprint(model):
    before = model_fingerprint(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model_fingerprint(model) != before
    assert model_fingerprint(model) == before


def test_settings_name_pooling_normalisation_and_dimension(model):
    settings = fingerprint_settings(model)
    assert settings["pooling"]["pooling_mode"] == "mean" and settings["normalize"] is False
    assert settings["dimension"] == 32 and settings["max_seq_length"] == 32 and settings["tokenizer"]
    assert [module["class"].rsplit(".", 1)[1] for module in settings["modules"]] == ["Transformer", "Pooling"]


def test_unchanged_weights_are_not_hashed_again(model, monkeypatch):
    hashed = []
    real = fingerprint_module._bytes
    monkeypatch.setattr(fingerprint_module, "_bytes", lambda tensor: hashed.append(1) or real(tensor))
    first = model_fingerprint(model)
    count = len(hashed)
    assert count == len(model.state_dict())
    assert model_fingerprint(model) == first and len(hashed) == count  # memoised
    set_prompts(model, query_prefix="q: ")
    assert model_fingerprint(model) != first and len(hashed) == count  # settings are read afresh, weights not
    forget_fingerprint(model)
    model_fingerprint(model)
    assert len(hashed) == 2 * count
    model_fingerprint(model, refresh=True)
    assert len(hashed) == 3 * count


def test_a_model_without_weights_cannot_be_fingerprinted():
    with pytest.raises(ValueError, match="without weight tensors"):
        model_fingerprint(torch.nn.Sequential())
