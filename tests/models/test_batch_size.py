"""Encoding batch sizes: the user's as given, or sized for the device and halved on out-of-memory."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.config import ConfigError, build_config
from embedtune.models import batch_size as sizing
from embedtune.models.batch_size import (
    CPU_BATCH_SIZE,
    MAX_BATCH_SIZE,
    auto_batch_size,
    encode_in_batches,
    model_batch_size,
)
from embedtune.search.retrieve import encode_documents

OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 2.00 GiB"
TEXTS = ["what color is the apple", "the bus on the road", "sweet mango juice", "a red car", "the river"] * 8


class FitsUpTo:
    """An encode function that runs out of memory above ``limit`` texts per batch, recording every size tried."""

    def __init__(self, limit: int, error: str = OUT_OF_MEMORY) -> None:
        self.limit, self.error, self.tried = limit, error, []

    def __call__(self, size: int) -> int:
        self.tried.append(size)
        if size > self.limit:
            raise RuntimeError(self.error)
        return size


def test_a_cpu_gets_the_cpu_batch_size_whatever_the_model():
    assert auto_batch_size("cpu", 8192, 4096) == auto_batch_size("cpu", 16, 32) == CPU_BATCH_SIZE


def test_the_gpu_size_is_the_largest_power_of_two_whose_activations_fit_the_memory_share():
    length, hidden = 256, 384
    per_text = length * hidden * sizing.ACTIVATION_BYTES
    for texts_that_fit in (1, 3, 40, 64, 300, 10_000):
        free = int(texts_that_fit * per_text / sizing.MEMORY_SHARE)
        size = auto_batch_size("cuda", length, hidden, free_bytes=free)
        assert size & (size - 1) == 0, "a power of two"
        assert size <= min(texts_that_fit, MAX_BATCH_SIZE) < 2 * size or size == MAX_BATCH_SIZE


def test_longer_texts_and_wider_models_get_smaller_gpu_batches():
    free = 8 * 1024**3
    shapes = ((128, 384), (512, 768), (8192, 1024))
    sizes = [auto_batch_size("cuda", length, hidden, free) for length, hidden in shapes]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1] >= 1


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="max_seq_length and hidden_size"):
        auto_batch_size("cpu", 0, 384)


def test_a_user_batch_size_is_used_as_given_and_its_out_of_memory_error_reaches_the_user():
    encode = FitsUpTo(limit=16)
    assert encode_in_batches(object(), 8, encode) == 8
    with pytest.raises(RuntimeError, match="out of memory"):
        encode_in_batches(object(), 32, encode)
    assert encode.tried == [8, 32]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        encode_in_batches(object(), 0, encode)


def test_the_automatic_size_halves_on_out_of_memory_until_a_batch_fits(tiny_model_dir):
    model = SentenceTransformer(str(tiny_model_dir))
    start = model_batch_size(model)
    encode = FitsUpTo(limit=5)

    assert encode_in_batches(model, None, encode) == 4
    assert encode.tried == [start >> step for step in range(len(encode.tried))]
    assert encode.tried[-1] == 4 and encode.tried[-2] > 5


def test_other_errors_and_out_of_memory_at_one_text_are_raised():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        encode_in_batches(object(), None, FitsUpTo(limit=0, error="shape mismatch"))
    never = FitsUpTo(limit=0)
    with pytest.raises(RuntimeError, match="out of memory"):
        encode_in_batches(object(), None, never)
    assert never.tried[-1] == 1


def test_the_model_size_reads_the_encoder_width_and_truncation_length(tiny_model_dir, monkeypatch):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    seen = []
    monkeypatch.setattr(sizing, "auto_batch_size", lambda *shape: seen.append(shape) or 1)
    model_batch_size(model)
    assert seen == [(model.device, model.max_seq_length, model[0].auto_model.config.hidden_size)]


def test_encoding_with_the_automatic_size_survives_out_of_memory_and_matches_a_fixed_size(tiny_model_dir):
    model = SentenceTransformer(str(tiny_model_dir))
    expected = encode_documents(model, TEXTS, batch_size=4)
    encode_document, tried = model.encode_document, []

    def runs_out_above_eight(texts, batch_size, **options):
        tried.append(batch_size)
        if batch_size > 8:
            raise RuntimeError(OUT_OF_MEMORY)
        return encode_document(texts, batch_size=batch_size, **options)

    model.encode_document = runs_out_above_eight
    embeddings = encode_documents(model, TEXTS)

    assert tried[-1] == 8 and len(tried) > 1
    torch.testing.assert_close(embeddings, expected, atol=1e-4, rtol=1e-3)  # batch composition moves the last bits


def test_the_setting_defaults_to_automatic_and_refuses_zero():
    data = "data.path=corpus"
    assert build_config(overrides=[data]).eval.batch_size is None
    assert build_config(overrides=[data, "eval.batch_size=none"]).eval.batch_size is None
    assert build_config(overrides=[data, "eval.batch_size=16"]).eval.batch_size == 16
    with pytest.raises(ConfigError, match="eval.batch_size"):
        build_config(overrides=[data, "eval.batch_size=0"])
