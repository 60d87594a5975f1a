"""Vector indexes over embeddings with faiss: exact (flat) or approximate (HNSW, IVF) top-k search.

This module knows nothing about models or files: it turns an ``(n, dim)`` float32 matrix into a faiss index and
searches it. Scores are always "higher is more similar": inner products for ``cosine``/``dot`` models (cosine when
the vectors are unit length) and minus the Euclidean distance for ``euclidean`` models, as sentence-transformers'
own ``model.similarity`` reports them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EXACT_MAX_DOCS = 1_000_000
"""Largest corpus that ``auto`` searches exactly, everywhere (mining, evaluation, the dev pool, saved indexes); above
it ``auto`` builds a faiss HNSW graph.

Exact search costs ``n_queries x n_docs x dim`` multiply-adds in bounded-memory blocks: about 2 s per 1,000 queries
and 100,000 documents of 384 dimensions on two CPU cores, so about 40-100 ms for one query against a million
documents; building an HNSW graph of a million vectors takes longer than many such searches, and it is approximate.
"""

INDEX_KINDS = ("auto", "exact", "hnsw", "ivf")
"""Accepted ``kind`` values; ``auto`` resolves to ``exact`` or ``hnsw`` by corpus size (see :data:`EXACT_MAX_DOCS`)."""

HNSW_M = 32
"""Neighbours per node in the HNSW graph (memory: about ``2 * M * 4`` bytes per vector on top of the vectors)."""
HNSW_EF_CONSTRUCTION = 80
"""Candidate list size while building the HNSW graph: higher builds slower and recalls more."""
HNSW_EF_SEARCH = 128
"""Candidate list size while searching the HNSW graph (raised to ``top_k`` when that is larger)."""

SIMILARITY_METRICS = {"cosine": "inner_product", "dot": "inner_product", "euclidean": "l2"}
"""sentence-transformers similarity function name -> faiss metric. ``manhattan`` models are not supported."""


def import_faiss() -> Any:
    """Import faiss, with an installation hint when it is missing.

    Raises:
        ImportError: if neither ``faiss-cpu`` nor ``faiss-gpu`` is installed.
    """
    try:
        # faiss: only when a vector index is built or searched
        import faiss
    except ImportError as error:
        raise ImportError("search indexes need faiss: pip install faiss-cpu") from error
    return faiss


def resolve_kind(kind: str, count: int) -> str:
    """Turn a requested index kind into the one built.

    Args:
        kind: One of :data:`INDEX_KINDS`.
        count: Number of vectors to index.

    Returns:
        ``"exact"``, ``"hnsw"`` or ``"ivf"``; ``"auto"`` gives ``"exact"`` up to :data:`EXACT_MAX_DOCS` vectors and
        ``"hnsw"`` above.

    Raises:
        ValueError: if ``kind`` is not one of :data:`INDEX_KINDS`.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        return "exact" if count <= EXACT_MAX_DOCS else "hnsw"
    return kind


