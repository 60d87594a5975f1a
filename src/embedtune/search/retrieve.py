"""Encode queries and documents with the model's prompts and retrieve the top-k documents per query."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import cos_sim

from embedtune.models.batch_size import encode_in_batches
from embedtune.models.head import apply_head, split_head
from embedtune.models.precision import inference_autocast
from embedtune.search.top_k import chunked_top_k

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache


QUERY_BATCH = 1024
"""Queries scored per block by :func:`rank` (with 50,000-document chunks: at most 205 MB of scores at once)."""


def encode_queries(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int | None = None,
    progress: bool | None = None,
    cache: EmbeddingCache | None = None,
    devices: list[str] | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Encode queries with ``model.encode_query`` (the model's ``"query"`` prompt, if any, is prepended).

    Args:
        model: The embedding model.
        texts: ``n`` query texts.
        batch_size: Texts per forward pass; ``None`` sizes it for the device
            (:func:`~embedtune.models.batch_size.encode_in_batches`).
        progress: Show a progress bar; ``None`` shows one when stderr is a terminal.
        cache: Reuse and store embeddings on disk (:class:`~embedtune.cache.EmbeddingCache`): only texts it lacks
            for this exact model are encoded. ``None`` encodes everything.
        devices: Encode in one process per device (sentence-transformers' multi-process pool, see
            :func:`~embedtune.search.encoding.encoding_devices`); ``None`` encodes in this process.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` autocast while encoding in this process
            (:func:`~embedtune.models.precision.inference_dtype`); several processes encode in fp32.

    Returns:
        ``(n, dim)`` float32 tensor on CPU.
    """
    return _encode(model, texts, "query", batch_size, progress, cache, devices, precision)


