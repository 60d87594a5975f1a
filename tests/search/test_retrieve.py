import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize

from embedtune.cache import EmbeddingCache
from embedtune.config import HeadConfig
from embedtune.models.head import apply_head, encoder_part, head_modules, head_start, split_head
from embedtune.models.precision import inference_autocast
from embedtune.models.prompts import set_prompts
from embedtune.search.encoding import encoding_devices
from embedtune.search.retrieve import encode_documents, encode_queries, retrieve


@pytest.fixture()
def model(tiny_model_dir):
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def test_retrieve_ranks_with_the_models_prompts(model):
    corpus = {"d1": "apple fruit", "d2": "car road", "d3": "pear tree"}
    queries = {"q": "sweet"}
    plain = retrieve(model, corpus, queries, top_k=2, progress=False)
    set_prompts(model, query_prefix="what is the color of ", passage_prefix="the ")
    prompted = retrieve(model, corpus, queries, top_k=2, progress=False)
    assert len(prompted["q"]) == 2 and plain != prompted
    query = model.encode(["what is the color of sweet"], normalize_embeddings=True)
    docs = model.encode([f"the {text}" for text in corpus.values()], normalize_embeddings=True)
    expected = dict(zip(corpus, (docs @ query.T).ravel().tolist(), strict=True))
    for doc_id, score in prompted["q"].items():
        assert score == pytest.approx(expected[doc_id], abs=1e-5)
    assert set(prompted["q"]) == set(sorted(expected, key=expected.get, reverse=True)[:2])


def test_empty_prefix_keeps_the_models_own_prompt(model):
    model.prompts = {"query": "query: ", "passage": "passage: "}
    set_prompts(model, query_prefix="", passage_prefix="doc: ")
    assert model.prompts == {"query": "query: ", "document": "doc: "}
    assert np.allclose(model.encode_document(["x"]), model.encode(["doc: x"]), atol=1e-6)


def with_head(model: SentenceTransformer, dim: int = 8) -> SentenceTransformer:
    torch.manual_seed(0)
    modules = head_modules(model.get_embedding_dimension(), HeadConfig(add=True, dim=dim, layers=2))
    return SentenceTransformer(modules=[*model, *modules], device="cpu")


def test_a_model_with_a_head_caches_its_encoders_embeddings_and_applies_the_head(model, tmp_path):
    texts = ["apple fruit", "car road", "pear tree", "the sweet mango"]
    headed = with_head(model)
    cache = EmbeddingCache(tmp_path / "cache")
    through_cache = encode_documents(headed, texts, progress=False, cache=cache)
    direct = headed.encode_document(texts, convert_to_tensor=True)
    assert through_cache.shape == (4, 8) and torch.allclose(through_cache, direct, atol=1e-5)

    def refuse(batch):
        raise AssertionError(f"encoded again: {batch}")

    encoder = encoder_part(headed, head_start(headed))
    assert cache.get_or_encode(encoder, texts, "document", refuse).shape == (4, model.get_embedding_dimension())
    assert torch.allclose(encode_documents(headed, texts, progress=False, cache=cache), through_cache)


def test_the_head_split_keeps_the_encoders_normalize_and_needs_a_dense(model):
    assert head_start(model) is None
    normalized = SentenceTransformer(modules=[*model, Normalize()], device="cpu")
    assert head_start(normalized) is None
    headed = with_head(normalized)
    assert head_start(headed) == len(normalized)
    headed.truncate_dim = 4
    assert encode_queries(headed, ["apple"], progress=False, cache=None).shape == (1, 4)


def test_two_cpu_processes_give_the_embeddings_of_one(model):
    texts = [f"{word} fruit tree" for word in ("apple", "pear", "plum", "mango", "lemon", "grape", "peach")]
    single = encode_documents(model, texts, batch_size=2, progress=False)
    pooled = encode_documents(model, texts, batch_size=2, progress=False, devices=encoding_devices(2))
    assert pooled.shape == single.shape and torch.allclose(pooled, single, atol=1e-6)


def test_encoding_devices_spread_processes_over_gpus_or_cpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert encoding_devices(None) is None and encoding_devices(1) is None
    assert encoding_devices(3) == ["cpu", "cpu", "cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert encoding_devices(None) == ["cuda:0", "cuda:1"]
    assert encoding_devices(3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert encoding_devices(1) is None
    with pytest.raises(ValueError, match="at least 1"):
        encoding_devices(0)


def test_the_head_runs_in_fp32_when_the_encoder_encodes_in_bf16(model, tmp_path):
    texts = ["apple fruit", "car road", "pear tree", "the sweet mango"]
    headed = with_head(model)
    cache = EmbeddingCache(tmp_path / "cache")
    shipped = encode_documents(headed, texts, progress=False, cache=cache, precision="bf16")
    encoder, head = split_head(headed)

    def refuse(batch):
        raise AssertionError(f"encoded again: {batch}")

    with inference_autocast("bf16", "cpu"):  # the cache keys bf16 embeddings apart
        encoder_embeddings = cache.get_or_encode(encoder, texts, "document", refuse)
        in_autocast = apply_head(head, encoder_embeddings)
    fp32_head = apply_head(head, encoder_embeddings)  # as head training scores its dev checkpoints
    assert torch.equal(shipped, fp32_head) and torch.equal(in_autocast, fp32_head)
    without_cache = encode_documents(headed, texts, progress=False, precision="bf16")
    assert torch.equal(without_cache, shipped)
