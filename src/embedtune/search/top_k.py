"""The one dense top-k engine: exact and chunked (a running top-k per query), or faiss above one threshold.

Mining, the dev candidate pool, evaluation (:func:`embedtune.search.retrieve.rank`) and saved indexes
(:mod:`embedtune.search.vectors`) all search through it, with the one threshold :data:`EXACT_MAX_DOCS`.

The full ``(n_queries, n_docs)`` score matrix is never built. Documents arrive in chunks of at most ``chunk_size``
rows (sliced from a matrix, or produced one at a time by a callable: encoded, read from disk or generated on the
fly) and queries are scored in batches of at most ``query_batch_size`` rows, so the largest score block held at any
time is ``query_batch_size x chunk_size``. Each block's own top-k is merged into the running top-k of its queries by
one sort over at most ``2k`` columns.

Ties are broken deterministically: among equal scores the lower document index ranks first, exactly as a stable
descending sort of the full score matrix orders them, whatever the chunk and batch sizes.

:func:`dense_candidates` searches exactly this way up to :data:`EXACT_MAX_DOCS` documents and with a faiss HNSW
index (:mod:`embedtune.search.vectors`) above, unless a search kind is forced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from embedtune.search.vectors import EXACT_MAX_DOCS, INDEX_KINDS, create_vector_index, search_vectors

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``(queries (b, dim), docs (c, dim)) -> scores (b, c)``, higher is more similar."""
DocChunks = Callable[[], Iterable["Tensor | np.ndarray"]]
"""A callable returning an iterable of ``(c, dim)`` document chunks, in corpus order."""

SEARCH_KINDS = INDEX_KINDS
"""Dense search kinds: ``exact`` chunked top-k, faiss ``hnsw``/``ivf``, or ``auto`` (exact up to EXACT_MAX_DOCS)."""
DEFAULT_CHUNK_SIZE = 50_000
"""Documents scored per chunk: 50,000 x 1,024 queries x 4 bytes = 205 MB of scores per block."""


def dot_scores(queries: Tensor, docs: Tensor) -> Tensor:
    """Score every query against every document by inner product (cosine for unit-length rows).

    Args:
        queries: ``(b, dim)`` embeddings.
        docs: ``(c, dim)`` embeddings.

    Returns:
        ``(b, c)`` scores.
    """
    return queries @ docs.T


def top_k_rows(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Return the ``k`` best columns of every row, best first, equal scores ordered by ascending column.

    ``torch.topk`` alone picks arbitrarily among values tied with the k-th best; rows where such a tie crosses the
    cut are redone so that the lowest columns win, and every row is then ordered by (score descending, column
    ascending).

    Args:
        scores: ``(rows, cols)`` scores, no NaN.
        k: Columns kept, ``0 <= k <= cols``.

    Returns:
        ``(values, columns)``, both ``(rows, k)``; ``columns`` is int64.

    Raises:
        ValueError: if ``k`` is negative or larger than the number of columns.
    """
    rows, cols = scores.shape
    if not 0 <= k <= cols:
        raise ValueError(f"k must be between 0 and the {cols} columns, got {k}")
    if k == 0:
        return scores.new_empty((rows, 0)), torch.empty((rows, 0), dtype=torch.long, device=scores.device)
    values, columns = torch.topk(scores, k, dim=1)
    kth = values[:, -1:]
    ambiguous = ((scores >= kth).sum(dim=1) > k).nonzero().squeeze(1)
    if len(ambiguous):
        tied_rows, tied_kth = scores[ambiguous], kth[ambiguous]
        greater, equal = tied_rows > tied_kth, tied_rows == tied_kth
        needed = k - greater.sum(dim=1, keepdim=True)
        take = greater | (equal & (equal.cumsum(dim=1) <= needed))
        chosen = take.nonzero()[:, 1].view(len(ambiguous), k)  # ascending columns, exactly k per row
        columns[ambiguous] = chosen
        values[ambiguous] = tied_rows.gather(1, chosen)
    return sort_by_score_then_index(values, columns)


def sort_by_score_then_index(values: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Order every row by score descending, equal scores by ascending index.

    Args:
        values: ``(rows, n)`` scores.
        indices: ``(rows, n)`` int64 indices, distinct within a row.

    Returns:
        ``(values, indices)`` reordered, both ``(rows, n)``.
    """
    order = indices.argsort(dim=1)
    values, indices = values.gather(1, order), indices.gather(1, order)
    order = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order), indices.gather(1, order)


