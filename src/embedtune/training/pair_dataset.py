"""Turn validated labelled pairs into the trainer's dataset for the pair objectives (CoSENT, cosine MSE)."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset

from embedtune.data.pairs import PairExample

QUERY_COLUMN = "sentence1"
"""Column holding ``text1``, the query side: it gets the query prompt."""
PASSAGE_COLUMN = "sentence2"
"""Column holding ``text2``, the passage side: it gets the document prompt."""
SCORE_COLUMN = "score"
"""Column holding the label; sentence-transformers reads it as the loss's labels, never as text to embed."""


def build_pair_dataset(pairs: Sequence[PairExample]) -> Dataset:
    """Build the trainer's dataset for ``CoSENTLoss`` / ``CosineSimilarityLoss``: one row per labelled pair.

    Columns, in this order: ``sentence1`` (``text1``, the query side, which gets the query prompt), ``sentence2``
    (``text2``, the passage side, which gets the document prompt) and ``score`` (the label as a float in
    ``[0, 1]``). sentence-transformers embeds the text columns in order and passes ``score`` to the loss as its
    labels (``score`` is one of its default label column names).

    Args:
        pairs: Validated labelled pairs (see :func:`embedtune.data.pairs.load_pairs`); their ``phase`` is not used.

    Returns:
        A ``datasets.Dataset`` with ``len(pairs)`` rows, in input order.

    Raises:
        ValueError: if ``pairs`` is empty (a dataset without rows cannot train).
    """
    if not pairs:
        raise ValueError("no labelled pairs to build a training dataset from")
    return Dataset.from_dict(
        {
            QUERY_COLUMN: [pair.text1 for pair in pairs],
            PASSAGE_COLUMN: [pair.text2 for pair in pairs],
            SCORE_COLUMN: [float(pair.label) for pair in pairs],
        }
    )
