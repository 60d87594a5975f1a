"""The base model that competes in a LoRA run is the untouched base, scored through the embedding cache."""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.cache.fingerprint import model_fingerprint
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.models.loading import load_base_model
from embedtune.models.lora import has_lora
from embedtune.training import selection
from embedtune.training.mode import prepare_model_for_mode
from embedtune.training.modes import BaseAtStepZero, base_view, dev_evaluator_for_mode
from embedtune.training.pipeline import run_training
from tests.models.test_lora import encode
from tests.training.test_pipeline import tiny_config

LORA = ("train.mode=lora", "lora.rank=4", "train.learning_rate=1e-2", "train.warmup_ratio=0")  # step 1 trains


def test_the_base_view_of_a_lora_model_is_the_base_model_with_its_fingerprint(tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *LORA)
    model = load_base_model(config, "cpu")
    setup = prepare_model_for_mode(model, config)
    view = base_view(model, setup)

    plain = load_base_model(config, "cpu")
    assert has_lora(model) and not has_lora(view)
    assert model_fingerprint(view) == model_fingerprint(plain) != model_fingerprint(model)
    assert torch.equal(encode(view), encode(model))  # the adapter starts at zero: the same embeddings
    assert isinstance(dev_evaluator_for_mode(RetrievalEvaluator({}, {}, {}), setup), BaseAtStepZero)
    assert view.device == model.device


def test_a_lora_run_after_another_run_encodes_no_document_for_its_base(
    tiny_model_dir, tiny_beir, tmp_path, monkeypatch
):
    full = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "train.learning_rate=1e-2")
    lora = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *LORA)
    base = model_fingerprint(load_base_model(lora, "cpu"))
    untrained = load_base_model(lora, "cpu")
    prepare_model_for_mode(untrained, lora)  # seeded: the adapter the LoRA run starts from
    untrained = model_fingerprint(untrained)
    encoded: list[tuple[str, str, int]] = []  # (model fingerprint, role, texts encoded) per encoding
    get_or_encode = EmbeddingCache.get_or_encode

    def counting(self, model, texts, role, encode_fn):
        def encode_missing(missing):
            encoded.append((model_fingerprint(model), role, len(missing)))
            return encode_fn(missing)

        return get_or_encode(self, model, texts, role, encode_missing)

    monkeypatch.setattr(EmbeddingCache, "get_or_encode", counting)
    run_training(full)  # any earlier run of the same base model fills the cache with its embeddings
    assert any(fingerprint == base and count for fingerprint, _, count in encoded)
    encoded.clear()
    run_training(lora)

    assert encoded  # the trained checkpoints are encoded
    assert not [entry for entry in encoded if entry[0] == base and entry[1] == "document" and entry[2]]
    assert not [entry for entry in encoded if entry[0] == untrained and entry[2]]  # the base, in disguise


def test_a_lora_run_confirms_the_merged_model_it_ships_and_reuses_its_embeddings(
    tiny_model_dir, noise_beir, tmp_path, monkeypatch
):
    overrides = ("train.epochs=5", "train.learning_rate=2e-1", "lora.rank=8", "train.selection_alpha=none")
    config = tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", *LORA, *overrides)
    confirmed: list[str] = []  # fingerprint of each model confirmed against the base
    encoded_after: list[int] = []  # documents encoded once the confirmation is done
    confirm_on_dev = selection.confirm_on_dev

    def recording(dev, base, tuned, *args, **kwargs):
        confirmed.append(model_fingerprint(tuned))
        try:
            return confirm_on_dev(dev, base, tuned, *args, **kwargs)
        finally:
            encoded_after.clear()

    get_or_encode = EmbeddingCache.get_or_encode

    def counting(self, model, texts, role, encode_fn):
        def encode_missing(missing):
            if role == "document":
                encoded_after.append(len(missing))
            return encode_fn(missing)

        return get_or_encode(self, model, texts, role, encode_missing)

    monkeypatch.setattr(selection, "confirm_on_dev", recording)
    monkeypatch.setattr(EmbeddingCache, "get_or_encode", counting)
    result = run_training(config)

    assert result.metrics.selection.chosen == "fine_tuned"
    shipped = SentenceTransformer(str(result.folder / "model"), device="cpu")
    assert confirmed == [model_fingerprint(shipped)]  # dev selection confirmed the merged model model/ holds
    assert not any(encoded_after)  # the final evaluation found every document in the cache
