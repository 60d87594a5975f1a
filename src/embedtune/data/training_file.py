"""Read and validate FlagEmbedding-style training files (one query, its positives and weighted hard negatives a line).

Each line of the JSONL file is an object ``{"query": str, "pos": [str, ...], "neg": [str, ...],
"neg_weights": [float, ...]}``; ``neg`` and ``neg_weights`` are optional and other fields are ignored. Instead of
``neg_weights`` a record may give ``neg_features`` (one list of feature names per negative), turned into weights by
a :class:`~embedtune.data.feature_weights.FeatureWeights` config.

Optional fields written by ``embedtune mine`` (:mod:`embedtune.mining.mine`) are validated when present:
``query_id`` (a non-empty string), ``pos_ids`` / ``neg_ids`` (non-empty strings, one per ``pos`` / ``neg`` entry),
``pos_scores`` / ``neg_scores`` (finite numbers, one per entry), ``neg_sources`` (one list of retriever names per
``neg`` entry) and ``phase`` (any string, e.g. a curriculum phase).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.data.types import TrainingExample
from embedtune.errors import DataError, check_unicode, reading, shorten
from embedtune.io import iter_jsonl_objects, json_type_name, jsonl_line, write_lines_atomic

if TYPE_CHECKING:  # feature_weights imports this module
    from embedtune.data.feature_weights import FeatureWeights

FLOAT32_MAX = 3.4028235e38
"""Largest weight accepted: the float32 maximum (as float32 prints it); anything larger overflows to inf."""
FLOAT32_MIN_NORMAL = 1.1754944e-38
"""Smallest weight accepted: the smallest normal float32; smaller weights lose precision or become 0 (padding)."""


def load_triplets(path: str | Path, feature_weights: FeatureWeights | None = None) -> list[TrainingExample]:
    """Read and validate a FlagEmbedding-style JSONL training file.

    Args:
        path: JSONL file, one training record a line; blank lines are skipped.
        feature_weights: Weight config turning a record's ``neg_features`` (``[["price"], ["location", "price"],
            []]``: one list of feature names per ``neg`` entry) into ``neg_weights``; ``None`` when the file has
            no ``neg_features``.

    Returns:
        One :class:`TrainingExample` per record, in file order. Missing ``neg_weights`` default to ones; a record
        with ``neg_features`` gets ``neg_weights[i] = feature_weights.weight(neg_features[i])``.

    Raises:
        DataError: naming file, line and field, on a missing file, malformed JSON, a line that is not an object, a
            missing or empty ``query``, a missing or empty ``pos`` list, an empty or non-string passage (field such as
            ``pos[2]``), a lone surrogate (invalid Unicode) in any text, id or name, a ``neg`` that is not a list,
            ``neg_weights`` without ``neg`` or of the wrong length, a weight that is not a finite number > 0
            representable as a normal float32 (field such as ``neg_weights[1]``), or a file with no records. For
            ``neg_features``: given without ``feature_weights`` (telling the user to set ``data.feature_weights``),
            together with ``neg_weights``, without ``neg``, not a list of lists of strings (field such as
            ``neg_features[1]`` or ``neg_features[1][0]``), of another length than ``neg``, naming an unknown or
            repeated feature (``neg_features[2][0]``), or combining into a weight that is not a normal float32
            (``neg_features[2]``). For the optional fields: a ``query_id`` or ``phase`` that is not a string (an empty
            ``query_id`` too), ``pos_ids`` / ``neg_ids`` / ``pos_scores`` / ``neg_scores`` / ``neg_sources`` that are
            not lists of the length of ``pos`` / ``neg``, given without ``neg`` (the ``neg_*`` ones), or holding an
            entry of the wrong kind (field such as ``neg_scores[2]`` for a score that is not a finite number,
            ``pos_ids[0]`` for an empty id, ``neg_sources[1][0]`` for a source that is not a string). Any other failure
            while reading also becomes a DataError naming the file.
    """
    path = Path(path)
    with reading(path):
        examples = [_parse_example(record, path, line, feature_weights) for line, record in iter_jsonl_objects(path)]
    if not examples:
        raise DataError(path, None, None, "no training examples")
    return examples


def _parse_example(
    record: dict[str, Any], path: Path, line: int, feature_weights: FeatureWeights | None
) -> TrainingExample:
    """Validate one decoded record and turn it into a TrainingExample."""
    query = _query(record, path, line)
    pos = _passages(record, "pos", path, line, allow_empty_list=False)
    neg = _passages(record, "neg", path, line, allow_empty_list=True) if "neg" in record else ()
    if "neg_features" in record:
        weights = _feature_weights(record, len(neg), path, line, feature_weights)
    else:
        weights = _neg_weights(record, len(neg), path, line)
    return TrainingExample(
        query=query,
        pos=pos,
        neg=neg,
        neg_weights=weights,
        pos_ids=_per_passage(record, "pos_ids", len(pos), path, line, _id),
        neg_ids=_per_passage(record, "neg_ids", len(neg), path, line, _id),
        pos_scores=_per_passage(record, "pos_scores", len(pos), path, line, _score),
        neg_scores=_per_passage(record, "neg_scores", len(neg), path, line, _score),
        neg_sources=_per_passage(record, "neg_sources", len(neg), path, line, _sources),
        query_id=_optional_string(record, "query_id", path, line, allow_empty=False),
        phase=_optional_string(record, "phase", path, line, allow_empty=True),
    )


def _optional_string(record: dict[str, Any], field: str, path: Path, line: int, allow_empty: bool) -> str | None:
    """Return ``record[field]`` when present (a string, non-blank unless ``allow_empty``), else ``None``."""
    if field not in record:
        return None
    value = record[field]
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string, got {json_type_name(value)}")
    if not allow_empty and not value.strip():
        raise DataError(path, line, field, "empty string")
    return check_unicode(value, path, line, field)


def _per_passage(record: dict[str, Any], field: str, count: int, path: Path, line: int, check: Any) -> tuple:
    """Return the optional list ``record[field]`` (one entry per pos or neg passage) checked entry by entry.

    ``check(value, field_of_entry, path, line)`` validates and converts one entry; absent gives ``()``.
    """
    if field not in record:
        return ()
    values = record[field]
    passages = "pos" if field.startswith("pos") else "neg"
    if passages == "neg" and "neg" not in record:
        raise DataError(path, line, field, f"{field} given without neg")
    if not isinstance(values, list):
        raise DataError(path, line, field, f"expected a list, got {json_type_name(values)}")
    if len(values) != count:
        raise DataError(path, line, field, f"expected {count} entries (one per {passages}), got {len(values)}")
    return tuple(check(value, f"{field}[{index}]", path, line) for index, value in enumerate(values))


def _id(value: object, field: str, path: Path, line: int) -> str:
    """Check one document id: a non-empty string."""
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string id, got {json_type_name(value)}")
    if not value.strip():
        raise DataError(path, line, field, "empty id")
    return check_unicode(value, path, line, field)


def _score(value: object, field: str, path: Path, line: int) -> float:
    """Check one retriever score: a finite number (booleans excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, line, field, f"expected a number, got {json_type_name(value)}")
    try:
        score = float(value)
    except OverflowError:
        score = math.inf
    if not math.isfinite(score):
        raise DataError(path, line, field, f"expected a finite number, got {shorten(value)}")
    return score


