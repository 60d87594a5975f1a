"""Turn validated training examples into the trainer's dataset (one row per query-positive pair)."""

from __future__ import annotations

from datasets import Dataset

from embedtune.data.types import TrainingExample


def build_train_dataset(examples: list[TrainingExample], max_hard_negatives: int) -> Dataset:
    """Build the trainer's dataset: one row per (query, positive) pair with the query's first hard negatives.

    Columns: ``anchor``, ``positive``, ``negative_1`` ... ``negative_n`` and, when ``n > 0``, ``label`` holding the
    ``n`` weights. A query with fewer than ``n`` negatives is padded with its positive at weight 0, which
    :class:`embedtune.losses.info_nce.InfoNCELoss` masks out.

    Args:
        examples: Training records.
        max_hard_negatives: Upper bound on ``n``.

    Returns:
        A ``datasets.Dataset`` with ``sum(len(e.pos) for e in examples)`` rows.
    """
    num_negatives = min(max_hard_negatives, max((len(example.neg) for example in examples), default=0))
    columns: dict[str, list] = {"anchor": [], "positive": []}
    columns.update({f"negative_{j + 1}": [] for j in range(num_negatives)})
    weights: list[list[float]] = []
    for example in examples:
        negatives = list(example.neg[:num_negatives])
        row_weights = list(example.neg_weights[:num_negatives])
        for positive in example.pos:
            padding = num_negatives - len(negatives)
            columns["anchor"].append(example.query)
            columns["positive"].append(positive)
            for j, text in enumerate(negatives + [positive] * padding):
                columns[f"negative_{j + 1}"].append(text)
            weights.append(row_weights + [0.0] * padding)
    if num_negatives:
        columns["label"] = weights
    return Dataset.from_dict(columns)
