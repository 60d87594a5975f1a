"""Building blocks of ``embedtune data check``: length summaries, warnings, duplicates and leaks.

The token counters live in :mod:`embedtune.data.check_tokens`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedtune.data.check_tokens import DEFAULT_MODEL as DEFAULT_MODEL
from embedtune.data.check_tokens import WHITESPACE as WHITESPACE
from embedtune.data.splits import TRAIN_SPLIT, normalize_query
from embedtune.data.types import RetrievalSet
from embedtune.errors import shorten

MAX_EXAMPLES = 5
"""Most examples a warning shows."""
EXAMPLE_TEXT_CHARS = 60
"""Longest text quoted in an example."""


@dataclass(frozen=True)
class CheckWarning:
    """One kind of problem found in a data set.

    Attributes:
        code: Stable identifier of the kind, e.g. ``"duplicate_documents"`` (for scripts reading ``--json``).
        message: What is wrong and how often, e.g. ``"query ids judged in several splits: 2"``.
        count: How many times it occurs (the unit is given in ``message``).
        examples: Up to :data:`MAX_EXAMPLES` occurrences, naming ids or line numbers.
    """

    code: str
    message: str
    count: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class LengthStats:
    """Token-length summary of a group of texts.

    Attributes:
        texts: Number of texts measured.
        mean: Mean length in tokens.
        median: Median length in tokens.
        p95: 95th percentile of the length in tokens (linear interpolation).
        max: Longest text, in tokens.
        truncated: Texts longer than the counter's ``max_seq_length`` (they would be truncated), or ``None`` when no
            limit is known.
    """

    texts: int
    mean: float
    median: float
    p95: float
    max: int
    truncated: int | None


def length_stats(lengths: Sequence[int], max_seq_length: int | None) -> LengthStats:
    """Summarise token lengths.

    Args:
        lengths: Length in tokens of each text; at least one.
        max_seq_length: Limit above which a text is truncated, or ``None``.

    Returns:
        Mean, median, 95th percentile and maximum, and how many exceed the limit.

    Raises:
        ValueError: if ``lengths`` is empty.
    """
    if not lengths:
        raise ValueError("no texts to measure")
    values = np.asarray(lengths, dtype=np.int64)
    truncated = None if max_seq_length is None else int((values > max_seq_length).sum())
    return LengthStats(
        texts=len(values),
        mean=round(float(values.mean()), 2),
        median=float(np.median(values)),
        p95=round(float(np.percentile(values, 95)), 2),
        max=int(values.max()),
        truncated=truncated,
    )


def truncation_warning(
    code: str, what: str, labels: Sequence[str], lengths: Sequence[int], max_seq_length: int | None
) -> CheckWarning | None:
    """Return a warning listing the texts longer than ``max_seq_length``, or ``None`` when there are none.

    Args:
        code: The warning's code, e.g. ``"long_documents"``.
        what: Plural noun of the texts, e.g. ``"documents"``.
        labels: One label per text (an id or ``"line 3 pos[0]"``), same order as ``lengths``.
        lengths: Token count of each text.
        max_seq_length: The limit; ``None`` gives no warning.
    """
    if max_seq_length is None:
        return None
    longer = [(label, length) for label, length in zip(labels, lengths, strict=True) if length > max_seq_length]
    if not longer:
        return None
    longest = sorted(longer, key=lambda item: -item[1])[:MAX_EXAMPLES]
    message = f"{what} longer than max_seq_length {max_seq_length} (truncated when encoded): {len(longer)}"
    return CheckWarning(code, message, len(longer), tuple(f"{label}: {length} tokens" for label, length in longest))


def duplicate_groups(items: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Group labels whose texts are equal once normalised.

    Args:
        items: ``(label, text)`` pairs, e.g. ``(document id, document text)``.

    Returns:
        ``(first text, labels)`` for every normalised text held by two labels or more, in order of first
        appearance; labels in input order.
    """
    groups: dict[str, tuple[str, list[str]]] = {}
    for label, text in items:
        groups.setdefault(normalize_query(text), (text, []))[1].append(label)
    return [(text, labels) for text, labels in groups.values() if len(labels) > 1]


