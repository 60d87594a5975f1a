from __future__ import annotations

import pytest

from embedtune.data.pairs import PairExample
from embedtune.training.pair_dataset import build_pair_dataset


def test_pair_dataset_has_one_row_per_pair_in_order() -> None:
    pairs = [
        PairExample("query a", "passage a", 0.9, "warmup"),
        PairExample("query b", "passage b", 0.0),
        PairExample("query a", "other passage", 1.0),
    ]

    dataset = build_pair_dataset(pairs)

    assert dataset.column_names == ["sentence1", "sentence2", "score"]
    assert dataset["sentence1"] == ["query a", "query b", "query a"]
    assert dataset["sentence2"] == ["passage a", "passage b", "other passage"]
    assert dataset["score"] == pytest.approx([0.9, 0.0, 1.0])
    assert dataset.features["score"].dtype.startswith("float")


def test_pair_dataset_feeds_the_cosent_collator() -> None:
    """The sentence-transformers collator takes ``score`` as the labels and the two text columns as inputs."""
    from sentence_transformers.base.data_collator import DEFAULT_LABEL_COLUMNS

    dataset = build_pair_dataset([PairExample("q", "p", 0.25)])
    label_columns = [column for column in dataset.column_names if column in DEFAULT_LABEL_COLUMNS]
    assert label_columns == ["score"]
    assert dataset[0] == {"sentence1": "q", "sentence2": "p", "score": 0.25}


def test_pair_dataset_needs_pairs() -> None:
    with pytest.raises(ValueError, match="no labelled pairs"):
        build_pair_dataset([])
