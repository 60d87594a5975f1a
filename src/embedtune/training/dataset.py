"""Turn validated training examples into the trainer's dataset (one row per query-positive pair)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from datasets import Dataset

from embedtune.data.splits import normalize_query
from embedtune.data.types import TrainingExample
from embedtune.losses.false_negatives import FalseNegativeTable

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


def build_train_dataset(
    examples: list[TrainingExample], max_hard_negatives: int, pad_negatives: bool = True
) -> TrainDataset:
    """Build the trainer's dataset: one row per (query, positive) pair with the query's first hard negatives.

    With ``pad_negatives``, ``n`` is the most negatives any record has (capped) and a query with fewer is padded with
    its positive at weight 0, which :class:`embedtune.losses.info_nce.InfoNCELoss` masks out. Without it (losses that
    know no weights, e.g. sentence-transformers' MNRL), ``n`` is the fewest negatives of any record that has some
    (capped), and a record without any borrows the first ``n`` negatives of the next record (in file order, wrapping
    around) none of whose negatives is relevant to its query: a few records left without negatives by mining would
    otherwise take the hard negatives away from every row. The borrowed rows are counted in the log.

    Args:
        examples: Training records.
        max_hard_negatives: Upper bound on ``n``.
        pad_negatives: Pad to the longest negative list instead of cutting to the shortest.

    Returns:
        The dataset (``sum(len(e.pos) for e in examples)`` rows) and its false-negative table.

    Raises:
        ValueError: if there are more rows than the float32 label can index (2**24).
    """
    counts = [len(example.neg) for example in examples] or [0]
    with_negatives = [count for count in counts if count > 0] or [0]
    num_negatives = min(max_hard_negatives, max(counts) if pad_negatives else min(with_negatives))
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
            labels.append([float(len(labels))] + row_weights + [0.0] * padding)
            candidates = [keys.of(positive, positive_id)] + [keys.of(text) for text in negatives]
            candidate_keys.append(tuple(candidates))
    columns["label"] = labels
    row_relevant = [relevant[normalize_query(example.query)] for example in examples for _ in range(len(example.pos))]
    table = FalseNegativeTable(candidate_keys, row_relevant)
    return TrainDataset(Dataset.from_dict(columns), table, num_negatives)


def _borrow_negatives(
    examples: list[TrainingExample], count: int, relevant: dict[str, frozenset[int]], keys: _KeyIndex
) -> list[TrainingExample]:
    """Give each record without negatives the first ``count`` negatives of the next record whose negatives all fit."""
    filled = list(examples)
    borrowed = 0
    for index, example in enumerate(examples):
        if example.neg:
            continue
        query_keys = relevant[normalize_query(example.query)]
        for offset in range(1, len(examples)):
            donor = examples[(index + offset) % len(examples)].neg[:count]
            if len(donor) == count and not any(keys.of(text) & query_keys for text in donor):
                filled[index] = replace(example, neg=donor, neg_weights=(1.0,) * count, neg_ids=())
                borrowed += 1
                break
        else:
            raise ValueError(f"no record has {count} negatives unrelated to query {example.query[:80]!r} to borrow")
    if borrowed:
        logger.warning(
            "%d of %d records have no hard negative; without padding (loss.name=mnrl) each borrows %d negatives of "
            "another record (loss.name=infonce pads and masks instead)",
            borrowed,
            len(examples),
            count,
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
