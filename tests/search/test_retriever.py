import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer, models

import embedtune
from embedtune.model_paths import ModelNotFoundError
from embedtune.models.prompts import set_prompts
from embedtune.search.encoding import ModelMismatchError
from embedtune.search.index import build_index
from embedtune.search.retriever import Retriever, SearchHit
from tests.conftest import WORDS

PLANTED = "which river runs from the mountain to the sea"


@pytest.fixture()
def model(tiny_model_dir):
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    documents = {f"doc{i}": " ".join(rng.choice(WORDS, size=8)) for i in range(60)}
    documents["planted"] = PLANTED
    return documents


def test_exported_from_the_package():
    assert embedtune.Retriever is Retriever


def test_encodings_are_unit_length_with_the_models_prompts(model):
    set_prompts(model, query_prefix="what is ", passage_prefix="the ")
    retriever = Retriever(model, batch_size=2, progress=False)
    queries = retriever.encode_queries(["apple", "red car", "sea"])
    passages = retriever.encode_passages("apple")
    assert queries.shape == (3, 32) and passages.shape == (1, 32) and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    expected = model.encode(["what is apple"], normalize_embeddings=True)
    np.testing.assert_allclose(queries[:1], expected, atol=1e-5)
    np.testing.assert_allclose(passages, model.encode(["the apple"], normalize_embeddings=True), atol=1e-5)
    assert retriever.encode_queries([]).shape == (0, 32)


def test_a_document_identical_to_the_query_comes_first(model, corpus):
    retriever = Retriever(model, progress=False).index(corpus)
    hits = retriever.search(PLANTED, top_k=5)
    assert hits[0] == SearchHit("planted", pytest.approx(1.0, abs=1e-5), PLANTED)
    assert len(hits) == 5 and [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_batch_search_matches_search_and_lists_get_positional_ids(model):
    texts = ["apple tree", "fast bus", "blue lake", "sour lemon juice"]
    retriever = Retriever(model, progress=False).index(texts)
    assert [hit.id for hit in retriever.search("fast bus", top_k=10)][0] == "1"
    assert len(retriever.search("fast bus", top_k=10)) == 4  # no more hits than documents
    batch = retriever.batch_search(["blue lake", "apple tree"], top_k=2)
    assert batch == [retriever.search("blue lake", top_k=2), retriever.search("apple tree", top_k=2)]
    assert batch[0][0].text == "blue lake"


def test_hnsw_in_memory_finds_the_planted_document(model, corpus):
    retriever = Retriever(model, progress=False).index(corpus, kind="hnsw", ef_search=16)
    assert retriever.search_index.info.kind == "hnsw" and retriever.search_index.info.parameters["ef_search"] == 16
    assert retriever.search(PLANTED, top_k=3)[0].id == "planted"


def test_misuse_is_refused(model):
    retriever = Retriever(model, progress=False)
    with pytest.raises(RuntimeError, match="nothing indexed"):
        retriever.search("apple")
    retriever.index({"a": "apple"})
    with pytest.raises(ValueError, match="top_k"):
        retriever.search("apple", top_k=0)
    with pytest.raises(ValueError, match="non-empty"):
        retriever.search("  ")
    with pytest.raises(ValueError, match="empty"):
        retriever.index({})
    with pytest.raises(TypeError, match="single string"):
        retriever.index("apple pie")
    with pytest.raises(ValueError, match="batch_size"):
        Retriever(model, batch_size=0)
    with pytest.raises(ModelNotFoundError):
        Retriever("./no/such/model")


def test_saved_index_reopens_with_the_recorded_prompts(model, corpus, tmp_path):
    set_prompts(model, query_prefix="what is ", passage_prefix="the ")
    in_memory = Retriever(model, progress=False).index(corpus)
    in_memory.save(tmp_path / "idx")
    record = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert record["prompts"] == {"query": "what is ", "document": "the "}
    reopened = Retriever.load(tmp_path / "idx", progress=False)  # the folder's model has no prompts saved
    assert reopened.encode_queries(["x"]) == pytest.approx(in_memory.encode_queries(["x"]), abs=1e-6)
    assert reopened.batch_search(["apple", PLANTED], 5) == in_memory.batch_search(["apple", PLANTED], 5)
    assert Retriever.load(tmp_path / "idx", model=model).search(PLANTED, 1)[0].id == "planted"


def test_another_dimension_is_refused_naming_both_models(model, tiny_model_dir, tmp_path):
    build_index(model, {"a": "apple", "b": "bus"}, tmp_path / "idx", model_reference="tiny-base")
    narrower = SentenceTransformer(modules=[*model, models.Dense(32, 16)], device="cpu")
    with pytest.raises(ModelMismatchError) as caught:
        Retriever.load(tmp_path / "idx", model=narrower, model_label="narrow-16")
    message = str(caught.value)
    assert "'tiny-base' (32-dimensional embeddings)" in message and "'narrow-16' gives 16-dimensional" in message


def write_perturbed_copy(model_dir: Path, other_dir: Path) -> Path:
    """Save ``model_dir``'s model with noise added to every weight: same shape and dimension, other embeddings."""
    shutil.copytree(model_dir, other_dir)
    other = SentenceTransformer(str(other_dir), device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    other.save(str(other_dir))
    return other_dir


def test_another_model_of_the_same_dimension_is_refused(model, tiny_model_dir, tmp_path):
    build_index(str(tiny_model_dir), {"a": "apple", "b": "bus"}, tmp_path / "idx")
    other_dir = write_perturbed_copy(tiny_model_dir, tmp_path / "other-model")
    with pytest.raises(ModelMismatchError, match="embeds text differently") as caught:
        Retriever.load(tmp_path / "idx", model=str(other_dir))
    assert str(tiny_model_dir) in str(caught.value) and str(other_dir) in str(caught.value)
    set_prompts(model, query_prefix="query: ")
    with pytest.raises(ModelMismatchError, match="prompts"):
        Retriever.load(tmp_path / "idx", model=model)


def test_a_folder_overwritten_by_another_model_is_detected(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    build_index(str(model_dir), {"a": "apple", "b": "bus"}, tmp_path / "idx")
    changed = SentenceTransformer(str(model_dir), device="cpu")
    with torch.no_grad():
        next(changed.parameters()).mul_(-3.0)
    changed.save(str(model_dir))
    with pytest.raises(ModelMismatchError, match="embeds text differently"):
        Retriever.load(tmp_path / "idx")
    shutil.rmtree(model_dir)
    with pytest.raises(ModelNotFoundError, match="pass the model to search with"):
        Retriever.load(tmp_path / "idx")