def _sources(value: object, field: str, path: Path, line: int) -> tuple[str, ...]:
    """Check one negative's sources: a list of non-empty strings such as ``["dense", "bm25"]``."""
    if not isinstance(value, list):
        raise DataError(path, line, field, f"expected a list of retriever names, got {json_type_name(value)}")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            got = "an empty string" if isinstance(name, str) else json_type_name(name)
            raise DataError(path, line, f"{field}[{index}]", f"expected a retriever name, got {got}")
        check_unicode(name, path, line, f"{field}[{index}]")
    return tuple(value)


def _query(record: dict[str, Any], path: Path, line: int) -> str:
    """Return the record's ``query``: a required, non-empty string."""
    if "query" not in record:
        raise DataError(path, line, "query", "missing required field")
    query = record["query"]
    if not isinstance(query, str):
        raise DataError(path, line, "query", f"expected a non-empty string, got {type(query).__name__}")
    if not query.strip():
        raise DataError(path, line, "query", "empty query")
    return check_unicode(query, path, line, "query")


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
        check_unicode(passage, path, line, f"{field}[{index}]")
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


def _feature_weights(
    record: dict[str, Any], neg_count: int, path: Path, line: int, feature_weights: FeatureWeights | None
) -> tuple[float, ...]:
    """Return the weights of the record's ``neg_features``, one per negative, resolved by ``feature_weights``."""
    lists = record["neg_features"]
    if "neg_weights" in record:
        raise DataError(path, line, "neg_features", "give either neg_weights or neg_features, not both")
    if feature_weights is None:
        message = "neg_features needs a weight config: set data.feature_weights (a JSON or YAML file of weights)"
        raise DataError(path, line, "neg_features", message)
    if "neg" not in record:
        raise DataError(path, line, "neg_features", "neg_features given without neg")
    if not isinstance(lists, list):
        message = f"expected a list of lists of feature names, got {type(lists).__name__}"
        raise DataError(path, line, "neg_features", message)
    if len(lists) != neg_count:
        message = f"expected {neg_count} feature lists (one per neg), got {len(lists)}"
        raise DataError(path, line, "neg_features", message)
    return tuple(_combined_weight(names, index, path, line, feature_weights) for index, names in enumerate(lists))