def default_ivf_lists(count: int) -> int:
    """Return the number of IVF cells for ``count`` vectors: ``sqrt(count)``, with >= 39 training vectors per cell.

    ``sqrt(count)`` (1,000 cells for a million documents) keeps k-means training to seconds on a CPU; with
    ``nprobe = ceil(sqrt(nlist))`` a query scans about ``count ** 0.75`` vectors (3 % of a million).
    """
    return max(1, min(round(math.sqrt(count)), count // 39))


def similarity_metric(similarity: str) -> str:
    """Return the faiss metric (``"inner_product"`` or ``"l2"``) for a sentence-transformers similarity name.

    Raises:
        ValueError: for a similarity faiss indexes cannot serve (e.g. ``manhattan``).
    """
    if similarity not in SIMILARITY_METRICS:
        supported = ", ".join(SIMILARITY_METRICS)
        raise ValueError(f"models with similarity {similarity!r} cannot be indexed; supported: {supported}")
    return SIMILARITY_METRICS[similarity]


def create_vector_index(
    embeddings: np.ndarray,
    kind: str = "auto",
    similarity: str = "cosine",
    *,
    hnsw_m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    ef_search: int = HNSW_EF_SEARCH,
    nlist: int | None = None,
    nprobe: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build a faiss index holding ``embeddings`` in row order (row ``i`` is found as position ``i``).

    Exact is ``IndexFlatIP`` (``IndexFlatL2`` for euclidean models); HNSW is ``IndexHNSWFlat``; IVF is
    ``IndexIVFFlat`` over a flat coarse quantizer, trained on the embeddings themselves. For ``cosine`` the rows must
    already be unit length (the inner product is then the cosine); they are not normalised here.

    Args:
        embeddings: ``(n, dim)`` float32 matrix, ``n >= 1``.
        kind: One of :data:`INDEX_KINDS`.
        similarity: ``cosine``, ``dot`` or ``euclidean`` (the model's ``similarity_fn_name``).
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW build-time candidate list size.
        ef_search: HNSW search-time candidate list size.
        nlist: IVF cells; ``None`` uses :func:`default_ivf_lists`. k-means trains on at most 256 vectors per cell.
        nprobe: IVF cells visited per query; ``None`` uses ``ceil(sqrt(nlist))``.

    Returns:
        ``(index, parameters)``: the faiss index and a JSON-ready dict of ``kind`` (resolved) and the kind's settings.

    Raises:
        ValueError: on an empty or non-2-D matrix, an unknown kind or similarity, or a non-positive setting.
    """
    faiss = import_faiss()
    vectors = as_float32_matrix(embeddings)
    count, dim = vectors.shape
    if count == 0 or dim == 0:
        raise ValueError(f"cannot index an empty matrix of shape {vectors.shape}")
    resolved = resolve_kind(kind, count)
    metric = faiss.METRIC_INNER_PRODUCT if similarity_metric(similarity) == "inner_product" else faiss.METRIC_L2
    parameters: dict[str, Any] = {"kind": resolved}
    if resolved == "exact":
        index = faiss.IndexFlatIP(dim) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
    elif resolved == "hnsw":
        _check_positive(hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        index = faiss.IndexHNSWFlat(dim, hnsw_m, metric)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        parameters.update(m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
    else:
        nlist = default_ivf_lists(count) if nlist is None else nlist
        nprobe = math.ceil(math.sqrt(nlist)) if nprobe is None else nprobe
        _check_positive(nlist=nlist, nprobe=nprobe)
        quantizer = faiss.IndexFlatIP(dim) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, min(nlist, count), metric)
        index.train(vectors)
        index.nprobe = min(nprobe, index.nlist)
        parameters.update(nlist=index.nlist, nprobe=index.nprobe)
    index.add(vectors)
    return index, parameters


def search_vectors(index: Any, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``top_k`` most similar indexed rows for every query row, best first.

    Args:
        index: A faiss index from :func:`create_vector_index` (or read back from disk).
        queries: ``(m, dim)`` float32 matrix, prepared like the indexed rows (unit length for cosine).
        top_k: Results per query, ``>= 1``; at most ``index.ntotal`` come back.

    Returns:
        ``(scores, positions)``, both ``(m, min(top_k, ntotal))``: similarity scores (higher is better: inner
        product, or minus the Euclidean distance for an L2 index) and row positions. An approximate index that
        finds fewer than ``top_k`` rows pads with position ``-1`` and score ``-inf``.

    Raises:
        ValueError: if ``top_k < 1`` or the query dimension differs from the index's.
    """
    faiss = import_faiss()
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    vectors = as_float32_matrix(queries)
    if vectors.shape[1] != index.d:
        raise ValueError(f"query embeddings have dimension {vectors.shape[1]}, the index has {index.d}")
    k = min(top_k, index.ntotal)
    if k == 0 or len(vectors) == 0:
        return np.empty((len(vectors), k), np.float32), np.empty((len(vectors), k), np.int64)
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None and hnsw.efSearch < k:  # a candidate list shorter than k would cut the results short
        scores, positions = index.search(vectors, k, params=faiss.SearchParametersHNSW(efSearch=k))
    else:
        scores, positions = index.search(vectors, k)
    if index.metric_type == faiss.METRIC_L2:
        scores = -np.sqrt(np.maximum(scores, 0))
    scores[positions < 0] = -np.inf
    return scores, positions


def as_float32_matrix(array: Any) -> np.ndarray:
    """Return ``array`` as a C-contiguous ``(n, dim)`` float32 matrix (no copy when it already is one).

    Raises:
        ValueError: if it is not 2-D or holds NaN or infinite values.
    """
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected an (n, dim) matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("embeddings hold NaN or infinite values")
    return matrix


def _check_positive(**settings: int) -> None:
    for name, value in settings.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
