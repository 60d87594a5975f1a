"""WiSE-FT weight interpolation: plain encoders, LoRA adapters, added heads, bad input."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense

from embedtune.config import LoraConfig
from embedtune.models.interpolation import interpolate_weights
from embedtune.models.lora import add_lora, merge_lora
from tests.models.test_lora import TEXTS, encode, load, perturb_adapter


def perturbed_copy(model_dir, seed: int = 1) -> SentenceTransformer:
    """The model with every floating weight moved by seeded noise: a stand-in for a fine-tuned model."""
    model = load(model_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_interpolation_is_the_weighted_mean_and_leaves_both_models_alone(tiny_model_dir):
    base, tuned = load(tiny_model_dir), perturbed_copy(tiny_model_dir)
    base_before, tuned_before = weights(base), weights(tuned)

    half = interpolate_weights(base, tuned, 0.3)

    for name, tensor in half.state_dict().items():
        if torch.is_floating_point(tensor):
            torch.testing.assert_close(tensor, 0.7 * base_before[name] + 0.3 * tuned_before[name])
        else:
            assert torch.equal(tensor, tuned_before[name])
    for model, before in ((base, base_before), (tuned, tuned_before)):
        assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())
    assert half is not tuned


def test_the_ends_of_the_segment_encode_like_base_and_fine_tuned(tiny_model_dir):
    base, tuned = load(tiny_model_dir), perturbed_copy(tiny_model_dir)
    assert not torch.allclose(encode(base), encode(tuned), atol=1e-3)

    torch.testing.assert_close(encode(interpolate_weights(base, tuned, 0.0)), encode(base))
    torch.testing.assert_close(encode(interpolate_weights(base, tuned, 1.0)), encode(tuned))


def test_lora_adapter_is_scaled_so_the_merged_model_is_the_interpolation(tiny_model_dir):
    base = load(tiny_model_dir)
    adapted = load(tiny_model_dir)
    add_lora(adapted, LoraConfig(rank=4))
    perturb_adapter(adapted)

    scaled = interpolate_weights(base, adapted, 0.4)
    merged_full = weights(merge_lora(adapted))
    merged_scaled = weights(merge_lora(scaled))

    changed = 0
    for name, tensor in merged_scaled.items():
        if torch.is_floating_point(tensor):
            expected = 0.6 * base.state_dict()[name] + 0.4 * merged_full[name]
            torch.testing.assert_close(tensor, expected, rtol=1e-5, atol=1e-6)
            changed += not torch.equal(merged_full[name], base.state_dict()[name])
    assert changed > 0  # the adapter did move some weights


def test_an_added_head_is_kept_as_trained(tiny_model_dir):
    base, tuned = load(tiny_model_dir), perturbed_copy(tiny_model_dir)
    dim = tuned.get_embedding_dimension()
    tuned.append(Dense(dim, 8, activation_function=torch.nn.Identity()))
    head = weights(tuned[-1])

    mixed = interpolate_weights(base, tuned, 0.5)

    assert all(torch.equal(tensor, head[name]) for name, tensor in mixed[-1].state_dict().items())
    assert mixed.encode(TEXTS).shape == (len(TEXTS), 8)
    encoder = mixed[0].state_dict()
    expected = {n: 0.5 * t + 0.5 * tuned[0].state_dict()[n] for n, t in base[0].state_dict().items()}
    assert all(torch.allclose(encoder[n], expected[n]) for n in expected if torch.is_floating_point(expected[n]))


def test_bad_share_and_unrelated_models_are_refused(tiny_model_dir):
    base, tuned = load(tiny_model_dir), perturbed_copy(tiny_model_dir)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha must be in"):
            interpolate_weights(base, tuned, alpha)
    with pytest.raises(ValueError, match="do not share an architecture"):
        interpolate_weights(torch.nn.Linear(3, 3), tuned, 0.5)
