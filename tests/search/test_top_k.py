from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import torch

from embedtune.mining.bm25 import Bm25Index
from embedtune.search.top_k import (
    chunked_top_k,
    dense_candidates,
    pair_scores,
    prepare_embeddings,
    top_k_rows,
)


def full_top_k(queries: torch.Tensor, docs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the full score matrix, stable-sorted (equal scores by ascending document index)."""
    scores = queries @ docs.T
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), order


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 97, 1000])
@pytest.mark.parametrize("query_batch_size", [None, 1, 4])
@pytest.mark.parametrize("k", [1, 5, 40, 500])
def test_chunked_equals_full_top_k_with_many_ties(chunk_size: int, query_batch_size: int | None, k: int) -> None:
    generator = torch.Generator().manual_seed(k + chunk_size)
    # Small integer coordinates: scores repeat a lot, so ties cross every chunk and cut-off boundary.
    queries = torch.randint(-2, 3, (9, 4), generator=generator).float()
    docs = torch.randint(-2, 3, (203, 4), generator=generator).float()

    scores, indices = chunked_top_k(queries, docs, k, chunk_size=chunk_size, query_batch_size=query_batch_size)

    expected_scores, expected_indices = full_top_k(queries, docs, k)
    assert indices.dtype == torch.long
    assert scores.shape == indices.shape == (9, min(k, 203))
    assert torch.equal(indices, expected_indices)
    assert torch.equal(scores, expected_scores)


def test_chunked_equals_full_top_k_on_random_unit_vectors() -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(50, 32, generator=generator), dim=1)
    docs = torch.nn.functional.normalize(torch.randn(5000, 32, generator=generator), dim=1)

    scores, indices = chunked_top_k(queries, docs, 25, chunk_size=700, query_batch_size=16)

    expected_scores, expected_indices = full_top_k(queries, docs, 25)
    assert torch.equal(indices, expected_indices)
    assert torch.allclose(scores, expected_scores)


def test_callable_chunks_of_any_size_equal_a_matrix() -> None:
    generator = torch.Generator().manual_seed(1)
    queries = torch.randint(-1, 2, (5, 3), generator=generator).float()
    docs = torch.randint(-1, 2, (60, 3), generator=generator).float()

    def pieces():
        yield docs[:7].numpy()  # numpy chunks are accepted too
        yield docs[7:50]  # larger than chunk_size: split
        yield docs[50:]

    from_matrix = chunked_top_k(queries, docs, 12, chunk_size=10)
    from_chunks = chunked_top_k(queries, pieces, 12, chunk_size=10)

    assert torch.equal(from_matrix[1], from_chunks[1])
    assert torch.equal(from_matrix[1], full_top_k(queries, docs, 12)[1])


def test_k_larger_than_the_corpus_and_custom_score_function() -> None:
    queries = torch.tensor([[0.0, 0.0]])
    docs = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])

    scores, indices = chunked_top_k(queries, docs, 10, chunk_size=2, score_fn=lambda q, d: -torch.cdist(q, d))

    assert indices.tolist() == [[1, 2, 0]]
    assert scores.tolist() == [[-1.0, -2.0, -5.0]]


def test_top_k_rows_breaks_ties_by_lowest_column() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])

    values, columns = top_k_rows(scores, 3)

    assert columns.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert values.tolist() == [[3.0, 3.0, 3.0], [2.0, 2.0, 2.0]]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2, "chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"k": 2, "query_batch_size": 0}, "query_batch_size must be a positive integer"),
    ],
)
def test_rejects_bad_settings(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        chunked_top_k(torch.ones(2, 3), torch.ones(4, 3), **kwargs)


def test_rejects_a_chunk_of_another_dimension() -> None:
    with pytest.raises(ValueError, match="dimension 4, the queries 3"):
        chunked_top_k(torch.ones(2, 3), torch.ones(5, 4), 2)


NUM_DOCS, DIM, CHUNK, NUM_QUERIES, K, SEED = 1_000_000, 16, 50_000, 32, 10, 1234


def unit_vector_chunks():
    """One million random unit vectors, generated chunk by chunk (float32, 3.2 MB per chunk); never all at once."""
    rng = np.random.default_rng(SEED)
    for _ in range(NUM_DOCS // CHUNK):
        chunk = rng.standard_normal((CHUNK, DIM), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        yield chunk


def test_one_million_documents_in_bounded_memory() -> None:
    queries = torch.nn.functional.normalize(torch.randn(NUM_QUERIES, DIM, generator=torch.Generator().manual_seed(7)))
    block_sizes = []

    def recording_dot(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        block = q @ d.T
        block_sizes.append(block.numel())
        return block

    tracemalloc.start()
    started = time.perf_counter()
    try:
        scores, indices = chunked_top_k(queries, unit_vector_chunks, K, chunk_size=CHUNK, score_fn=recording_dot)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started

    # The whole corpus would be 64 MB and the full score matrix 128 MB: neither ever exists.
    assert len(block_sizes) == NUM_DOCS // CHUNK
    assert max(block_sizes) <= CHUNK * NUM_QUERIES
    assert peak < 16 * 1024**2, f"peak traced memory {peak / 1024**2:.1f} MiB: chunks were kept"
    assert elapsed < 30
    assert indices.shape == scores.shape == (NUM_QUERIES, K)
    assert int(indices.max()) > NUM_DOCS // 2  # the later chunks were searched too

    # Check three queries against their full score rows (3 x 1M floats), rebuilt from the same generator.
    rows = torch.cat([torch.from_numpy(chunk) @ queries[:3].T for chunk in unit_vector_chunks()]).T
    expected = rows.argsort(dim=1, descending=True, stable=True)[:, :K]
    assert torch.equal(indices[:3], expected)


def test_hnsw_search_finds_the_exact_neighbours_of_a_small_corpus() -> None:
    generator = torch.Generator().manual_seed(3)
    docs = prepare_embeddings(torch.randn(300, 16, generator=generator), "cosine")
    queries = prepare_embeddings(torch.randn(10, 16, generator=generator), "cosine")

    exact = dense_candidates(queries, docs, 5, "cosine", "exact", chunk_size=64, query_batch=4)
    approximate = dense_candidates(queries, docs, 5, "cosine", "hnsw", chunk_size=64, query_batch=4)

    assert approximate.shape == exact.shape == (10, 5)
    overlap = sum(len(set(a) & set(e)) for a, e in zip(approximate.tolist(), exact.tolist(), strict=True))
    assert overlap >= 45


def test_pair_scores_agree_with_search_scores() -> None:
    docs = prepare_embeddings(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]]), "cosine")
    query = prepare_embeddings(torch.tensor([[2.0, 0.0]]), "cosine")[0]

    assert pair_scores(query, docs, [2, 1, 0], "cosine") == pytest.approx([0.0, 0.6, 1.0])
    assert pair_scores(query, docs, [1], "euclidean") == pytest.approx([-((0.4**2 + 0.8**2) ** 0.5)])
    assert pair_scores(query, docs, [], "cosine") == []


@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean", "manhattan"])
def test_pair_scores_match_the_search_score_function(similarity: str) -> None:
    from embedtune.search.top_k import score_function

    generator = torch.Generator().manual_seed(4)
    docs = prepare_embeddings(torch.randn(40, 8, generator=generator), similarity)
    query = prepare_embeddings(torch.randn(1, 8, generator=generator), similarity)
    rows = [5, 0, 39, 17]

    expected = score_function(similarity)(query, docs[rows])[0].tolist()
    assert pair_scores(query[0], docs, rows, similarity) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_prepare_embeddings_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        prepare_embeddings(torch.tensor([[1.0, float("nan")]]), "dot")


def test_bm25_ranks_documents_sharing_words_and_scores_chosen_rows() -> None:
    texts = [
        "the cat sat on the mat",
        "a dog chased the cat",
        "stock markets fell sharply",
        "cat food and cat toys for a happy cat",
        "the dog barked",
    ]
    index = Bm25Index(texts)

    rows, scores, chosen = index.search("cat on a mat", depth=10, score_rows=[2, 0])

    assert set(rows) == {0, 1, 3}  # no shared word: never returned
    assert rows[0] == 0
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)
    assert chosen[0] == 0.0 and chosen[1] == pytest.approx(scores[0])
    assert index.search("the of and", depth=3) == ([], [], [])  # stop words only
    assert index.search("zebra", depth=3)[0] == []
    assert len(index.search("cat", depth=2)[0]) == 2


def test_bm25s_is_imported_with_jax_kept_off_the_gpu(monkeypatch) -> None:
    """bm25s starts JAX at import where JAX is installed; JAX would then preallocate 75 % of the GPU's memory."""
    import os

    from embedtune.mining.bm25 import import_bm25s

    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    assert import_bm25s().BM25 is not None
    assert os.environ["JAX_PLATFORMS"] == "cpu" and os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"

    monkeypatch.setenv("JAX_PLATFORMS", "cuda")  # a user's own JAX setting is left alone
    import_bm25s()
    assert os.environ["JAX_PLATFORMS"] == "cuda"
