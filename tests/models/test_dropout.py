"""train.dropout: every dropout of the encoder set on its modules, LoRA's own and the saved config.json left alone."""

from __future__ import annotations

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer
from torch import nn

from embedtune.config import build_config
from embedtune.models.dropout import set_dropout
from embedtune.training.mode import prepare_model_for_mode

TEXTS = ["what color is the apple", "the bus on the road", "sweet mango juice"]


def load(path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu")


def training_forward(model: SentenceTransformer, seed: int) -> torch.Tensor:
    model.train()
    torch.manual_seed(seed)
    features = model.preprocess(TEXTS)
    return model(features)["sentence_embedding"].detach()  # (texts, dim)


def dropout_probabilities(model: nn.Module) -> dict[str, float]:
    return {name: module.p for name, module in model.named_modules() if isinstance(module, nn.Dropout)}


def test_zero_dropout_makes_training_forward_passes_deterministic(tiny_model_dir):
    model = load(tiny_model_dir)
    assert not torch.equal(training_forward(model, 0), training_forward(model, 1)), "the tiny model has dropout"

    changed = set_dropout(model, 0.0)

    assert changed == len(dropout_probabilities(model)) > 0
    assert set(dropout_probabilities(model).values()) == {0.0}
    assert torch.equal(training_forward(model, 0), training_forward(model, 1))
    model.eval()
    untouched = load(tiny_model_dir).encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(model.encode(TEXTS, convert_to_tensor=True), untouched)  # dropout is off in eval anyway


def test_attention_dropout_attributes_are_set_too():
    class DecoderStyleAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention_dropout = 0.1  # a float handed to the attention kernel, as in Llama or Qwen
            self.out = nn.Dropout(0.1)

    class Other(nn.Module):
        attention_dropout = None  # not a float: left alone

    model = nn.Sequential(DecoderStyleAttention(), Other())
    assert set_dropout(model, 0.25) == 2
    assert model[0].attention_dropout == 0.25 and model[0].out.p == 0.25 and model[1].attention_dropout is None


@pytest.mark.parametrize("probability", [-0.1, 1.0])
def test_a_probability_outside_zero_to_one_is_refused(tiny_model_dir, probability):
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        set_dropout(load(tiny_model_dir), probability)


def test_the_saved_config_keeps_the_models_own_dropout(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    set_dropout(model, 0.0)
    model.save(str(tmp_path / "saved"))

    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["attention_probs_dropout_prob"] == config["hidden_dropout_prob"] == 0.1
    assert set(dropout_probabilities(load(tmp_path / "saved")).values()) == {0.1}


def config_with(tmp_path, *overrides: str):
    return build_config(overrides=[f"data.path={tmp_path / 'data'}", f"runs_dir={tmp_path / 'runs'}", *overrides])


def test_a_lora_run_sets_the_encoders_dropout_and_keeps_lora_dropout(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    prepare_model_for_mode(model, config_with(tmp_path, "train.mode=lora", "train.dropout=0", "lora.dropout=0.2"))

    probabilities = dropout_probabilities(model)
    lora = {name: p for name, p in probabilities.items() if "lora_dropout" in name}
    encoder = {name: p for name, p in probabilities.items() if "lora_dropout" not in name}
    assert lora and set(lora.values()) == {0.2}
    assert encoder and set(encoder.values()) == {0.0}


def test_a_full_run_trains_without_dropout_by_default(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    prepare_model_for_mode(model, config_with(tmp_path))
    assert set(dropout_probabilities(model).values()) == {0.0}


def test_dropout_none_keeps_the_models_own(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    prepare_model_for_mode(model, config_with(tmp_path, "train.dropout=none"))
    assert set(dropout_probabilities(model).values()) == {0.1}
