"""Validate a data set with the regular loaders and describe it: counts, token lengths, duplicates and split leaks.

:func:`check_path` reads a BEIR folder, a training JSONL file or a labelled-pairs JSONL file and returns a
:class:`CheckReport`; invalid data raises the loaders' :class:`~embedtune.errors.DataError` (file, line, field).
Texts are compared once normalised (:func:`~embedtune.data.splits.normalize_query`: whitespace collapsed, casefolded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedtune.data.beir import load_beir
from embedtune.data.check_report import CheckReport, build_report, compared_with, distinct_texts, measure_lengths
from embedtune.data.check_stats import (
    CheckWarning,
    HeldOut,
    duplicate_groups,
    duplicate_warning,
    held_out_leaks,
    label_distribution,
    make_warning,
    phase_counts,
    quote,
    split_overlap,
    spread,
)
from embedtune.data.check_tokens import DEFAULT_MODEL, TokenCounter, load_token_counter
from embedtune.data.feature_weights import load_feature_weights
from embedtune.data.pairs import RELEVANT_LABEL, PairExample, is_pairs_file, load_pairs
from embedtune.data.splits import normalize_query
from embedtune.data.training_file import load_triplets
from embedtune.data.types import RetrievalSet, TrainingExample
from embedtune.errors import DataError
from embedtune.io import iter_jsonl_objects

BEIR, TRAINING, PAIRS = "beir", "training", "pairs"
"""The kinds of data set :func:`check_path` recognises."""


def check_path(
    path: str | Path,
    model: str = DEFAULT_MODEL,
    beir: str | Path | None = None,
    max_seq_length: int | None = None,
    feature_weights: str | Path | None = None,
    counter: TokenCounter | None = None,
) -> CheckReport:
    """Validate a data set with the regular loaders, then describe it.

    The data is read and validated before any tokenizer is loaded, so bad data fails fast.

    Args:
        path: A BEIR folder, a training JSONL file or a labelled-pairs JSONL file.
        model: Model folder or name whose tokenizer counts lengths, or ``"whitespace"``.
        beir: For a JSONL file: a BEIR folder whose dev/test queries and relevant documents the file must not hold.
        max_seq_length: Length limit in tokens overriding the model's.
        feature_weights: Weight config for a training file whose records give ``neg_features``.
        counter: A ready token counter, used instead of ``model`` and ``max_seq_length``.

    Returns:
        The report.

    Raises:
        DataError: if ``path`` does not exist or any file is invalid (one line naming file, line and field).
        ValueError: if ``beir`` is given for a BEIR folder, or ``max_seq_length`` is not positive.
        ModelNotFoundError: if the tokenizer of ``model`` cannot be loaded.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "not found: expected a BEIR folder or a JSONL file")
    if path.is_dir():
        if beir is not None:
            raise ValueError(f"{path} is a BEIR folder: --beir only applies to a training or pairs JSONL file")
        retrieval_set = load_beir(path)
        return check_retrieval_set(retrieval_set, counter or load_token_counter(model, max_seq_length))
    held_out = HeldOut.from_retrieval_set(load_beir(beir)) if beir is not None else None
    if is_pairs_file(path):
        pairs = load_pairs(path)
        lines = [line for line, _ in iter_jsonl_objects(path)]
        return check_pairs(pairs, lines, counter or load_token_counter(model, max_seq_length), held_out, path)
    weights = load_feature_weights(feature_weights) if feature_weights is not None else None
    examples = load_triplets(path, weights)
    lines, weighted = [], []
    for line, record in iter_jsonl_objects(path):
        lines.append(line)
        weighted.append("neg_weights" in record or "neg_features" in record)
    counter = counter or load_token_counter(model, max_seq_length)
    return check_training(examples, lines, counter, weighted, held_out, path)


def check_retrieval_set(retrieval_set: RetrievalSet, counter: TokenCounter) -> CheckReport:
    """Describe a loaded retrieval set: counts per split, lengths, duplicates and queries shared between splits.

    Args:
        retrieval_set: The set, e.g. from :func:`~embedtune.data.beir.load_beir`.
        counter: Counts tokens.

    Returns:
        The report; ``path`` is the set's ``source`` (``"."`` when built in memory).
    """
    corpus, queries, qrels = retrieval_set.corpus, retrieval_set.queries, retrieval_set.qrels
    judged = {query_id for split_qrels in qrels.values() for query_id in split_qrels}
    counts: dict[str, Any] = {
        "documents": len(corpus),
        "queries": len(queries),
        "judged_queries": len(judged),
        "unjudged_queries": len(queries) - len(judged),
        "splits": {split: _split_counts(split_qrels) for split, split_qrels in qrels.items()},
    }
    lengths, long_texts = measure_lengths(counter, list(queries.items()), list(corpus.items()))
    without_relevant = [
        f"{query_id} ({split})"
        for split, split_qrels in qrels.items()
        for query_id, judgements in split_qrels.items()
        if not any(score > 0 for score in judgements.values())
    ]
    unjudged = [query_id for query_id in queries if query_id not in judged]
    warnings = [
        duplicate_warning(
            "duplicate_documents", "document texts under several ids", "ids", duplicate_groups(corpus.items())
        ),
        duplicate_warning(
            "duplicate_queries", "query texts under several ids", "ids", duplicate_groups(queries.items())
        ),
        *split_overlap(retrieval_set),
        make_warning(
            "queries_without_relevant",
            "judged queries without a relevant document (score > 0) in their split",
            without_relevant,
        ),
        make_warning("unjudged_queries", "queries judged in no split (unused)", unjudged),
        *long_texts,
    ]
    source = retrieval_set.source or Path(".")
    return build_report(source, BEIR, counter, counts, lengths, warnings)


