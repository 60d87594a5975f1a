"""Candidates for hard-negative mining: the queries mined for, dense and BM25 retrieval, their merge, the choice.

:class:`MiningInput` holds a corpus and its :class:`MiningQuery` list. :class:`CandidateRetrieval` ranks documents
for every query: dense ones from :func:`embedtune.search.top_k.dense_candidates` (exact chunked top-k search, the full
score matrix never built, or faiss for very large corpora), BM25 ones from :class:`embedtune.mining.bm25.Bm25Index`
(documents sharing a word with the query), both lists interleaved by :func:`merge_candidates`.
:func:`select_negatives` applies the exclusions, filters, rank window and sampling of
``sentence_transformers.util.mine_hard_negatives``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from embedtune.cache import EmbeddingCache
from embedtune.data.splits import normalize_query
from embedtune.mining.bm25 import Bm25Index
from embedtune.search.retrieve import encode_documents, encode_queries
from embedtune.search.top_k import dense_candidates, pair_scores, prepare_embeddings, resolve_search
from embedtune.search.vectors import similarity_metric

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

SOURCES = ("dense", "bm25")
"""Retriever names recorded in ``neg_sources``."""


@dataclass
class DenseEncoder:
    """How mining turns texts into vectors: a model's query and document encoders and its similarity function.

    Attributes:
        encode_queries: ``texts (n) -> (n, dim)`` float tensor or array, with the model's query prompt.
        encode_documents: ``texts (n) -> (n, dim)``, with the model's document prompt.
        similarity: ``"cosine"`` (rows are normalised, then compared by inner product), ``"dot"``, ``"euclidean"``
            or ``"manhattan"`` (scores are minus the distance; not searchable with faiss).
    """

    encode_queries: Callable[[list[str]], Tensor | np.ndarray]
    encode_documents: Callable[[list[str]], Tensor | np.ndarray]
    similarity: str = "cosine"


def model_encoder(
    model: SentenceTransformer,
    batch_size: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: bool | None = None,
    devices: list[str] | None = None,
    precision: str = "fp32",
) -> DenseEncoder:
    """Wrap a SentenceTransformer as a :class:`DenseEncoder` (``encode_query``/``encode_document``, cache optional).

    Args:
        model: The loaded SentenceTransformer.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        cache: An :class:`~embedtune.cache.EmbeddingCache` reusing embeddings of unchanged models, or ``None``.
        progress: Show progress bars; ``None`` shows them when stderr is a terminal.
        devices: Encode in one process per device (:func:`~embedtune.search.encoding.encoding_devices`); ``None``
            encodes in this process.
        precision: Autocast precision of encoding (:func:`~embedtune.models.precision.inference_dtype`).

    Returns:
        The encoder, with the model's ``similarity_fn_name`` (cosine when unset).
    """
    return DenseEncoder(
        encode_queries=lambda texts: encode_queries(model, texts, batch_size, progress, cache, devices, precision),
        encode_documents=lambda texts: encode_documents(model, texts, batch_size, progress, cache, devices, precision),
        similarity=getattr(model, "similarity_fn_name", None) or "cosine",
    )


def merge_candidates(dense: Sequence[int], bm25: Sequence[int]) -> list[tuple[int, tuple[str, ...]]]:
    """Interleave two ranked candidate lists (dense 0, BM25 0, dense 1, BM25 1, ...), each document once.

    Args:
        dense: Document rows from dense retrieval, best first.
        bm25: Document rows from BM25, best first.

    Returns:
        ``(row, sources)`` pairs in merged rank order; ``sources`` is ``("dense",)``, ``("bm25",)`` or
        ``("dense", "bm25")``, whichever lists hold the row. A row keeps the rank of its first appearance.
    """
    in_dense, in_bm25 = set(dense), set(bm25)
    merged: dict[int, tuple[str, ...]] = {}
    for position in range(max(len(dense), len(bm25))):
        for ranked in (dense, bm25):
            if position < len(ranked) and ranked[position] not in merged:
                row = ranked[position]
                merged[row] = tuple(
                    name for name, rows in zip(SOURCES, (in_dense, in_bm25), strict=True) if row in rows
                )
    return list(merged.items())


@dataclass
class DropCounts:
    """Candidates set aside while choosing negatives, by the first reason that applied.

    Attributes:
        positive: Known positives (by id or by normalised text).
        query: Documents whose text is the query itself.
        duplicate: Repeats of a text already kept for the same query.
        margin: Scoring above ``positive - margin``.
        relative_margin: Scoring above ``positive - |positive| * relative_margin``.
        max_score: Scoring above ``max_score``.
    """

    positive: int = 0
    query: int = 0
    duplicate: int = 0
    margin: int = 0
    relative_margin: int = 0
    max_score: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counts by reason."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Candidate:
    """One retrieved document for a query: its corpus row, its score and the retrievers that found it."""

    row: int
    score: float
    sources: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class QueryExclusions:
    """What must never be a negative of a query: its known positives (ids, normalised texts) and its own text."""

    ids: frozenset[str]
    texts: frozenset[str]
    query: str


class CandidateRetrieval:
    """The ranked candidates of every query: dense search results and embeddings, and/or a BM25 index.

    Built once per corpus and query list by :meth:`build`; :meth:`candidates` then serves one query at a time.
    """

    def __init__(self, depth: int, search: str | None, similarity: str | None) -> None:
        self.depth, self.search, self.similarity = depth, search, similarity
        self.index: Bm25Index | None = None
        self.dense_rows: Tensor | None = None
        self.query_emb: Tensor | None = None
        self.doc_emb: Tensor | None = None

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        query_texts: Sequence[str],
        depth: int,
        retriever: str,
        encoder: DenseEncoder | None,
        search: str = "auto",
        chunk_size: int = 50_000,
        query_batch_size: int = 1024,
    ) -> CandidateRetrieval:
        """Encode and search (dense), and/or index the corpus (BM25).

        Args:
            texts: The ``n_docs`` corpus texts.
            query_texts: The ``n_queries`` query texts.
            depth: Documents retrieved per query and retriever (capped at ``n_docs``).
            retriever: ``dense``, ``bm25`` or ``both``.
            encoder: The dense model; required unless ``retriever`` is ``bm25``.
            search: Dense search kind (:func:`~embedtune.search.top_k.resolve_search`).
            chunk_size: Documents per scored block of exact search.
            query_batch_size: Queries per scored block of exact search.

        Returns:
            The retrieval, with ``search`` resolved (``None`` for BM25 alone).

        Raises:
            ValueError: without an encoder for dense retrieval, for a similarity faiss cannot search (checked before
                anything is encoded), or for NaN embeddings.
        """
        dense, lexical = retriever in ("dense", "both"), retriever in ("bm25", "both")
        if dense and encoder is None:
            raise ValueError(f"--retriever {retriever} needs a dense model")
        depth = min(depth, len(texts))
        resolved = resolve_search(search, len(texts)) if dense else None
        retrieval = cls(depth, resolved, encoder.similarity if dense else None)
        if dense:
            if resolved != "exact":
                similarity_metric(encoder.similarity)
            retrieval.doc_emb = prepare_embeddings(encoder.encode_documents(list(texts)), encoder.similarity)
            retrieval.query_emb = prepare_embeddings(encoder.encode_queries(list(query_texts)), encoder.similarity)
            retrieval.dense_rows = dense_candidates(
                retrieval.query_emb,
                retrieval.doc_emb,
                depth,
                encoder.similarity,
                resolved,
                chunk_size,
                query_batch_size,
            )
        if lexical:
            retrieval.index = Bm25Index(texts)
        return retrieval

    def candidates(self, number: int, query: str, pos_rows: Sequence[int]) -> tuple[list[Candidate], list[float]]:
        """Return one query's ranked candidates and its positives' scores.

        Args:
            number: The query's position in ``query_texts``.
            query: Its text.
            pos_rows: Corpus rows of its positives.

        Returns:
            ``(candidates, pos_scores)``: candidates best first (merged order for ``both``) with their dense score
            (BM25 score for BM25 alone), and one score per positive row on the same scale.
        """
        if self.dense_rows is None:
            rows, scores, pos_scores = self.index.search(query, self.depth, pos_rows)
            return [Candidate(row, score, ("bm25",)) for row, score in zip(rows, scores, strict=True)], pos_scores
        ranked = [row for row in self.dense_rows[number].tolist() if row >= 0]
        if self.index is not None:
            merged = merge_candidates(ranked, self.index.search(query, self.depth)[0])
        else:
            merged = [(row, ("dense",)) for row in ranked]
        rows = [row for row, _ in merged]
        scores = pair_scores(self.query_emb[number], self.doc_emb, rows + list(pos_rows), self.similarity)
        ranked_scores = scores[: len(rows)]
        candidates = [
            Candidate(row, score, sources) for (row, sources), score in zip(merged, ranked_scores, strict=True)
        ]
        return candidates, scores[len(rows) :]


@dataclass(frozen=True)
class MiningQuery:
    """One query to mine for: its text, positives (texts, ids, corpus rows) and what may never be its negative."""

    query_id: str
    text: str
    pos: tuple[str, ...]
    pos_ids: tuple[str, ...]
    pos_rows: tuple[int, ...]
    exclusions: QueryExclusions
    phase: str | None = None


@dataclass
class MiningInput:
    """A corpus and the queries to mine negatives for.

    Attributes:
        doc_ids: ``n_docs`` document ids, by corpus row.
        texts: ``n_docs`` document texts, by corpus row.
        queries: The queries, each with at least one positive in the corpus.
        source: Where the data came from, in words.
        skipped_queries: Judged queries left out for lack of a relevant document.
    """

    doc_ids: list[str]
    texts: list[str]
    queries: list[MiningQuery]
    source: str
    skipped_queries: int = 0


def build_queries(drafts: Sequence[tuple]) -> list[MiningQuery]:
    """Build the queries to mine for; queries with the same normalised text share their positives as exclusions.

    Args:
        drafts: ``(query_id, text, pos, pos_ids, pos_rows, phase)`` per query.

    Returns:
        One :class:`MiningQuery` per draft, in order.
    """
    ids: dict[str, set[str]] = {}
    texts: dict[str, set[str]] = {}
    for _, text, pos, pos_ids, _, _ in drafts:
        key = normalize_query(text)
        ids.setdefault(key, set()).update(pos_ids)
        texts.setdefault(key, set()).update(normalize_query(passage) for passage in pos)
    queries = []
    for query_id, text, pos, pos_ids, rows, phase in drafts:
        key = normalize_query(text)
        exclusions = QueryExclusions(frozenset(ids[key]), frozenset(texts[key]), key)
        queries.append(MiningQuery(query_id, text, pos, pos_ids, rows, exclusions, phase))
    return queries


def select_negatives(
    candidates: Sequence[Candidate],
    doc_ids: Sequence[str],
    texts: Sequence[str],
    exclusions: QueryExclusions,
    positive_score: float,
    *,
    range_min: int,
    range_max: int,
    num_negatives: int,
    sampling_strategy: str,
    margin: float | None,
    relative_margin: float | None,
    max_score: float | None,
    rng: random.Random,
    drops: DropCounts,
) -> list[Candidate]:
    """Choose a query's hard negatives from its ranked candidates, as ``mine_hard_negatives`` does.

    Candidates are set aside, in this order, when they are a known positive (document id or normalised text), the
    query itself, a repeat of a text already kept, or score above ``positive_score - margin``, above
    ``positive_score - |positive_score| * relative_margin`` (``positive x (1 - relative_margin)`` for a positive
    score >= 0) or above ``max_score``. Ranks are 0-based among the candidates left, and the window
    ``[range_min, range_max)`` of them is sampled.

    Args:
        candidates: The query's candidates, best first.
        doc_ids: Corpus document ids by row.
        texts: Corpus texts by row.
        exclusions: The query's positives and own text.
        positive_score: The score the margins are measured from.
        range_min: First rank kept.
        range_max: Rank after the last one kept.
        num_negatives: Most negatives returned.
        sampling_strategy: ``"top"`` (the first ones of the window) or ``"random"`` (a sample drawn with ``rng``).
        margin: Absolute margin, or ``None``.
        relative_margin: Relative margin, or ``None``.
        max_score: Highest score kept, or ``None``.
        rng: Random source of ``"random"`` sampling.
        drops: Counters increased for every candidate set aside.

    Returns:
        At most ``num_negatives`` candidates, in rank order.
    """
    kept: list[Candidate] = []
    kept_texts: set[str] = set()
    for candidate in candidates:
        normalized = normalize_query(texts[candidate.row])
        reason = _drop_reason(candidate.score, positive_score, margin, relative_margin, max_score)
        if doc_ids[candidate.row] in exclusions.ids or normalized in exclusions.texts:
            drops.positive += 1
        elif normalized == exclusions.query:
            drops.query += 1
        elif normalized in kept_texts:
            drops.duplicate += 1
        elif reason is not None:
            setattr(drops, reason, getattr(drops, reason) + 1)
        else:
            kept.append(candidate)
            kept_texts.add(normalized)
    window = kept[range_min:range_max]
    if sampling_strategy == "top" or len(window) <= num_negatives:
        return window[:num_negatives]
    chosen = sorted(rng.sample(range(len(window)), num_negatives))
    return [window[position] for position in chosen]


def _drop_reason(
    score: float, positive: float, margin: float | None, relative_margin: float | None, max_score: float | None
) -> str | None:
    """Name the first score filter a candidate fails (a :class:`DropCounts` field), or ``None``."""
    if margin is not None and score > positive - margin:
        return "margin"
    if relative_margin is not None and score > positive - abs(positive) * relative_margin:
        return "relative_margin"
    if max_score is not None and score > max_score:
        return "max_score"
    return None