def chunked_top_k(
    query_emb: Tensor | np.ndarray,
    docs: Tensor | np.ndarray | DocChunks,
    k: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    query_batch_size: int | None = None,
    score_fn: ScoreFn | None = None,
) -> tuple[Tensor, Tensor]:
    """Find the ``k`` best documents of every query, scoring one bounded block at a time.

    Equal to a stable descending sort of the full ``(n_queries, n_docs)`` score matrix cut to ``k`` columns, but
    holding at most ``query_batch_size x chunk_size`` scores (plus the running ``(n_queries, k)`` top-k) at once.

    Args:
        query_emb: ``(n_queries, dim)`` query embeddings (float32 recommended).
        docs: ``(n_docs, dim)`` document embeddings, or a callable returning an iterable of ``(c, dim)`` chunks in
            corpus order (chunks larger than ``chunk_size`` are split; a generator function that encodes or loads
            documents lazily keeps only one chunk in memory). Row ``j`` of the corpus gets index ``j``.
        k: Documents kept per query, ``>= 1``.
        chunk_size: Most documents scored per block, ``>= 1``.
        query_batch_size: Most queries scored per block; ``None`` scores all queries together.
        score_fn: ``(queries (b, dim), docs (c, dim)) -> (b, c)`` similarity, higher is better; ``None`` is the
            inner product (:func:`dot_scores`). Must not return NaN.

    Returns:
        ``(scores, indices)``, both ``(n_queries, min(k, n_docs))`` on the queries' device, best first; indices are
        int64 document rows.

    Raises:
        ValueError: on a non-positive ``k``, ``chunk_size`` or ``query_batch_size``, a chunk that is not
            ``(c, dim)`` with the queries' ``dim``, or a score block of the wrong shape.
    """
    queries = _as_tensor(query_emb, "query_emb")
    for name, value in (("k", k), ("chunk_size", chunk_size), ("query_batch_size", query_batch_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    score = score_fn or dot_scores
    batch = query_batch_size or max(1, len(queries))
    batches = [(start, min(start + batch, len(queries))) for start in range(0, len(queries), batch)]
    best: list[tuple[Tensor, Tensor] | None] = [None] * len(batches)
    offset = 0
    for chunk in _chunks(docs, chunk_size):
        chunk = _as_tensor(chunk, "document chunk").to(queries.device)
        if chunk.shape[1] != queries.shape[1]:
            raise ValueError(f"document chunk has dimension {chunk.shape[1]}, the queries {queries.shape[1]}")
        for number, (start, stop) in enumerate(batches):
            block = score(queries[start:stop], chunk)
            if tuple(block.shape) != (stop - start, len(chunk)):
                raise ValueError(f"score_fn returned shape {tuple(block.shape)} for a query batch x chunk block")
            values, columns = top_k_rows(block, min(k, len(chunk)))
            del block
            best[number] = _merge(best[number], values, columns + offset, k)
        offset += len(chunk)
    if offset == 0 or not batches:
        width = min(k, offset)
        return queries.new_empty((len(queries), width)), torch.empty(
            (len(queries), width), dtype=torch.long, device=queries.device
        )
    return torch.cat([found[0] for found in best]), torch.cat([found[1] for found in best])


def _merge(best: tuple[Tensor, Tensor] | None, values: Tensor, indices: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Merge a block's top-k into the running top-k of the same queries; keep the ``k`` best."""
    if best is None:
        return values, indices
    best_values, best_indices = best
    merged_values, merged_indices = sort_by_score_then_index(
        torch.cat([best_values, values], dim=1), torch.cat([best_indices, indices], dim=1)
    )
    return merged_values[:, :k], merged_indices[:, :k]


def _chunks(docs: Tensor | np.ndarray | DocChunks, chunk_size: int) -> Iterator[Tensor | np.ndarray]:
    """Yield the documents in pieces of at most ``chunk_size`` rows, in corpus order."""
    pieces = docs() if callable(docs) else (docs,)
    for piece in pieces:
        for start in range(0, len(piece), chunk_size):
            yield piece[start : start + chunk_size]


def _as_tensor(array: Tensor | np.ndarray, name: str) -> Tensor:
    """Return ``array`` as a 2-D float tensor (no copy for a float32 array or tensor)."""
    tensor = torch.as_tensor(array)
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, dim) matrix, got shape {tuple(tensor.shape)}")
    return tensor if tensor.is_floating_point() else tensor.float()


def prepare_embeddings(embeddings: Tensor | np.ndarray, similarity: str) -> Tensor:
    """Return ``(n, dim)`` float32 CPU embeddings ready to score: unit-length rows for cosine.

    Raises:
        ValueError: if they are not 2-D or hold NaN or infinite values.
    """
    matrix = torch.as_tensor(embeddings).detach().to("cpu", torch.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected (n, dim) embeddings, got shape {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ValueError("the model produced NaN or infinite embeddings")
    return F.normalize(matrix, dim=1) if similarity == "cosine" else matrix


def score_function(similarity: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Return ``(queries (b, dim), docs (c, dim)) -> (b, c)`` scores for prepared embeddings, higher is better.

    Raises:
        ValueError: for an unknown similarity name.
    """
    if similarity in ("cosine", "dot"):
        return lambda queries, docs: queries @ docs.T
    if similarity in ("euclidean", "manhattan"):
        p = 2.0 if similarity == "euclidean" else 1.0
        return lambda queries, docs: -torch.cdist(queries, docs, p=p)
    raise ValueError(f"unknown similarity {similarity!r}; supported: cosine, dot, euclidean, manhattan")


def resolve_search(search: str, num_docs: int) -> str:
    """Return the dense search used: ``exact``, ``hnsw`` or ``ivf`` (``auto``: exact up to :data:`EXACT_MAX_DOCS`).

    Raises:
        ValueError: for a kind outside :data:`SEARCH_KINDS`.
    """
    if search not in SEARCH_KINDS:
        raise ValueError(f"unknown search {search!r}; choose one of {', '.join(SEARCH_KINDS)}")
    if search == "auto":
        return "exact" if num_docs <= EXACT_MAX_DOCS else "hnsw"
    return search


def dense_candidates(
    query_emb: Tensor, doc_emb: Tensor, depth: int, similarity: str, search: str, chunk_size: int, query_batch: int
) -> Tensor:
    """Retrieve the ``depth`` best documents of every query.

    Args:
        query_emb: ``(n_queries, dim)`` prepared embeddings (see :func:`prepare_embeddings`).
        doc_emb: ``(n_docs, dim)`` prepared embeddings.
        depth: Documents per query, ``>= 1``.
        similarity: The model's similarity name.
        search: ``exact`` (chunked top-k), ``hnsw`` or ``ivf`` (faiss); resolve ``auto`` with :func:`resolve_search`.
        chunk_size: Documents per scored block (exact search).
        query_batch: Queries per scored block (exact search).

    Returns:
        ``(n_queries, min(depth, n_docs))`` int64 document rows, best first; ``-1`` pads what an approximate index
        did not find.

    Raises:
        ValueError: for a similarity faiss cannot index (manhattan) with ``hnsw``/``ivf``.
    """
    if search == "exact":
        _, rows = chunked_top_k(query_emb, doc_emb, depth, chunk_size, query_batch, score_function(similarity))
        return rows
    index, _ = create_vector_index(doc_emb.numpy(), kind=search, similarity=similarity)
    _, positions = search_vectors(index, query_emb.numpy(), depth)
    return torch.from_numpy(positions).long()


def pair_scores(query_vec: Tensor, doc_emb: Tensor, rows: Sequence[int], similarity: str) -> list[float]:
    """Score one query against chosen documents, as :func:`score_function` would (up to float rounding).

    Computed with numpy: for a few hundred rows it is some fifty times faster than torch's small-op dispatch on a
    busy CPU, and mining calls it once per query.

    Args:
        query_vec: ``(dim,)`` prepared query embedding (CPU float32).
        doc_emb: ``(n_docs, dim)`` prepared document embeddings (CPU float32).
        rows: Document rows to score.
        similarity: The model's similarity name.

    Returns:
        One score per row, in order.

    Raises:
        ValueError: for an unknown similarity name.
    """
    score_function(similarity)  # the same names, the same errors
    if not rows:
        return []
    query, docs = query_vec.numpy(), doc_emb.numpy()[list(rows)]
    if similarity in ("cosine", "dot"):
        return (docs @ query).tolist()
    order = 2 if similarity == "euclidean" else 1
    return (-np.linalg.norm(docs - query, ord=order, axis=1)).tolist()
