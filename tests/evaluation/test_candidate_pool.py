import pytest
import torch

from embedtune.evaluation.candidate_pool import hard_candidate_pool


def unit(rows: list[list[float]]) -> torch.Tensor:
    tensor = torch.tensor(rows, dtype=torch.float32)
    return tensor / tensor.norm(dim=1, keepdim=True)


def setting():
    corpus = {f"d{i}": f"text {i}" for i in range(10)}
    doc_ids = list(corpus)
    angles = torch.linspace(0, 3.0, 10)
    docs = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # doc i sits at angle i/3
    queries = unit([[1.0, 0.0], [float(torch.cos(torch.tensor(3.0))), float(torch.sin(torch.tensor(3.0)))]])
    qrels = {"q0": {"d5": 1}, "q1": {"d2": 1, "d3": 0}}
    return corpus, qrels, ["q0", "q1"], queries, doc_ids, docs


def test_pool_holds_judged_documents_then_each_querys_nearest_then_random_fill():
    corpus, qrels, query_ids, queries, doc_ids, docs = setting()
    pool = hard_candidate_pool(corpus, qrels, query_ids, queries, doc_ids, docs, max_docs=7, top_k=2, seed=1)
    assert len(pool) == 7 and list(pool) == [d for d in corpus if d in pool]  # corpus order
    assert {"d5", "d2", "d3"} <= set(pool)  # judged, relevant or not
    assert {"d0", "d1", "d9", "d8"} <= set(pool)  # q0's two nearest (angles 0, 1/3), q1's (angles 3, 8/3)


def test_when_the_limit_is_tight_every_query_keeps_its_nearest_first():
    corpus, qrels, query_ids, queries, doc_ids, docs = setting()
    pool = hard_candidate_pool(corpus, qrels, query_ids, queries, doc_ids, docs, max_docs=5, top_k=3, seed=1)
    assert set(pool) == {"d5", "d2", "d3", "d0", "d9"}


def test_pool_is_deterministic_for_a_seed_and_the_fill_depends_on_it():
    corpus, qrels, query_ids, queries, doc_ids, docs = setting()
    first = hard_candidate_pool(corpus, qrels, query_ids, queries, doc_ids, docs, max_docs=8, top_k=1, seed=3)
    again = hard_candidate_pool(corpus, qrels, query_ids, queries, doc_ids, docs, max_docs=8, top_k=1, seed=3)
    assert first == again
    fills = {
        frozenset(hard_candidate_pool(corpus, qrels, query_ids, queries, doc_ids, docs, 8, 1, seed))
        for seed in range(10)
    }
    assert len(fills) > 1


def test_bad_sizes_are_rejected():
    corpus, qrels, query_ids, queries, doc_ids, docs = setting()
    with pytest.raises(ValueError, match="positive"):
        hard_candidate_pool(corpus, qrels, query_ids, queries, doc_ids, docs, max_docs=0)
    with pytest.raises(ValueError, match="same length"):
        hard_candidate_pool(corpus, qrels, query_ids, queries[:1], doc_ids, docs, max_docs=5)
