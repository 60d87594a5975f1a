from __future__ import annotations

import random

import pytest

from embedtune.data.splits import assert_disjoint_splits, split_dev_queries, with_dev_split
from embedtune.data.types import RetrievalSet

IDS = [f"q{i}" for i in range(100)]


def test_split_is_disjoint_and_complete() -> None:
    train, dev = split_dev_queries(IDS, dev_fraction=0.1, seed=1)
    assert len(dev) == 10
    assert len(train) == 90
    assert not set(train) & set(dev)
    assert set(train) | set(dev) == set(IDS)


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    shuffled = list(IDS)
    random.Random(123).shuffle(shuffled)
    assert split_dev_queries(IDS, seed=7) == split_dev_queries(shuffled, seed=7)
    assert split_dev_queries(iter(reversed(IDS)), seed=7) == split_dev_queries(IDS, seed=7)


def test_split_matches_the_documented_recipe() -> None:
    ids = ["c", "a", "e", "b", "d", "f", "g", "h", "i", "j"]
    expected_order = sorted(ids)
    random.Random(5).shuffle(expected_order)
    train, dev = split_dev_queries(ids, dev_fraction=0.3, seed=5)
    assert dev == sorted(expected_order[:3])
    assert train == sorted(expected_order[3:])


def test_different_seeds_give_different_splits() -> None:
    dev_sets = {tuple(split_dev_queries(IDS, seed=seed)[1]) for seed in range(5)}
    assert len(dev_sets) > 1


def test_duplicates_are_ignored() -> None:
    train, dev = split_dev_queries(["a", "b", "a", "c", "b", "d"], dev_fraction=0.5, seed=0)
    assert len(train) == 2
    assert len(dev) == 2
    assert set(train) | set(dev) == {"a", "b", "c", "d"}


@pytest.mark.parametrize(
    ("n", "fraction", "dev_size"),
    [
        (2, 0.1, 1),
        (2, 0.5, 1),
        (2, 0.9, 1),
        (3, 0.5, 2),
        (10, 0.25, 2),
        (10, 0.26, 3),
        (20, 0.01, 1),
        (1109, 0.1, 111),
    ],
)
def test_dev_size(n: int, fraction: float, dev_size: int) -> None:
    train, dev = split_dev_queries([str(i) for i in range(n)], dev_fraction=fraction)
    assert len(dev) == dev_size
    assert len(train) == n - dev_size


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), True])
def test_invalid_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="dev_fraction"):
        split_dev_queries(IDS, dev_fraction=fraction)


@pytest.mark.parametrize("ids", [[], ["only"], ["same", "same"]])
def test_too_few_ids(ids: list[str]) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        split_dev_queries(ids)


def make_set(qrels: dict[str, dict[str, dict[str, int]]]) -> RetrievalSet:
    query_ids = {qid for split in qrels.values() for qid in split}
    return RetrievalSet(
        corpus={"d1": "doc one", "d2": "doc two"},
        queries={qid: f"text of {qid}" for qid in sorted(query_ids)},
        qrels=qrels,
    )


def test_with_dev_split_carves_dev_out_of_train() -> None:
    train = {f"t{i}": {"d1": 1, "d2": i % 3} for i in range(20)}
    test = {"x1": {"d2": 1}}
    original = make_set({"train": train, "test": test})

    result = with_dev_split(original, dev_fraction=0.2, seed=3)

    train_ids, dev_ids = split_dev_queries(train, dev_fraction=0.2, seed=3)
    assert sorted(result.qrels) == ["dev", "test", "train"]
    assert sorted(result.qrels["dev"]) == dev_ids
    assert sorted(result.qrels["train"]) == train_ids
    assert len(result.qrels["dev"]) == 4
    assert len(result.qrels["train"]) == 16
    for qid, docs in {**result.qrels["train"], **result.qrels["dev"]}.items():
        assert docs == train[qid]
    assert result.qrels["test"] == {"x1": {"d2": 1}}
    assert result.corpus == original.corpus
    assert result.queries == original.queries
    # the input is not modified
    assert sorted(original.qrels) == ["test", "train"]
    assert len(original.qrels["train"]) == 20


def test_with_dev_split_is_deterministic() -> None:
    original = make_set({"train": {f"t{i}": {"d1": 1} for i in range(30)}})
    assert with_dev_split(original, seed=9).qrels == with_dev_split(original, seed=9).qrels


def test_with_dev_split_keeps_an_existing_dev_split() -> None:
    original = make_set({"train": {"a": {"d1": 1}, "b": {"d1": 1}}, "dev": {"c": {"d2": 1}}})
    assert with_dev_split(original) is original


def test_with_dev_split_without_train_fails() -> None:
    with pytest.raises(ValueError, match="no 'train' qrels"):
        with_dev_split(make_set({"test": {"a": {"d1": 1}}}))


def test_with_dev_split_rejects_overlapping_train_and_test() -> None:
    original = make_set({"train": {"a": {"d1": 1}, "b": {"d1": 1}, "c": {"d1": 1}}, "test": {"b": {"d2": 1}}})
    with pytest.raises(ValueError, match="share 1 query id"):
        with_dev_split(original)


def test_assert_disjoint_splits_passes_for_disjoint_splits() -> None:
    assert_disjoint_splits(make_set({"train": {"a": {"d1": 1}}, "dev": {"b": {"d1": 1}}, "test": {"c": {"d1": 1}}}))


def test_assert_disjoint_splits_names_pair_and_example() -> None:
    overlapping = make_set({"train": {"a": {"d1": 1}, "z": {"d1": 1}}, "test": {"z": {"d2": 1}, "c": {"d1": 1}}})
    with pytest.raises(ValueError) as err:
        assert_disjoint_splits(overlapping)
    message = str(err.value)
    assert "'test'" in message
    assert "'train'" in message
    assert "'z'" in message
