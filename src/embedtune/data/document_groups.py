"""Carving by document (``data.test_split_by``, ``data.dev_split_by``): no held-out query shares a training positive.

Queries are linked when they share a relevant document (score > 0), by id or by text (two documents with the same
text are one document here), and when their texts are equal once normalised. Each connected group of linked queries
is carved whole or not at all, so no carved query has a relevant document that is relevant to a query left to train
on: its relevant documents are never training positives. No query is dropped; as whole groups move, the carved share
can differ a little from the fraction asked for.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from embedtune.data.pairs import RELEVANT_LABEL, PairExample
from embedtune.data.splits import normalize_query
from embedtune.data.types import EvalSplit, Qrels, TrainingExample


def document_groups(queries: Mapping[str, str], qrels: Qrels, corpus: Mapping[str, str]) -> list[list[str]]:
    """Group query ids into connected groups linked by shared relevant documents (by id or text) or equal texts.

    Args:
        queries: Query id -> text, the queries to group.
        qrels: Their judgements; only scores > 0 link queries (other queries' judgements are ignored).
        corpus: Document id -> text, to link two documents with the same text.

    Returns:
        The groups, each a sorted list of query ids, sorted by their first id (independent of input order).
    """
    parent = {query_id: query_id for query_id in queries}

    def root(query_id: str) -> str:
        while parent[query_id] != query_id:
            parent[query_id] = parent[parent[query_id]]
            query_id = parent[query_id]
        return query_id

    first_holder: dict[tuple[str, str], str] = {}
    for query_id in sorted(queries):
        keys = [("query", normalize_query(queries[query_id]))]
        for doc_id, score in qrels.get(query_id, {}).items():
            if score > 0:
                keys += [("id", doc_id), ("text", normalize_query(corpus.get(doc_id, "")) or doc_id)]
        for key in keys:
            holder = first_holder.setdefault(key, query_id)
            parent[root(query_id)] = root(holder)
    groups: dict[str, list[str]] = {}
    for query_id in sorted(queries):
        groups.setdefault(root(query_id), []).append(query_id)
    return sorted(groups.values(), key=lambda group: group[0])


def carve_groups(
    groups: Sequence[Sequence[str]], sizes: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Pick whole groups to carve out, about ``fraction`` of the total size, deterministically.

    The groups (in the given order) are shuffled with ``random.Random(seed)`` and taken in that order whenever they
    still fit in ``max(1, round(total * fraction))`` (capped at ``total - 1``); when none fits, the first smallest
    group in that order is taken. At least one group always stays behind.

    Args:
        groups: The groups, in a deterministic order (see :func:`document_groups`).
        sizes: Each group's size (e.g. its distinct query texts), > 0.
        fraction: Share of the total size to carve, strictly between 0 and 1.
        seed: Seed of the shuffle.

    Returns:
        ``(rest, carved)``: indices into ``groups``, each sorted.

    Raises:
        ValueError: if there are fewer than 2 groups (nothing could stay behind).
    """
    if len(groups) < 2:
        raise ValueError(f"{len(groups)} group(s): at least 2 are needed to carve one out")
    total = sum(sizes)
    target = min(max(1, round(total * fraction)), total - 1)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    carved: list[int] = []
    taken = 0
    for index in order:
        if taken + sizes[index] <= target:
            carved.append(index)
            taken += sizes[index]
    if not carved:
        carved = [min(order, key=lambda index: sizes[index])]
    chosen = set(carved)
    return [index for index in range(len(groups)) if index not in chosen], sorted(carved)


def relevant_texts(splits: Iterable[EvalSplit]) -> set[str]:
    """Return the normalised texts of every relevant document (score > 0) of the splits' queries.

    Args:
        splits: Carved evaluation splits.

    Returns:
        Normalised document texts (:func:`~embedtune.data.splits.normalize_query`).
    """
    return {
        normalize_query(split.corpus[doc_id])
        for split in splits
        for judgements in split.qrels.values()
        for doc_id, score in judgements.items()
        if score > 0 and doc_id in split.corpus
    }


def without_relevant_positives(
    examples: Sequence[TrainingExample], held_out_docs: set[str]
) -> tuple[list[TrainingExample], int]:
    """Drop the training examples with a positive whose normalised text is in ``held_out_docs``.

    Carving by document already keeps such positives out of training; this also holds when the training examples
    do not come from the pool that was carved (a training file beside a folder's train qrels).

    Args:
        examples: Training examples.
        held_out_docs: Normalised texts of the held-out queries' relevant documents (see :func:`relevant_texts`).

    Returns:
        ``(kept examples, number dropped)``.
    """
    if not held_out_docs:
        return list(examples), 0
    kept = [ex for ex in examples if not any(normalize_query(text) in held_out_docs for text in ex.pos)]
    return kept, len(examples) - len(kept)


def without_relevant_pairs(pairs: Sequence[PairExample], held_out_docs: set[str]) -> list[PairExample]:
    """Drop the relevant training pairs (label >= 0.5) whose ``text2`` is in ``held_out_docs`` (see above)."""
    return [pair for pair in pairs if pair.label < RELEVANT_LABEL or normalize_query(pair.text2) not in held_out_docs]