def _split_counts(qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Count one split's judged queries, judgements, relevant documents per query."""
    relevant = [sum(1 for score in judgements.values() if score > 0) for judgements in qrels.values()]
    return {
        "judged_queries": len(qrels),
        "judgements": sum(len(judgements) for judgements in qrels.values()),
        "relevant_judgements": sum(relevant),
        "relevant_per_query": spread(relevant),
        "queries_without_relevant": sum(1 for count in relevant if count == 0),
    }


def check_training(
    examples: Sequence[TrainingExample],
    lines: Sequence[int],
    counter: TokenCounter,
    weighted: Sequence[bool] | None = None,
    held_out: HeldOut | None = None,
    path: str | Path = ".",
) -> CheckReport:
    """Describe the records of a training file: counts, lengths, duplicates and leaks into a held-out set.

    Args:
        examples: The records, e.g. from :func:`~embedtune.data.training_file.load_triplets`.
        lines: The line number of each record (same order), shown in examples.
        counter: Counts tokens.
        weighted: Whether each record gives its own ``neg_weights``/``neg_features``; ``None`` when unknown.
        held_out: Dev/test queries and relevant documents the records must not hold, or ``None``.
        path: The file, for the report.

    Returns:
        The report; lengths are over distinct query texts and distinct passages (``pos`` and ``neg``).
    """
    at = [f"line {line}" for line in lines]
    counts: dict[str, Any] = {
        "records": len(examples),
        "distinct_queries": len({normalize_query(example.query) for example in examples}),
        "positives_per_record": spread([len(example.pos) for example in examples]),
        "negatives_per_record": spread([len(example.neg) for example in examples]),
        "records_with_negatives": sum(1 for example in examples if example.neg),
        "records_with_weights": None if weighted is None else sum(weighted),
        "records_with_ids": sum(1 for example in examples if example.pos_ids or example.neg_ids),
    }
    if phases := phase_counts(example.phase for example in examples):
        counts["phases"] = phases
    counts.update(compared_with(held_out))
    passages = [
        (f"{where} {field}[{index}]", text)
        for where, example in zip(at, examples, strict=True)
        for field, texts in (("pos", example.pos), ("neg", example.neg))
        for index, text in enumerate(texts)
    ]
    queries = [(where, example.query) for where, example in zip(at, examples, strict=True)]
    lengths, long_texts = measure_lengths(counter, distinct_texts(queries), distinct_texts(passages))
    positives = [
        (f"{where} pos[{index}]", text, example.pos_ids[index] if example.pos_ids else None)
        for where, example in zip(at, examples, strict=True)
        for index, text in enumerate(example.pos)
    ]
    warnings = [
        duplicate_warning(
            "duplicate_queries", "queries given in several records", "records", duplicate_groups(queries)
        ),
        _repeated_pairs(at, [(e.query, e.pos) for e in examples]),
        _negative_is_positive(at, examples),
        _document_ids(examples),
        *held_out_leaks(held_out, queries, positives),
        *long_texts,
    ]
    return build_report(Path(path), TRAINING, counter, counts, lengths, warnings)


def _repeated_pairs(at: Sequence[str], records: Sequence[tuple[str, Sequence[str]]]) -> CheckWarning | None:
    """Warn about (query, positive) pairs given again, in a later record or twice in one."""
    first: dict[tuple[str, str], str] = {}
    repeats = []
    for where, (query, positives) in zip(at, records, strict=True):
        for index, positive in enumerate(positives):
            key = (normalize_query(query), normalize_query(positive))
            label = f"{where} pos[{index}]"
            if key in first:
                repeats.append(f"{label} repeats {first[key]}: {quote(query)} -> {quote(positive)}")
            else:
                first[key] = label
    return make_warning("duplicate_positive_pairs", "repeated (query, positive) pairs", repeats)


def _negative_is_positive(at: Sequence[str], examples: Sequence[TrainingExample]) -> CheckWarning | None:
    """Warn about negatives whose text equals a positive of the same record."""
    found = []
    for where, example in zip(at, examples, strict=True):
        positives = {normalize_query(text): index for index, text in enumerate(example.pos)}
        for index, text in enumerate(example.neg):
            if (pos_index := positives.get(normalize_query(text))) is not None:
                found.append(f"{where}: neg[{index}] = pos[{pos_index}] {quote(text)}")
    return make_warning("negative_is_positive", "negatives equal to a positive of their record", found)


def _document_ids(examples: Sequence[TrainingExample]) -> CheckWarning | None:
    """Warn, for files with ``pos_ids``/``neg_ids``, about one text under several document ids."""
    texts: dict[str, str] = {}
    for example in examples:
        for ids, passages in ((example.pos_ids, example.pos), (example.neg_ids, example.neg)):
            for doc_id, text in zip(ids, passages, strict=False):
                texts.setdefault(doc_id, text)
    return duplicate_warning(
        "duplicate_documents", "document texts under several ids", "ids", duplicate_groups(texts.items())
    )


def check_pairs(
    pairs: Sequence[PairExample],
    lines: Sequence[int],
    counter: TokenCounter,
    held_out: HeldOut | None = None,
    path: str | Path = ".",
) -> CheckReport:
    """Describe a labelled-pairs file: label distribution, lengths, repeated or conflicting pairs, leaks.

    Args:
        pairs: The pairs, e.g. from :func:`~embedtune.data.pairs.load_pairs`.
        lines: The line number of each pair (same order).
        counter: Counts tokens.
        held_out: Dev/test queries and relevant documents the pairs must not hold, or ``None``.
        path: The file, for the report.

    Returns:
        The report; lengths are over distinct ``text1`` (queries) and distinct ``text2`` (documents).
    """
    at = [f"line {line}" for line in lines]
    relevant_queries = {normalize_query(pair.text1) for pair in pairs if pair.label >= RELEVANT_LABEL}
    all_queries = {normalize_query(pair.text1) for pair in pairs}
    counts: dict[str, Any] = {
        "records": len(pairs),
        "distinct_queries": len(all_queries),
        "distinct_documents": len({normalize_query(pair.text2) for pair in pairs}),
        "labels": label_distribution([pair.label for pair in pairs]),
        f"relevant_pairs (label >= {RELEVANT_LABEL:g})": sum(1 for pair in pairs if pair.label >= RELEVANT_LABEL),
        "queries_without_relevant": len(all_queries - relevant_queries),
    }
    if phases := phase_counts(pair.phase for pair in pairs):
        counts["phases"] = phases
    counts.update(compared_with(held_out))
    queries = [(where, pair.text1) for where, pair in zip(at, pairs, strict=True)]
    documents = [(where, pair.text2) for where, pair in zip(at, pairs, strict=True)]
    lengths, long_texts = measure_lengths(counter, distinct_texts(queries), distinct_texts(documents))
    positives = [(w, pair.text2, None) for w, pair in zip(at, pairs, strict=True) if pair.label >= RELEVANT_LABEL]
    keys = [(normalize_query(pair.text1), normalize_query(pair.text2)) for pair in pairs]
    same = [f"{w}: {quote(p.text1)}" for w, p, (one, two) in zip(at, pairs, keys, strict=True) if one == two]
    warnings = [
        *_repeated_labelled_pairs(at, pairs),
        make_warning("pair_of_equal_texts", "pairs with the same text on both sides", same),
        *held_out_leaks(held_out, queries, positives),
        *long_texts,
    ]
    return build_report(Path(path), PAIRS, counter, counts, lengths, warnings)


def _repeated_labelled_pairs(at: Sequence[str], pairs: Sequence[PairExample]) -> list[CheckWarning | None]:
    """Warn about (text1, text2) pairs given again, and about those given with different labels."""
    first: dict[tuple[str, str], tuple[str, set[float]]] = {}
    repeats = []
    for where, pair in zip(at, pairs, strict=True):
        key = (normalize_query(pair.text1), normalize_query(pair.text2))
        if key in first:
            repeats.append(f"{where} repeats {first[key][0]}: {quote(pair.text1)} -> {quote(pair.text2)}")
            first[key][1].add(pair.label)
        else:
            first[key] = (where, {pair.label})
    conflicts = [
        f"{where}: labels {', '.join(f'{label:g}' for label in sorted(labels))}"
        for where, labels in first.values()
        if len(labels) > 1
    ]
    return [
        make_warning("duplicate_pairs", "repeats of an earlier (text1, text2) pair", repeats),
        make_warning("conflicting_labels", "repeated pairs with different labels", conflicts),
    ]
