"""In-memory forms of the data embedtune reads: retrieval sets and training examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Qrels = dict[str, dict[str, int]]
"""Graded relevance judgements: query id -> document id -> relevance (int, > 0 means relevant)."""


@dataclass
class RetrievalSet:
    """A corpus, its queries and relevance judgements per split (the BEIR layout, in memory).

    Attributes:
        corpus: Document id -> document text (BEIR ``title`` and ``text`` joined by a space when a title exists).
        queries: Query id -> query text.
        qrels: Split name (``"train"``, ``"dev"``, ``"test"``) -> :data:`Qrels` for that split.
        source: Folder the set was read from, or ``None`` when built in memory.
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, Qrels]
    source: Path | None = None

    def split_queries(self, split: str) -> dict[str, str]:
        """Return the queries judged in ``split``: query id -> text.

        Raises:
            KeyError: if the set has no qrels for ``split``.
        """
        return {qid: self.queries[qid] for qid in self.qrels[split]}


@dataclass(frozen=True)
class TrainingExample:
    """One FlagEmbedding-style training record: a query, its positives and optional weighted hard negatives.

    Attributes:
        query: Query text.
        pos: Positive passages (at least one).
        neg: Hard-negative passages (may be empty).
        neg_weights: One weight per entry of ``neg`` (finite, > 0); it multiplies ``exp(sim)`` of that negative in
            the InfoNCE denominator. Defaults to all ones.
        pos_ids: Document ids of ``pos`` (same order) when the data has them (BEIR qrels, mined files), else empty;
            they let the loss recognise a relevant document in the batch by id as well as by text.
        neg_ids: Document ids of ``neg`` (same order) when known, else empty.
        pos_scores: One retriever score per entry of ``pos`` (as ``embedtune mine`` measured it), else empty.
            Not part of equality: two examples with the same texts are the same example.
        neg_scores: One retriever score per entry of ``neg``, else empty. Not part of equality.
        neg_sources: Per entry of ``neg``, the retrievers that found it (``("dense",)``, ``("bm25",)`` or
            ``("dense", "bm25")``), else empty. Not part of equality.
        query_id: The query's id in its data set, when known.
        phase: A free-form label of the record (e.g. a curriculum phase), when given.
    """

    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...] = ()
    neg_weights: tuple[float, ...] = field(default=())
    pos_ids: tuple[str, ...] = ()
    neg_ids: tuple[str, ...] = ()
    pos_scores: tuple[float, ...] = field(default=(), compare=False)
    neg_scores: tuple[float, ...] = field(default=(), compare=False)
    neg_sources: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    query_id: str | None = None
    phase: str | None = None

    def __post_init__(self) -> None:
        if not self.neg_weights and self.neg:
            object.__setattr__(self, "neg_weights", tuple(1.0 for _ in self.neg))


@dataclass
class EvalSplit:
    """One evaluation split of a run, ready to rank: its own corpus, its judged queries and their judgements.

    Attributes:
        name: ``"dev"`` (checkpoint selection) or ``"test"`` (held out, reported); a custom ``data.eval_split`` name
            when the data set ships one.
        corpus: Document id -> text, the documents ranked for this split.
        queries: Query id -> text: exactly the judged queries of ``qrels``.
        qrels: The split's judgements; at least one query has a relevant document (score > 0).
        source: Where the split comes from, in words: a qrels file, or e.g.
            ``"carved from /x/train.jsonl (10 % of 200 queries, seed 42)"``.
    """

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels
    source: str
