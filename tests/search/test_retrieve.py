import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedtune.models.prompts import set_prompts
from embedtune.search.retrieve import retrieve


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