def encode_documents(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int | None = None,
    progress: bool | None = None,
    cache: EmbeddingCache | None = None,
    devices: list[str] | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Encode documents with ``model.encode_document`` (the model's ``"document"`` prompt, if any, is prepended).

    Args:
        model: The embedding model.
        texts: ``n`` document texts.
        batch_size: Texts per forward pass; ``None`` sizes it for the device
            (:func:`~embedtune.models.batch_size.encode_in_batches`).
        progress: Show a progress bar; ``None`` shows one when stderr is a terminal.
        cache: Reuse and store embeddings on disk (:class:`~embedtune.cache.EmbeddingCache`): only texts it lacks
            for this exact model are encoded. ``None`` encodes everything.
        devices: Encode in one process per device (sentence-transformers' multi-process pool, see
            :func:`~embedtune.search.encoding.encoding_devices`); ``None`` encodes in this process.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` autocast while encoding in this process
            (:func:`~embedtune.models.precision.inference_dtype`); several processes encode in fp32.

    Returns:
        ``(n, dim)`` float32 tensor on CPU.
    """
    return _encode(model, texts, "document", batch_size, progress, cache, devices, precision)


def retrieve(
    model: SentenceTransformer,
    corpus: dict[str, str],
    queries: dict[str, str],
    top_k: int = 100,
    batch_size: int | None = None,
    progress: bool | None = None,
    cache: EmbeddingCache | None = None,
    devices: list[str] | None = None,
    precision: str = "fp32",
) -> dict[str, dict[str, float]]:
    """Rank the corpus for every query by the model's similarity function (cosine for most models).

    Args:
        model: The embedding model; its saved prompts are applied to queries and documents.
        corpus: Document id -> text (``num_docs`` entries).
        queries: Query id -> text (``num_queries`` entries).
        top_k: Documents kept per query.
        batch_size: Texts per forward pass; ``None`` sizes it for the device
            (:func:`~embedtune.models.batch_size.encode_in_batches`).
        progress: Show progress bars; ``None`` shows them when stderr is a terminal.
        cache: On-disk embedding cache (see :func:`encode_documents`); ``None`` encodes everything.
        devices: One encoding process per device (see :func:`encode_documents`); ``None``: this process.
        precision: Autocast precision of encoding (see :func:`encode_documents`).

    Returns:
        The run: query id -> document id -> similarity score, ``min(top_k, num_docs)`` documents per query.
    """
    doc_ids, query_ids = list(corpus), list(queries)
    doc_texts, query_texts = [corpus[d] for d in doc_ids], [queries[q] for q in query_ids]
    doc_embeddings = encode_documents(model, doc_texts, batch_size, progress, cache, devices, precision)  # (docs, dim)
    query_embeddings = encode_queries(model, query_texts, batch_size, progress, cache, devices, precision)
    return rank(query_embeddings, doc_embeddings, query_ids, doc_ids, top_k, model.similarity)


def rank(
    query_embeddings: torch.Tensor,
    doc_embeddings: torch.Tensor,
    query_ids: list[str],
    doc_ids: list[str],
    top_k: int,
    score_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cos_sim,
) -> dict[str, dict[str, float]]:
    """Rank documents for queries from their embeddings, exactly (:func:`~embedtune.search.top_k.chunked_top_k`).

    Args:
        query_embeddings: ``(num_queries, dim)``.
        doc_embeddings: ``(num_docs, dim)``.
        query_ids: ``num_queries`` ids, row order.
        doc_ids: ``num_docs`` ids, row order.
        top_k: Documents kept per query.
        score_function: ``(a, b) -> (len(a), len(b))`` similarity; cosine by default.

    Returns:
        The run: query id -> document id -> score, ``min(top_k, num_docs)`` documents per query.
    """
    scores, rows = chunked_top_k(
        query_embeddings, doc_embeddings, top_k, query_batch_size=QUERY_BATCH, score_fn=score_function
    )
    return {
        query_id: {doc_ids[row]: score for row, score in zip(query_rows, query_scores, strict=True)}
        for query_id, query_rows, query_scores in zip(query_ids, rows.tolist(), scores.tolist(), strict=True)
    }


def _encode(
    model: SentenceTransformer,
    texts: list[str],
    role: str,
    batch_size: int | None,
    progress: bool | None,
    cache: EmbeddingCache | None,
    devices: list[str] | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Encode with the model's prompt for ``role``; through ``cache`` when given, on ``devices`` when given.

    A model ending in a head (:func:`~embedtune.models.head.split_head`) encodes (and caches) its encoder's embeddings
    and applies the head to them, in the head's own dtype whatever ``precision`` (with or without a cache, so every
    path scores a head model alike): a frozen encoder's embeddings are the base model's, already in the cache. The
    autocast context covers the cache lookup too, so the cache's fingerprint tells embeddings of each precision apart.
    """
    device = getattr(model, "device", None)  # None: a stand-in that answers from stored embeddings
    with inference_autocast(precision if devices is None and device is not None else "fp32", device or "cpu"):
        # split only where it changes something: the cache keys the encoder part, and under autocast the head must
        # still run in its own dtype; a plain fp32 encode (a served query) skips building the encoder part
        split = isinstance(model, SentenceTransformer) and (cache is not None or precision != "fp32")
        encoder, head = split_head(model) if split else (model, [])
        if head:
            embeddings = _encode(encoder, texts, role, batch_size, progress, cache, devices, precision)
            return _truncated(apply_head(head, embeddings), model.truncate_dim)
        show = sys.stderr.isatty() if progress is None else progress
        encode = model.encode_query if role == "query" else model.encode_document

        def encode_all(batch: list[str]) -> torch.Tensor:
            def encode_at(size: int) -> torch.Tensor:
                options = {"batch_size": size, "convert_to_tensor": True, "show_progress_bar": show}
                return encode(batch, **options, device=devices).float().cpu()

            return encode_in_batches(model, batch_size, encode_at)

        return encode_all(texts) if cache is None else cache.get_or_encode(model, texts, role, encode_all)


def _truncated(embeddings: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Keep the first ``dim`` coordinates, as ``SentenceTransformer.encode`` does for a model's ``truncate_dim``."""
    return embeddings if dim is None else embeddings[:, :dim]