def _combined_weight(names: object, index: int, path: Path, line: int, feature_weights: FeatureWeights) -> float:
    """Return the weight of negative ``index`` from its feature names ``neg_features[index]``."""
    field = f"neg_features[{index}]"
    if not isinstance(names, list):
        raise DataError(path, line, field, f"expected a list of feature names, got {type(names).__name__}")
    seen: set[str] = set()
    for position, name in enumerate(names):
        if not isinstance(name, str):
            message = f"expected a feature name (string), got {type(name).__name__}"
            raise DataError(path, line, f"{field}[{position}]", message)
        if name not in feature_weights.features:
            message = f"unknown feature {shorten(name)}; known: {feature_weights.known_features()}"
            raise DataError(path, line, f"{field}[{position}]", message)
        if name in seen:
            raise DataError(path, line, f"{field}[{position}]", f"feature {shorten(name)} given twice")
        seen.add(name)
    try:
        return feature_weights.weight(names)
    except ValueError as error:
        raise DataError(path, line, field, str(error)) from None


def _weight(value: object, field: str, path: Path, line: int) -> float:
    """Return one negative's weight as a float (see :func:`float32_weight`), or raise a DataError at ``field``."""
    try:
        return float32_weight(value)
    except ValueError as error:
        raise DataError(path, line, field, str(error)) from None


def float32_weight(value: object) -> float:
    """Check one weight: a finite number > 0 that is a normal float32 (booleans excluded).

    Shared by the training file's ``neg_weights`` and the feature-weight configs (their weights and combinations).

    Args:
        value: A decoded JSON number (``int`` or ``float``), or any other value (rejected).

    Returns:
        The weight as a Python float, in ``[FLOAT32_MIN_NORMAL, FLOAT32_MAX]``.

    Raises:
        ValueError: whose message says what is wrong (not a number, not finite, <= 0, above :data:`FLOAT32_MAX`
            or below :data:`FLOAT32_MIN_NORMAL`); callers turn it into a DataError naming file, line and field.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    try:
        weight = float(value)
    except OverflowError:
        weight = math.inf
    if not math.isfinite(weight):
        raise ValueError(f"expected a finite number, got {shorten(value)}")
    if weight <= 0:
        raise ValueError(f"expected a weight > 0, got {shorten(value)}")
    if weight > FLOAT32_MAX:
        raise ValueError(
            f"weight {shorten(value)} is above the float32 maximum {FLOAT32_MAX!r}: it would overflow to inf"
        )
    if weight < FLOAT32_MIN_NORMAL:
        raise ValueError(
            f"weight {shorten(value)} is below the smallest normal float32 {FLOAT32_MIN_NORMAL!r}: it would lose "
            "precision or underflow to 0, which the loss reads as a padding slot"
        )
    return weight


def training_record(
    example: TrainingExample, neg_weights: bool = True, features_from_sources: bool = False
) -> dict[str, Any]:
    """Turn an example into the JSON object :func:`load_triplets` reads back.

    Args:
        example: The example.
        neg_weights: Write ``neg_weights`` (they default to ones when left out).
        features_from_sources: Write ``neg_features`` equal to ``neg_sources`` instead of ``neg_weights`` (read back
            with a weight config naming the retrievers, ``data.feature_weights``).

    Returns:
        ``{"query", "query_id"?, "pos", "pos_ids"?, "pos_scores"?, "neg", "neg_ids"?, "neg_scores"?,
        "neg_sources"?, "neg_weights" | "neg_features"?, "phase"?}``: optional fields only when the example has them.

    Raises:
        ValueError: for ``features_from_sources`` with an example whose ``neg_sources`` do not match its ``neg``.
    """
    record: dict[str, Any] = {"query": example.query}
    if example.query_id is not None:
        record["query_id"] = example.query_id
    record["pos"] = list(example.pos)
    optional = (
        ("pos_ids", example.pos_ids),
        ("pos_scores", example.pos_scores),
        ("neg", example.neg),
        ("neg_ids", example.neg_ids),
        ("neg_scores", example.neg_scores),
        ("neg_sources", [list(sources) for sources in example.neg_sources]),
    )
    record.update((name, list(values)) for name, values in optional if values or name == "neg")
    if features_from_sources:
        if len(example.neg_sources) != len(example.neg):
            raise ValueError(
                f"query {shorten(example.query)}: {len(example.neg_sources)} neg_sources for "
                f"{len(example.neg)} negatives"
            )
        record["neg_features"] = [list(sources) for sources in example.neg_sources]
    elif neg_weights:
        record["neg_weights"] = list(example.neg_weights)
    if example.phase is not None:
        record["phase"] = example.phase
    return record


def write_triplets(
    path: str | Path,
    examples: Iterable[TrainingExample],
    neg_weights: bool = True,
    features_from_sources: bool = False,
) -> None:
    """Write examples as a UTF-8 JSONL training file (non-ASCII kept as is), atomically.

    Args:
        path: Destination file; its folder must exist.
        examples: The examples, one line each (see :func:`training_record`).
        neg_weights: Write each record's ``neg_weights``.
        features_from_sources: Write ``neg_features`` = ``neg_sources`` instead of ``neg_weights``.

    Raises:
        OSError: if the file cannot be written.
        ValueError: as :func:`training_record`; nothing is written then.
    """
    records = (jsonl_line(training_record(example, neg_weights, features_from_sources)) for example in examples)
    write_lines_atomic(path, records)
