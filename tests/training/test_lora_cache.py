"""What competes as the base is the untouched base model, scored through the embedding cache, in every mode."""

from __future__ import annotations

import hashlib

import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.cache.fingerprint import model_fingerprint
from embedtune.cli import main
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.models.loading import load_base_model
from embedtune.models.lora import has_lora
from embedtune.training import selection
from embedtune.training.mode import prepare_model_for_mode
from embedtune.training.modes import BaseAtStepZero, base_view, dev_evaluator_for_mode
from embedtune.training.pipeline import run_training
from tests.models.test_lora import encode
from tests.training.test_pipeline import tiny_config

LORA = ("train.mode=lora", "lora.rank=4", "train.learning_rate=1e-2")
POOL = ("data.dev_max_corpus=6",)  # dev ranks a pool chosen with the base model, as on a real corpus
MOVES = ("train.warmup_ratio=0",)  # step 1 already trains, so no checkpoint equals the base model


def weights(model: torch.nn.Module) -> str:
    """A digest of a model's weights (names and bytes): the same for equal models, whatever the autocast."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture
def encoded(monkeypatch) -> list[tuple[str, str, int]]:
    """Every encoding that reaches a model: (weights digest, role, texts), through the cache or not."""
    calls: list[tuple[str, str, int]] = []
    for role, method in (("query", "encode_query"), ("document", "encode_document")):
        original = getattr(SentenceTransformer, method)

        def spy(self, texts, *args, _original=original, _role=role, **kwargs):
            calls.append((weights(self), _role, len(texts)))
            return _original(self, texts, *args, **kwargs)

        monkeypatch.setattr(SentenceTransformer, method, spy)
    return calls


def test_the_base_view_of_a_lora_model_is_the_base_model_with_its_fingerprint(tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *LORA)
    model = load_base_model(config, "cpu")
    setup = prepare_model_for_mode(model, config)
    view = base_view(model, setup)

    plain = load_base_model(config, "cpu")
    assert has_lora(model) and not has_lora(view)
    assert model_fingerprint(view) == model_fingerprint(plain) != model_fingerprint(model)
    assert torch.equal(encode(view), encode(model))  # the adapter starts at zero: the same embeddings
    evaluated: list[tuple[bool, object]] = []  # (the model has LoRA, the evaluator's cache) per evaluation

    class Recording(RetrievalEvaluator):
        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            evaluated.append((has_lora(model), self.cache))
            return {}

    cache = object()
    wrapper = dev_evaluator_for_mode(Recording({}, {}, {}), setup, cache)
    wrapper(model, steps=0)
    wrapper(model, steps=5)
    assert isinstance(wrapper, BaseAtStepZero) and evaluated == [(False, cache), (True, None)]
    assert view.device == model.device


@pytest.mark.parametrize("mode", [(), LORA], ids=["full", "lora"])
def test_a_run_after_another_run_encodes_nothing_for_its_base(tiny_model_dir, tiny_beir, tmp_path, encoded, mode):
    first = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *POOL, "train.learning_rate=1e-2")
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *POOL, *MOVES, *mode)
    base = weights(load_base_model(config, "cpu"))
    untrained = load_base_model(config, "cpu")
    prepare_model_for_mode(untrained, config)  # seeded: the model the run starts from
    untrained = weights(untrained)
    run_training(first)  # any earlier run of the same base model fills the cache with its embeddings
    assert any(digest == base for digest, _, _ in encoded)
    encoded.clear()
    run_training(config)

    assert encoded  # the trained checkpoints are encoded
    assert not [call for call in encoded if call[0] in (base, untrained)]  # neither the base nor it in disguise


def test_a_lora_run_confirms_the_merged_model_it_ships_and_reuses_its_embeddings(
    tiny_model_dir, noise_beir, tmp_path, monkeypatch, encoded
):
    overrides = ("train.epochs=5", "train.learning_rate=2e-1", "lora.rank=8", "train.selection_alpha=none")
    config = tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", *LORA, *overrides)
    confirmed: list[str] = []  # fingerprint of each model confirmed against the base
    confirm_on_dev = selection.confirm_on_dev

    def recording(dev, base, tuned, *args, **kwargs):
        confirmed.append(model_fingerprint(tuned))
        try:
            return confirm_on_dev(dev, base, tuned, *args, **kwargs)
        finally:
            encoded.clear()

    monkeypatch.setattr(selection, "confirm_on_dev", recording)
    result = run_training(config)

    assert result.metrics.selection.chosen == "fine_tuned"
    shipped = SentenceTransformer(str(result.folder / "model"), device="cpu")
    assert confirmed == [model_fingerprint(shipped)]  # dev selection confirmed the merged model model/ holds
    assert not [call for call in encoded if call[1] == "document"]  # the final evaluation read them from the cache


@pytest.mark.parametrize(
    "extra",
    [(), ("head.add=true", "head.dim=16"), ("head.add=true", "head.dim=16", "train.dropout=none")],
    ids=["full", "full with a head", "full with a head and the model's dropout"],
)
def test_embedtune_eval_of_the_shipped_model_reads_the_runs_embeddings(
    tiny_model_dir, noise_beir, tmp_path, encoded, extra
):
    overrides = ("train.epochs=5", "train.learning_rate=2e-1", "train.selection_alpha=none", *extra)
    config = tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", *overrides)
    result = run_training(config)
    assert result.metrics.selection.chosen == "fine_tuned"
    encoded.clear()

    assert main(["eval", "--model", str(result.folder), "--data", str(noise_beir), "--no-baseline"]) == 0
    assert not encoded  # the run's final evaluation left every query and document embedding in the cache
