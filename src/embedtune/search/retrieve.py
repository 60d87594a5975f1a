"""Encode queries and passages with their prefixes and retrieve the top-k passages per query."""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import semantic_search


def encode_texts(model: SentenceTransformer, texts: list[str], prefix: str = "", batch_size: int = 64) -> torch.Tensor:
    """Encode texts, each prepended with ``prefix`` (e.g. E5's ``"query: "``).

    Args:
        model: The embedding model.
        texts: ``n`` texts.
        prefix: String prepended to every text.
        batch_size: Texts per forward pass.

    Returns:
        ``(n, dim)`` float tensor on CPU.
    """
    embeddings = model.encode(
        texts, prompt=prefix or None, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
    )
    return embeddings.float().cpu()


def retrieve(
    model: SentenceTransformer,
    corpus: dict[str, str],
    queries: dict[str, str],
    top_k: int = 100,
    query_prefix: str = "",
    passage_prefix: str = "",
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """Rank the corpus for every query by the model's similarity function (cosine for most models).

    Args:
        model: The embedding model.
        corpus: Document id -> text (``num_docs`` entries).
        queries: Query id -> text (``num_queries`` entries).
        top_k: Documents kept per query.
        query_prefix: Prepended to every query.
        passage_prefix: Prepended to every document.
        batch_size: Texts per forward pass.

    Returns:
        The run: query id -> document id -> similarity score, ``min(top_k, num_docs)`` documents per query.
    """
    doc_ids, query_ids = list(corpus), list(queries)
    doc_embeddings = encode_texts(model, [corpus[d] for d in doc_ids], passage_prefix, batch_size)  # (docs, dim)
    query_embeddings = encode_texts(model, [queries[q] for q in query_ids], query_prefix, batch_size)  # (queries, dim)
    hits = semantic_search(query_embeddings, doc_embeddings, top_k=top_k, score_function=model.similarity)
    return {
        query_id: {doc_ids[hit["corpus_id"]]: float(hit["score"]) for hit in query_hits}
        for query_id, query_hits in zip(query_ids, hits, strict=True)
    }