def duplicate_warning(code: str, what: str, holders: str, groups: list[tuple[str, list[str]]]) -> CheckWarning | None:
    """Turn :func:`duplicate_groups` into a warning, or ``None`` when there are no groups.

    Args:
        code: The warning's code.
        what: What the groups are, e.g. ``"document texts under several ids"``.
        holders: Plural noun of what carries the texts, e.g. ``"ids"`` or ``"records"``.
        groups: The groups.

    Returns:
        A warning counting the groups: ``"document texts under several ids: 2 (5 ids in all)"``.
    """
    if not groups:
        return None
    message = f"{what}: {len(groups)} ({sum(len(labels) for _, labels in groups)} {holders} in all)"
    return CheckWarning(code, message, len(groups), tuple(group_example(text, labels) for text, labels in groups))


def group_example(text: str, labels: Sequence[str]) -> str:
    """Describe one group of labels sharing a text: ``"d1, d7: 'the apple...'"`` (at most 5 labels shown)."""
    shown = ", ".join(labels[:MAX_EXAMPLES]) + (f", ... ({len(labels)} in all)" if len(labels) > MAX_EXAMPLES else "")
    return f"{shown}: {quote(text)}"


def quote(text: str) -> str:
    """Quote a text for an example, cut to about :data:`EXAMPLE_TEXT_CHARS` characters, on one line."""
    return shorten(" ".join(text.split()), EXAMPLE_TEXT_CHARS)


def make_warning(code: str, what: str, examples: Sequence[str]) -> CheckWarning | None:
    """Return a warning counting ``examples`` (one per occurrence) and showing the first :data:`MAX_EXAMPLES`.

    Args:
        code: The warning's code.
        what: What was found, e.g. ``"query ids judged in several splits"``; the message is ``"{what}: {count}"``.
        examples: One entry per occurrence.

    Returns:
        The warning, or ``None`` when ``examples`` is empty.
    """
    if not examples:
        return None
    return CheckWarning(code, f"{what}: {len(examples)}", len(examples), tuple(examples[:MAX_EXAMPLES]))


def spread(values: Sequence[int]) -> dict[str, float | int]:
    """Return ``{"mean", "min", "max"}`` of per-record counts (mean rounded to 2 decimals); zeros when empty."""
    if not values:
        return {"mean": 0.0, "min": 0, "max": 0}
    return {"mean": round(sum(values) / len(values), 2), "min": min(values), "max": max(values)}


def label_distribution(labels: Sequence[float], max_distinct: int = 10, bins: int = 5) -> dict[str, int]:
    """Count labels in ``[0, 1]``: per distinct value when there are few, else as a histogram.

    Args:
        labels: The labels.
        max_distinct: Most distinct values listed one by one.
        bins: Number of equal-width bins of the histogram over ``[0, 1]`` (the last one closed).

    Returns:
        ``{"0": 12, "1": 4}`` for 0/1 labels, or ``{"[0.0, 0.2)": 3, ..., "[0.8, 1.0]": 2}`` for graded ones.
    """
    if len(set(labels)) <= max_distinct:
        counts: dict[str, int] = {}
        for label in sorted(labels):
            counts[f"{label:g}"] = counts.get(f"{label:g}", 0) + 1
        return counts
    histogram = np.histogram(np.asarray(labels, dtype=float), bins=bins, range=(0.0, 1.0))[0]
    edges = [index / bins for index in range(bins + 1)]
    names = [f"[{edges[i]:.1f}, {edges[i + 1]:.1f}{']' if i == bins - 1 else ')'}" for i in range(bins)]
    return {name: int(count) for name, count in zip(names, histogram, strict=True)}


def phase_counts(phases: Iterable[str | None]) -> dict[str, int]:
    """Count records per phase; records without one count under ``"(none)"``; empty when no record has a phase."""
    counts: dict[str, int] = {}
    for phase in phases:
        key = "(none)" if phase is None else phase
        counts[key] = counts.get(key, 0) + 1
    return {} if set(counts) <= {"(none)"} else counts


