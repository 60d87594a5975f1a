"""Read and validate FlagEmbedding-style training files (one query, its positives and weighted hard negatives a line).

Each line of the JSONL file is an object ``{"query": str, "pos": [str, ...], "neg": [str, ...],
"neg_weights": [float, ...]}``; ``neg`` and ``neg_weights`` are optional and other fields are ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from embedtune.data.errors import DataError, reading
from embedtune.data.types import TrainingExample
from embedtune.io import iter_jsonl_objects, shorten

FLOAT32_MAX = 3.4028235e38
"""Largest weight accepted: the float32 maximum (as float32 prints it); anything larger overflows to inf."""
FLOAT32_MIN_NORMAL = 1.1754944e-38
"""Smallest weight accepted: the smallest normal float32; smaller weights lose precision or become 0 (padding)."""


def load_triplets(path: str | Path) -> list[TrainingExample]:
    """Read and validate a FlagEmbedding-style JSONL training file.

    Args:
        path: JSONL file, one training record a line; blank lines are skipped.

    Returns:
        One :class:`TrainingExample` per record, in file order. Missing ``neg_weights`` default to ones.

    Raises:
        DataError: naming file, line and field, on a missing file, malformed JSON, a line that is not an object, a
            missing or empty ``query``, a missing or empty ``pos`` list, an empty or non-string passage (field such
            as ``pos[2]``), a ``neg`` that is not a list, ``neg_weights`` without ``neg`` or of the wrong length, a
            weight that is not a finite number > 0 representable as a normal float32 (field such as
            ``neg_weights[1]``), or a file with no records; any other failure while reading also becomes a
            DataError naming the file.
    """
    path = Path(path)
    with reading(path):
        examples = [_parse_example(record, path, line) for line, record in iter_jsonl_objects(path)]
    if not examples:
        raise DataError(path, None, None, "no training examples")
    return examples


def _parse_example(record: dict[str, Any], path: Path, line: int) -> TrainingExample:
    """Validate one decoded record and turn it into a TrainingExample."""
    query = _query(record, path, line)
    pos = _passages(record, "pos", path, line, allow_empty_list=False)
    neg = _passages(record, "neg", path, line, allow_empty_list=True) if "neg" in record else ()
    weights = _neg_weights(record, len(neg), path, line)
    return TrainingExample(query=query, pos=pos, neg=neg, neg_weights=weights)


def _query(record: dict[str, Any], path: Path, line: int) -> str:
    """Return the record's ``query``: a required, non-empty string."""
    if "query" not in record:
        raise DataError(path, line, "query", "missing required field")
    query = record["query"]
    if not isinstance(query, str):
        raise DataError(path, line, "query", f"expected a non-empty string, got {type(query).__name__}")
    if not query.strip():
        raise DataError(path, line, "query", "empty query")
    return query


def _passages(record: dict[str, Any], field: str, path: Path, line: int, allow_empty_list: bool) -> tuple[str, ...]:
    """Return ``record[field]`` as a tuple of non-empty strings (a required field: callers check optional ones)."""
    if field not in record:
        raise DataError(path, line, field, "missing required field")
    passages = record[field]
    if not isinstance(passages, list):
        raise DataError(path, line, field, f"expected a list of strings, got {type(passages).__name__}")
    if not passages and not allow_empty_list:
        raise DataError(path, line, field, "expected at least one passage, got an empty list")
    for index, passage in enumerate(passages):
        if not isinstance(passage, str):
            raise DataError(path, line, f"{field}[{index}]", f"expected a string, got {type(passage).__name__}")
        if not passage.strip():
            raise DataError(path, line, f"{field}[{index}]", "empty passage")
    return tuple(passages)


def _neg_weights(record: dict[str, Any], neg_count: int, path: Path, line: int) -> tuple[float, ...]:
    """Return the record's ``neg_weights`` as floats, or ``()`` when absent (meaning all ones)."""
    if "neg_weights" not in record:
        return ()
    weights = record["neg_weights"]
    if "neg" not in record:
        raise DataError(path, line, "neg_weights", "neg_weights given without neg")
    if not isinstance(weights, list):
        raise DataError(path, line, "neg_weights", f"expected a list of numbers, got {type(weights).__name__}")
    if len(weights) != neg_count:
        raise DataError(path, line, "neg_weights", f"expected {neg_count} weights (one per neg), got {len(weights)}")
    return tuple(_weight(weight, f"neg_weights[{index}]", path, line) for index, weight in enumerate(weights))


def _weight(value: object, field: str, path: Path, line: int) -> float:
    """Return one negative's weight as a float: a finite number > 0 that is a normal float32 (booleans excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, line, field, f"expected a number, got {type(value).__name__}")
    try:
        weight = float(value)
    except OverflowError:
        weight = math.inf
    if not math.isfinite(weight):
        raise DataError(path, line, field, f"expected a finite number, got {shorten(value)}")
    if weight <= 0:
        raise DataError(path, line, field, f"expected a weight > 0, got {shorten(value)}")
    if weight > FLOAT32_MAX:
        message = f"weight {shorten(value)} is above the float32 maximum {FLOAT32_MAX!r}: it would overflow to inf"
        raise DataError(path, line, field, message)
    if weight < FLOAT32_MIN_NORMAL:
        message = (
            f"weight {shorten(value)} is below the smallest normal float32 {FLOAT32_MIN_NORMAL!r}: it would lose "
            "precision or underflow to 0, which the loss reads as a padding slot"
        )
        raise DataError(path, line, field, message)
    return weight
