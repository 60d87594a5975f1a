"""Encoding precision: which autocast dtype each setting gives, and bf16 encodings kept apart in the cache."""

import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.models import precision
from embedtune.models.precision import cpu_has_native_bf16, inference_dtype
from embedtune.search.retrieve import encode_documents

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "flags\t\t: fpu avx512f amx_bf16 amx_tile\n"
OLD = "flags\t\t: fpu sse avx2 avx512f\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16(ZEN4) and cpu_has_native_bf16(SAPPHIRE)
    assert not cpu_has_native_bf16(OLD) and not cpu_has_native_bf16("")
    assert not cpu_has_native_bf16("model name\t: avx512_bf16 in a name, not a flag\n")


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_on_a_cpu_is_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert inference_dtype("auto", "cpu") is expected
    assert inference_dtype("fp32", "cpu") is None and inference_dtype("fp16", "cpu") is None
    assert inference_dtype("bf16", "cpu") is torch.bfloat16


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_cuda_prefers_bf16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert inference_dtype("auto", "cuda") is expected
    assert inference_dtype("fp16", "cuda") is torch.float16 and inference_dtype("fp32", "cuda") is None


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        inference_dtype("int4", "cpu")


def test_bf16_encodings_are_close_to_fp32_and_cached_apart(tiny_model_dir, tmp_path):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    texts = ["apple fruit tree", "the car is fast", "sweet mango juice"]
    cache = EmbeddingCache(tmp_path / "cache")
    full = encode_documents(model, texts, progress=False, cache=cache)
    half = encode_documents(model, texts, progress=False, cache=cache, precision="bf16")
    assert not torch.equal(full, half)  # encoded again at bf16, not read from the fp32 entries
    assert torch.nn.functional.cosine_similarity(full, half).min() > 0.99
    assert torch.equal(encode_documents(model, texts, progress=False, cache=cache, precision="bf16"), half)
    assert torch.equal(encode_documents(model, texts, progress=False, precision="fp32"), full)