@dataclass(frozen=True)
class HeldOut:
    """The evaluation side of a BEIR folder, to find training data that leaks into it.

    Attributes:
        folder: The folder it was read from (``None`` when built in memory).
        splits: The held-out splits: every split but ``train``.
        queries: Normalised text of each held-out query -> ``"q12 (test)"``.
        doc_ids: Id of each document relevant (score > 0) to a held-out query -> ``"d3 (test)"``.
        doc_texts: Normalised text of each of those documents -> ``"d3 (test)"``.
    """

    folder: Path | None
    splits: tuple[str, ...]
    queries: dict[str, str]
    doc_ids: dict[str, str]
    doc_texts: dict[str, str]

    @classmethod
    def from_retrieval_set(cls, retrieval_set: RetrievalSet) -> HeldOut:
        """Collect the queries and relevant documents of every split but ``train`` of ``retrieval_set``."""
        splits = tuple(split for split in retrieval_set.qrels if split != TRAIN_SPLIT)
        queries: dict[str, str] = {}
        doc_ids: dict[str, str] = {}
        for split in splits:
            for query_id, judgements in retrieval_set.qrels[split].items():
                queries.setdefault(normalize_query(retrieval_set.queries[query_id]), f"{query_id} ({split})")
                for doc_id, score in judgements.items():
                    if score > 0:
                        doc_ids.setdefault(doc_id, f"{doc_id} ({split})")
        doc_texts = {normalize_query(retrieval_set.corpus[doc_id]): label for doc_id, label in doc_ids.items()}
        return cls(retrieval_set.source, splits, queries, doc_ids, doc_texts)


def held_out_leaks(
    held_out: HeldOut | None, queries: Sequence[tuple[str, str]], positives: Sequence[tuple[str, str, str | None]]
) -> list[CheckWarning | None]:
    """Warn about training queries that are held-out queries and positives that are held-out relevant documents.

    Args:
        held_out: The held-out side of a BEIR folder; ``None`` gives no warnings.
        queries: ``(where, text)`` of each training query, ``where`` such as ``"line 3"``.
        positives: ``(where, text, document id or None)`` of each positive; it leaks when its normalised text or its
            id is a held-out relevant document's.

    Returns:
        The warnings ``query_in_held_out`` and ``positive_in_held_out``, ``None`` for each that found nothing.
    """
    if held_out is None:
        return []
    splits = "/".join(held_out.splits) or "held-out"
    query_leaks = [
        f"{where}: {quote(query)} = {held_out.queries[normalize_query(query)]}"
        for where, query in queries
        if normalize_query(query) in held_out.queries
    ]
    doc_leaks = []
    for where, text, doc_id in positives:
        match = held_out.doc_ids.get(doc_id or "") or held_out.doc_texts.get(normalize_query(text))
        if match is not None:
            doc_leaks.append(f"{where}: {quote(text)} = {match}")
    return [
        make_warning("query_in_held_out", f"training queries that are {splits} queries", query_leaks),
        make_warning("positive_in_held_out", f"training positives that are {splits}-relevant documents", doc_leaks),
    ]


def split_overlap(retrieval_set: RetrievalSet) -> list[CheckWarning | None]:
    """Warn about query ids judged in several splits, and query texts judged under other ids in other splits.

    Args:
        retrieval_set: A loaded retrieval set.

    Returns:
        The warnings ``query_id_in_several_splits`` and ``query_text_in_several_splits``, ``None`` for each that
        found nothing.
    """
    splits_of: dict[str, list[str]] = {}
    for split, split_qrels in retrieval_set.qrels.items():
        for query_id in split_qrels:
            splits_of.setdefault(query_id, []).append(split)
    shared_ids = [f"{query_id}: {', '.join(splits)}" for query_id, splits in splits_of.items() if len(splits) > 1]
    by_text: dict[str, list[tuple[str, str]]] = {}
    for query_id, splits in splits_of.items():
        text = normalize_query(retrieval_set.queries[query_id])
        by_text.setdefault(text, []).extend((query_id, split) for split in splits)
    shared_texts = [
        group_example(retrieval_set.queries[entries[0][0]], [f"{query_id} ({split})" for query_id, split in entries])
        for entries in by_text.values()
        if any(a[0] != b[0] and a[1] != b[1] for a in entries for b in entries)
    ]
    return [
        make_warning("query_id_in_several_splits", "query ids judged in several splits", shared_ids),
        make_warning(
            "query_text_in_several_splits",
            "query texts judged in several splits under different ids",
            shared_texts,
        ),
    ]
