"""Turn validated training examples into the trainer's dataset (one row per query-positive pair)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from datasets import Dataset, DatasetDict

from embedtune.data.splits import normalize_query
from embedtune.data.types import TrainingExample
from embedtune.losses.false_negatives import FalseNegativeTable
from embedtune.losses.registry import OBJECTIVES, Objective

logger = logging.getLogger(__name__)


@dataclass
class TrainDataset:
    """The trainer's rows and, built from the same rows, the table that tells false negatives apart.

    Attributes:
        dataset: Columns ``anchor``, ``positive``, ``negative_1`` ... ``negative_n`` and ``label``: per row
            ``[row index, w_1, ..., w_n]`` (the hard-negative weights, 0 on padding slots).
        false_negatives: Candidate and relevant keys of every row, indexed by the label's row index.
        num_negatives: ``n``, the hard-negative columns.
    """

    dataset: Dataset
    false_negatives: FalseNegativeTable
    num_negatives: int


def build_objective_dataset(
    examples: list[TrainingExample], max_hard_negatives: int, objective: Objective
) -> TrainDataset:
    """Build the trainer's dataset the way ``objective`` reads it (padded, topped up, or with teacher scores).

    See :func:`build_train_dataset`; ``objective`` gives ``pad_negatives`` and ``teacher_scores``.
    """
    pad, teacher = objective.pads_negatives, objective.teacher_scores
    return build_train_dataset(examples, max_hard_negatives, pad_negatives=pad, teacher_scores=teacher)


def build_mixed_dataset(
    sources: list[tuple[str, list[TrainingExample]]], max_hard_negatives: int, objective: Objective
) -> tuple[DatasetDict, FalseNegativeTable]:
    """Build one dataset per source for ``data.mix``, from one table so row indices and false negatives are shared.

    The rows of every source are built together (:func:`build_objective_dataset`: the same negative columns, row
    indices that count across sources), then cut into one dataset per source; a multi-dataset batch sampler then
    keeps each batch within one source.

    Args:
        sources: ``(name, examples)`` per source, the run's own data first.
        max_hard_negatives: Upper bound on the negative columns.
        objective: The objective the rows are built for.

    Returns:
        ``(datasets by name, the false-negative table of all rows)``.

    Raises:
        ValueError: as :func:`build_train_dataset`.
    """
    examples = [example for _, source in sources for example in source]
    built = build_objective_dataset(examples, max_hard_negatives, objective)
    datasets, start = {}, 0
    for name, source in sources:
        rows = sum(len(example.pos) for example in source)
        datasets[name] = built.dataset.select(range(start, start + rows))
        start += rows
    return DatasetDict(datasets), built.false_negatives


def build_train_dataset(
    examples: list[TrainingExample], max_hard_negatives: int, pad_negatives: bool = True, teacher_scores: bool = False
) -> TrainDataset:
    """Build the trainer's dataset: one row per (query, positive) pair with the query's first hard negatives.

    With ``pad_negatives``, ``n`` is the most negatives any record has (capped) and a query with fewer is padded with
    its positive at weight 0, which :class:`embedtune.losses.info_nce.InfoNCELoss` masks out. Without it (losses that
    know no weights, e.g. sentence-transformers' MNRL), ``n`` is the same but a record with fewer negatives is topped
    up with negatives of the following records (in file order, wrapping around) that are not relevant to its query
    and not already among its negatives: otherwise one record left short by mining would cut every row's hard
    negatives to its count. The topped-up records are counted in the log.

    With ``teacher_scores`` (distillation objectives) ``n`` is again the most negatives any record has (capped), a
    record with fewer repeats its own negatives in order (each with its own teacher score: another record's negative
    would have none, and a repeated margin only weighs that margin more), and each row's label is the teacher's
    scores ``[s⁺, s⁻_1 … s⁻_n]`` of its positive and negatives instead.

    Args:
        examples: Training records.
        max_hard_negatives: Upper bound on ``n``.
        pad_negatives: Pad to the longest negative list instead of cutting to the shortest.
        teacher_scores: Label rows with the records' ``pos_scores`` / ``neg_scores``.

    Returns:
        The dataset (``sum(len(e.pos) for e in examples)`` rows) and its false-negative table.

    Raises:
        ValueError: if there are more rows than the float32 label can index (2**24); with ``teacher_scores``, as
            :func:`check_teacher_scores`.
    """
    counts = [len(example.neg) for example in examples] or [0]
    num_negatives = min(max_hard_negatives, max(counts))
    if teacher_scores:
        check_teacher_scores(examples)
        short = sum(len(example.neg) < num_negatives for example in examples)
        if short:
            logger.info(
                "%d of %d records have fewer than %d hard negatives; each repeats its own (with their teacher scores)",
                short,
                len(examples),
                num_negatives,
            )
        examples, pad_negatives = [_repeat_negatives(example, num_negatives) for example in examples], True
    keys = _KeyIndex()
    relevant = _relevant_keys_by_query(examples, keys)
    if not pad_negatives and num_negatives > 0:
        examples = _borrow_negatives(examples, num_negatives, relevant, keys)
    columns: dict[str, list] = {"anchor": [], "positive": []}
    columns.update({f"negative_{j + 1}": [] for j in range(num_negatives)})
    labels: list[list[float]] = []
    candidate_keys: list[tuple[frozenset[int], ...]] = []
    for example in examples:
        negatives = list(example.neg[:num_negatives])
        row_weights = list(example.neg_weights[:num_negatives])
        pos_ids = example.pos_ids or (None,) * len(example.pos)
        for positive, positive_id in zip(example.pos, pos_ids, strict=True):
            padding = num_negatives - len(negatives)
            columns["anchor"].append(example.query)
            columns["positive"].append(positive)
            for j, text in enumerate(negatives + [positive] * padding):
                columns[f"negative_{j + 1}"].append(text)
            if teacher_scores:
                labels.append([example.pos_scores[example.pos.index(positive)], *example.neg_scores[:num_negatives]])
            else:
                labels.append([float(len(labels))] + row_weights + [0.0] * padding)
            candidates = [keys.of(positive, positive_id)] + [keys.of(text) for text in negatives]
            candidate_keys.append(tuple(candidates))
    columns["label"] = labels
    row_relevant = [relevant[normalize_query(example.query)] for example in examples for _ in range(len(example.pos))]
    table = FalseNegativeTable(candidate_keys, row_relevant)
    return TrainDataset(Dataset.from_dict(columns), table, num_negatives)


def with_negatives(examples: list[TrainingExample]) -> tuple[list[TrainingExample], int]:
    """Return ``(the records with at least one hard negative, how many were left out)``."""
    kept = [example for example in examples if example.neg]
    return kept, len(examples) - len(kept)


def check_teacher_scores(examples: list[TrainingExample]) -> None:
    """Check that every record can train a distillation objective: a hard negative, and a score for every passage.

    Raises:
        ValueError: naming the first record (its query) without a hard negative, or with a positive or negative
            that has no teacher score (``pos_scores`` / ``neg_scores``).
    """
    for example in examples:
        problem = "has no hard negative" if not example.neg else ""
        if len(example.pos_scores) != len(example.pos):
            problem = problem or "has no pos_scores (teacher scores) for its positives"
        if len(example.neg_scores) != len(example.neg):
            problem = problem or "has no neg_scores (teacher scores) for its hard negatives"
        if problem:
            raise ValueError(f"the record of query {example.query[:80]!r} {problem}")


def _repeat_negatives(example: TrainingExample, count: int) -> TrainingExample:
    """Return ``example`` with its negatives (and their weights, ids, scores, sources) repeated up to ``count``."""
    if len(example.neg) >= count:
        return example
    cycle = [j % len(example.neg) for j in range(count)]
    per_negative = ("neg", "neg_weights", "neg_ids", "neg_scores", "neg_sources")
    present = [name for name in per_negative if getattr(example, name)]
    repeated = {name: tuple(getattr(example, name)[j] for j in cycle) for name in present}
    return replace(example, **repeated)


def _borrow_negatives(
    examples: list[TrainingExample], count: int, relevant: dict[str, frozenset[int]], keys: _KeyIndex
) -> list[TrainingExample]:
    """Top up each record with fewer than ``count`` negatives from the next records' negatives (see the caller)."""
    filled = list(examples)
    topped_up = 0
    for index, example in enumerate(examples):
        if len(example.neg) >= count:
            continue
        query_keys = relevant[normalize_query(example.query)]
        negatives = list(example.neg[:count])
        for offset in range(1, len(examples)):
            for text in examples[(index + offset) % len(examples)].neg:
                if len(negatives) < count and text not in negatives and not keys.of(text) & query_keys:
                    negatives.append(text)
            if len(negatives) == count:
                break
        else:
            raise ValueError(f"too few negatives unrelated to query {example.query[:80]!r} to fill {count} columns")
        weights = example.neg_weights[: len(example.neg)] + (1.0,) * (count - len(example.neg))
        filled[index] = replace(example, neg=tuple(negatives), neg_weights=weights, neg_ids=())
        topped_up += 1
    if topped_up:
        logger.warning(
            "%d of %d records have fewer than %d hard negatives; this objective does not mask padding, so they are "
            "topped up with negatives of other records (objectives that do pad and mask instead: %s)",
            topped_up,
            len(examples),
            count,
            ", ".join(name for name, objective in OBJECTIVES.items() if objective.pads_negatives),
        )
    return filled


class _KeyIndex:
    """Integer keys for texts and document ids (separate namespaces)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], int] = {}

    def key(self, kind: str, value: str) -> int:
        return self._keys.setdefault((kind, value), len(self._keys))

    def of(self, text: str, doc_id: str | None = None) -> frozenset[int]:
        found = {self.key("text", text)}
        if doc_id is not None:
            found.add(self.key("id", doc_id))
        return frozenset(found)


def _relevant_keys_by_query(examples: list[TrainingExample], keys: _KeyIndex) -> dict[str, frozenset[int]]:
    """Normalised query text -> keys of every positive (text and id) any record of that query gives."""
    relevant: dict[str, set[int]] = {}
    for example in examples:
        found = relevant.setdefault(normalize_query(example.query), set())
        pos_ids = example.pos_ids or (None,) * len(example.pos)
        for text, doc_id in zip(example.pos, pos_ids, strict=True):
            found |= keys.of(text, doc_id)
    return {query: frozenset(found) for query, found in relevant.items()}
