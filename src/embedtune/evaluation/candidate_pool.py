"""A fixed, hard candidate pool for dev evaluation: cheap to rank at every epoch, still hard to rank well.

Ranking the whole corpus at every dev evaluation costs minutes on a CPU; ranking the judged documents plus a random
sample is cheap but easy (random documents are rarely close to a query), which flatters every checkpoint alike and
blunts selection. The pool here is chosen once, before training, from the *base* model's ranking: every judged
document, each dev query's top-k under the base model (the documents a checkpoint must learn to push down), and a
seeded random sample up to the size limit (so documents the base model missed can still rise).
"""

from __future__ import annotations

import random

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import cos_sim

from embedtune.cache import EmbeddingCache
from embedtune.data.types import EvalSplit, Qrels
from embedtune.evaluation.retrieval_evaluator import subsample_corpus
from embedtune.search.retrieve import QUERY_BATCH, encode_documents, encode_queries
from embedtune.search.top_k import chunked_top_k


def hard_candidate_pool(
    corpus: dict[str, str],
    qrels: Qrels,
    query_ids: list[str],
    query_embeddings: torch.Tensor,
    doc_ids: list[str],
    doc_embeddings: torch.Tensor,
    max_docs: int,
    top_k: int = 20,
    seed: int = 0,
) -> dict[str, str]:
    """Pick the dev candidate pool: judged documents, then the base model's top-k per query, then random ones.

    Args:
        corpus: Document id -> text (the whole corpus).
        qrels: Dev judgements; every judged document in ``corpus`` is kept.
        query_ids: Dev query ids, row order of ``query_embeddings``.
        query_embeddings: ``(num_queries, dim)`` base-model embeddings.
        doc_ids: Document ids, row order of ``doc_embeddings`` (a subset of ``corpus`` or all of it).
        doc_embeddings: ``(num_docs, dim)`` base-model embeddings.
        max_docs: Pool size; when the judged documents and top-k lists exceed it, the top-k lists are cut
            rank by rank (every query's rank 1 before any query's rank 2) so each query keeps its hardest ones.
        top_k: Base-model candidates per query.
        seed: Seed of the random fill.

    Returns:
        Document id -> text, in corpus order, ``min(max_docs, len(corpus))`` documents (more only when the judged
        documents alone exceed ``max_docs``).

    Raises:
        ValueError: if ``max_docs`` or ``top_k`` is not positive, or the embeddings and ids disagree in length.
    """
    if max_docs < 1 or top_k < 1:
        raise ValueError(f"max_docs and top_k must be positive, got {max_docs} and {top_k}")
    if len(query_ids) != len(query_embeddings) or len(doc_ids) != len(doc_embeddings):
        raise ValueError("ids and embeddings must have the same length")
    keep = {doc_id for judged in qrels.values() for doc_id in judged if doc_id in corpus}
    _, hits = chunked_top_k(query_embeddings, doc_embeddings, top_k, query_batch_size=QUERY_BATCH, score_fn=cos_sim)
    hits = hits.tolist()
    for rank in range(top_k):
        for query_hits in hits:
            if len(keep) >= max_docs:
                break
            if rank < len(query_hits):
                keep.add(doc_ids[query_hits[rank]])
    others = sorted(set(corpus) - keep)
    fill = max(0, min(len(others), max_docs - len(keep)))
    keep |= set(random.Random(seed).sample(others, fill))
    return {doc_id: text for doc_id, text in corpus.items() if doc_id in keep}


def dev_candidate_pool(
    split: EvalSplit,
    max_docs: int | None,
    strategy: str,
    model: SentenceTransformer,
    batch_size: int | None = None,
    cache: EmbeddingCache | None = None,
    seed: int = 0,
    precision: str = "fp32",
) -> dict[str, str]:
    """Choose the documents dev evaluation ranks during training.

    Args:
        split: The dev split (its corpus, queries and judgements).
        max_docs: Pool size; ``None`` (or a size >= the corpus) keeps the whole corpus.
        strategy: ``"base_top_k"`` (:func:`hard_candidate_pool` with ``model``) or ``"random"`` (judged documents
            plus a seeded random sample).
        model: The base model, before any training step.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        cache: Embedding cache (the base model's corpus embeddings are usually there from the test evaluation).
        seed: Seed of the random part.
        precision: Autocast precision of encoding (see :func:`~embedtune.models.precision.inference_dtype`).

    Returns:
        Document id -> text.
    """
    if max_docs is None or max_docs >= len(split.corpus) or strategy == "random":
        return subsample_corpus(split.corpus, split.qrels, max_docs, seed=seed)
    doc_ids, query_ids = list(split.corpus), list(split.queries)
    docs = encode_documents(model, [split.corpus[d] for d in doc_ids], batch_size, cache=cache, precision=precision)
    queries = encode_queries(
        model, [split.queries[q] for q in query_ids], batch_size, cache=cache, precision=precision
    )
    return hard_candidate_pool(split.corpus, split.qrels, query_ids, queries, doc_ids, docs, max_docs, seed=seed)
