"""Read and validate labelled-pair training files, the data of the CoSENT and cosine-MSE objectives.

Each line of the JSONL file is an object ``{"text1": str, "text2": str, "label": number, "phase": str}``: a query
(``text1``), a passage (``text2``), their similarity in ``[0, 1]`` (graded, or 0/1) and an optional ``phase``; other
fields are ignored. Pairs train as they are; grouped by ``text1`` they also give the retrieval examples that
evaluation splits are carved from (:func:`pairs_as_examples`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtune.data.splits import normalize_query
from embedtune.data.types import EvalSplit, TrainingExample
from embedtune.errors import DataError, check_unicode, reading, shorten
from embedtune.io import iter_jsonl_objects, iter_text_lines, json_type_name, parse_json

RELEVANT_LABEL = 0.5
"""Relevance threshold: a pair whose label is at least this makes ``text2`` a positive of ``text1`` (a relevant
document when evaluating), a lower label a negative. Labels are similarities in ``[0, 1]``, so 0.5 is the middle of
the scale and splits 0/1 labels the obvious way."""

PAIR_TEXT_FIELDS = ("text1", "text2")
"""The text fields of a pair record, in order: query side first."""


@dataclass(frozen=True)
class PairExample:
    """One labelled pair: a query, a passage and how similar they are.

    Attributes:
        text1: The query side (non-empty text).
        text2: The passage side (non-empty text).
        label: Similarity in ``[0, 1]``, a finite float; ``>= RELEVANT_LABEL`` counts as relevant.
        phase: Free-form phase tag of the record, or ``None`` when the line has none.
    """

    text1: str
    text2: str
    label: float
    phase: str | None = None


def load_pairs(path: str | Path) -> list[PairExample]:
    """Read and validate a labelled-pair JSONL file.

    Args:
        path: JSONL file, one pair record a line; blank lines are skipped.

    Returns:
        One :class:`PairExample` per record, in file order (labels as floats).

    Raises:
        DataError: naming file, line and field, on a missing file, malformed JSON, a line that is not an object, a
            missing, non-string or empty ``text1``/``text2``, a missing ``label``, a label that is not a number
            (booleans included), not finite or outside ``[0, 1]``, a ``phase`` that is not a string, a lone surrogate
            (invalid Unicode) in a text or phase, or a file with no records; any other failure while reading also
            becomes a DataError naming the file.
    """
    path = Path(path)
    with reading(path):
        pairs = [_parse_pair(record, path, line) for line, record in iter_jsonl_objects(path)]
    if not pairs:
        raise DataError(path, None, None, "no labelled pairs")
    return pairs


def load_pair_groups(path: str | Path) -> tuple[list[PairExample], list[TrainingExample]]:
    """Read a labelled-pair file as training data: its pairs, and their ``text1`` groups as retrieval examples.

    Args:
        path: JSONL file of labelled pairs (see :func:`load_pairs`).

    Returns:
        ``(pairs, examples)``: every pair in file order, and :func:`pairs_as_examples` of them (at least one).

    Raises:
        DataError: as :func:`load_pairs` does; naming the file and field ``label`` when no pair is labelled
            ``>= RELEVANT_LABEL``, so no query has a relevant passage to evaluate on.
    """
    path = Path(path)
    pairs = load_pairs(path)
    examples = pairs_as_examples(pairs)
    if not examples:
        message = f"no pair labelled >= {RELEVANT_LABEL}: no query has a relevant passage to evaluate on"
        raise DataError(path, None, "label", message)
    return pairs, examples


def is_pairs_file(path: str | Path) -> bool:
    """Tell a labelled-pair file from a FlagEmbedding triplets file by its first record, reading one line only.

    Args:
        path: A JSONL training file.

    Returns:
        ``True`` when the first non-blank line is a JSON object with a ``text1`` key; ``False`` otherwise, also when
        the file is missing, unreadable, empty or its first line is malformed (so that the triplets loader reports
        the problem as usual).
    """
    try:
        with reading(path), closing(iter_text_lines(path)) as lines:
            first = next(lines, None)
            record = parse_json(first[1], path, first[0]) if first is not None else None
    except DataError:
        return False
    return isinstance(record, dict) and "text1" in record


def pairs_as_examples(pairs: Iterable[PairExample]) -> list[TrainingExample]:
    """Group pairs by ``text1`` into retrieval examples, the form evaluation splits are carved from.

    Args:
        pairs: Labelled pairs.

    Returns:
        One example per distinct ``text1`` holding at least one pair labelled ``>= RELEVANT_LABEL``, in order of
        first appearance: ``query`` is ``text1``, ``pos`` the ``text2`` of its relevant pairs, ``neg`` those of the
        others (weights all ones), each in file order. A ``text1`` without a relevant pair gives no example: it
        cannot be an evaluation query (its pairs still train).
    """
    return _grouped_examples(pairs, lambda pair: (pair.text1, None))


def pairs_as_training_examples(pairs: Iterable[PairExample]) -> list[TrainingExample]:
    """Turn labelled pairs into (query, positives, hard negatives) rows for InfoNCE-style objectives (mnrl, infonce).

    Pairs are grouped by ``(text1, phase)``: within a group, the ``text2`` labelled ``>= RELEVANT_LABEL`` are the
    positives and the others the hard negatives (weights all ones); a group without a relevant pair gives no row
    (an objective with in-batch negatives needs a positive). Each row keeps the group's phase, so a curriculum with
    ``source: phase`` orders the rows by the pairs' phases.

    Args:
        pairs: Labelled pairs.

    Returns:
        One example per group with a relevant pair, in order of the group's first pair.
    """
    return _grouped_examples(pairs, lambda pair: (pair.text1, pair.phase))


def _grouped_examples(
    pairs: Iterable[PairExample], key: Callable[[PairExample], tuple[str, str | None]]
) -> list[TrainingExample]:
    """One example per ``key`` = ``(query, phase)`` group holding a relevant pair, in order of first appearance."""
    groups: dict[tuple[str, str | None], list[PairExample]] = {}
    for pair in pairs:
        groups.setdefault(key(pair), []).append(pair)
    examples = []
    for (query, phase), group in groups.items():
        positives = tuple(pair.text2 for pair in group if pair.label >= RELEVANT_LABEL)
        negatives = tuple(pair.text2 for pair in group if pair.label < RELEVANT_LABEL)
        if positives:
            examples.append(TrainingExample(query=query, pos=positives, neg=negatives, phase=phase))
    return examples


def pairs_outside(pairs: Iterable[PairExample], held_out_texts: Collection[str]) -> list[PairExample]:
    """Keep the pairs whose query is not held out: those left to train on once dev and test are carved.

    Args:
        pairs: Labelled pairs.
        held_out_texts: Normalised texts (:func:`~embedtune.data.splits.normalize_query`) of every dev and test
            query.

    Returns:
        The pairs whose normalised ``text1`` is not in ``held_out_texts``, in input order (pairs of a ``text1``
        without a relevant pair included).
    """
    return [pair for pair in pairs if normalize_query(pair.text1) not in held_out_texts]


def pairs_within(pairs: Iterable[PairExample], split: EvalSplit) -> list[PairExample]:
    """Keep the pairs whose query belongs to an evaluation split (for pair diagnostics on dev or test).

    Args:
        pairs: Labelled pairs.
        split: A split carved from the pairs' grouped queries.

    Returns:
        The pairs whose normalised ``text1`` is one of the split's queries, in input order.
    """
    texts = {normalize_query(text) for text in split.queries.values()}
    return [pair for pair in pairs if normalize_query(pair.text1) in texts]


def _parse_pair(record: dict[str, Any], path: Path, line: int) -> PairExample:
    """Validate one decoded record and turn it into a PairExample."""
    text1, text2 = (_text(record, field, path, line) for field in PAIR_TEXT_FIELDS)
    return PairExample(text1=text1, text2=text2, label=_label(record, path, line), phase=_phase(record, path, line))


def _text(record: dict[str, Any], field: str, path: Path, line: int) -> str:
    """Return ``record[field]``: a required, non-empty string."""
    if field not in record:
        raise DataError(path, line, field, "missing required field")
    text = record[field]
    if not isinstance(text, str):
        raise DataError(path, line, field, f"expected a non-empty string, got {json_type_name(text)}")
    if not text.strip():
        raise DataError(path, line, field, "empty text")
    return check_unicode(text, path, line, field)


def _label(record: dict[str, Any], path: Path, line: int) -> float:
    """Return the record's ``label`` as a float: a required finite number in ``[0, 1]`` (booleans excluded)."""
    if "label" not in record:
        raise DataError(path, line, "label", "missing required field")
    value = record["label"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, line, "label", f"expected a number in [0, 1], got {json_type_name(value)}")
    try:
        label = float(value)
    except OverflowError:
        label = math.inf
    if not math.isfinite(label):
        raise DataError(path, line, "label", f"expected a finite number, got {shorten(value)}")
    if not 0 <= label <= 1:
        raise DataError(path, line, "label", f"expected a similarity in [0, 1], got {shorten(value)}")
    return label


def _phase(record: dict[str, Any], path: Path, line: int) -> str | None:
    """Return the record's optional ``phase``: a string when present, ``None`` when absent."""
    if "phase" not in record:
        return None
    phase = record["phase"]
    if not isinstance(phase, str):
        raise DataError(path, line, "phase", f"expected a string, got {json_type_name(phase)}")
    return check_unicode(phase, path, line, "phase")
