from __future__ import annotations

import random
from pathlib import Path

import pytest

from embedtune.data.splits import (
    carve_queries,
    check_disjoint_splits,
    group_by_hash_split,
    group_by_normalized_text,
    hash_split,
    normalize_query,
    seeded_sample,
    split_dev_queries,
)
from embedtune.errors import DataError

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


def test_carve_queries_is_split_dev_queries_with_any_setting_name() -> None:
    assert carve_queries(IDS, 0.2, seed=4) == split_dev_queries(IDS, dev_fraction=0.2, seed=4)
    rest, carved = carve_queries(IDS, 0.05, seed=4)
    assert len(carved) == 5 and len(rest) == 95 and not set(rest) & set(carved)
    with pytest.raises(ValueError, match="test_fraction must be strictly between 0 and 1"):
        carve_queries(IDS, 0.0, seed=1, setting="test_fraction")
    with pytest.raises(ValueError, match=r"at least 2 .*\(test_fraction\)"):
        carve_queries(["only"], 0.5, seed=1, setting="test_fraction")


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("What is X?", "what is x?"), ("  what\tis \n x? ", "what is x?"), ("STRASSE", "strasse"), ("Straße", "strasse")],
)
def test_normalize_query(text: str, normalized: str) -> None:
    assert normalize_query(text) == normalized


def test_group_by_normalized_text() -> None:
    groups = group_by_normalized_text({"b": "Apple pie", "a": "apple  PIE", "c": "pear"})
    assert groups == {"apple pie": ["a", "b"], "pear": ["c"]}
    assert list(groups) == ["apple pie", "pear"]


def test_check_disjoint_splits_passes_for_disjoint_splits(tmp_path: Path) -> None:
    qrels = {"train": {"a": {"d1": 1}}, "dev": {"b": {"d1": 1}}, "test": {"c": {"d1": 1}}}
    check_disjoint_splits(qrels, {split: tmp_path / f"{split}.tsv" for split in qrels})


def test_check_disjoint_splits_names_both_files_and_an_example(tmp_path: Path) -> None:
    qrels = {"train": {"a": {"d1": 1}, "z": {"d1": 1}}, "test": {"z": {"d2": 1}, "c": {"d1": 1}}}
    files = {split: tmp_path / f"{split}.tsv" for split in qrels}
    with pytest.raises(DataError) as err:
        check_disjoint_splits(qrels, files)
    assert err.value.path == files["test"] and err.value.field == "query-id"
    assert str(files["train"]) in err.value.message
    assert "shares 1 query id(s)" in err.value.message and "'z'" in err.value.message


def test_check_disjoint_splits_shortens_a_huge_id(tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    qrels = {"dev": {huge: {"d": 1}}, "train": {huge: {"d": 1}}}
    with pytest.raises(DataError) as err:
        check_disjoint_splits(qrels, {split: tmp_path / f"{split}.tsv" for split in qrels})
    assert len(str(err.value)) < 300 + 2 * len(str(tmp_path))


def test_hash_split_is_stable_and_validates_fractions() -> None:
    names = ("train", "dev", "test")
    # fixed by SHA-256 of the key: these values must never change, or the demo data set would change
    assert hash_split("email", names, (0.8, 0.1, 0.1)) == "train"
    assert hash_split("http", names, (0.8, 0.1, 0.1)) == "dev"
    assert hash_split("anything", names, (0.0, 0.0, 1.0)) == "test"
    assert hash_split("anything", names, (1.0, 0.0, 0.0)) == "train"
    with pytest.raises(ValueError, match="3 non-negative"):
        hash_split("x", names, (0.5, 0.5))
    with pytest.raises(ValueError, match="sum to 1"):
        hash_split("x", names, (0.5, 0.5, 0.5))


def test_group_by_hash_split_keeps_equal_keys_together() -> None:
    items = [f"{package}.module{i}" for package in ("email", "json", "os", "xml", "http") for i in range(3)]
    groups = group_by_hash_split(items, lambda item: item.split(".")[0], ("a", "b"), (0.5, 0.5))
    assert sorted(groups) == ["a", "b"] and sorted(groups["a"] + groups["b"]) == sorted(items)
    for package in ("email", "json", "os", "xml", "http"):
        assert sum(any(item.startswith(package) for item in group) for group in groups.values()) == 1


def test_seeded_sample_is_deterministic_and_sorted() -> None:
    shuffled = list(IDS)
    random.Random(3).shuffle(shuffled)
    sample = seeded_sample(shuffled, 10, seed=5, key=str)
    assert sample == seeded_sample(IDS, 10, seed=5, key=str) == sorted(sample) and len(sample) == 10
    assert seeded_sample(shuffled, None, seed=5, key=str) == sorted(IDS)
    assert seeded_sample(IDS[:3], 10, seed=5, key=str) == sorted(IDS[:3])
