"""prepare_data refuses leaks and unusable splits: shared ids, duplicate texts, empty qrels, too little data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from embedtune.config import DataConfig
from embedtune.data.prepare import prepare_data
from embedtune.errors import DataError
from tests.data.prepare_files import assert_honest, make_folder, question, write_train_file

# ---------------------------------------------------------------------------------------------- leakage checks


@pytest.mark.parametrize(
    ("splits", "first", "second"), [({"dev": [9, 10]}, "dev", "train"), ({"test": [9]}, "test", "train")]
)
def test_query_id_in_two_shipped_splits_names_both_files(
    tmp_path: Path, splits: dict[str, list[int]], first: str, second: str
) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10), **splits})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert err.value.path == folder / "qrels" / f"{first}.tsv"
    assert str(folder / "qrels" / f"{second}.tsv") in err.value.message
    assert "'q9'" in err.value.message


def test_train_queries_with_the_text_of_a_test_query_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_folder(
        tmp_path / "beir", {"train": range(10), "test": [10, 11]}, texts={10: "QUESTION 3  about topic 3"}
    )
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(DataConfig(path=str(folder)))

    assert_honest(prepared)
    assert question(3) not in {example.query for example in prepared.train_examples}
    assert "q3" not in prepared.dev.queries
    assert prepared.counts["dropped_duplicates"] == 1 and len(prepared.train_examples) == 8
    assert "Dropped 1 training queries" in caplog.text


# ------------------------------------------------------------------------------------------ evaluation splits


@pytest.mark.parametrize("split", ["dev", "test"])
def test_eval_split_without_relevant_judgement_is_rejected(tmp_path: Path, split: str) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10), split: [10, 11]})
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq10\td10\t0\nq11\td0\t-1\n")
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert (
        str(err.value)
        == f"{folder / 'qrels' / f'{split}.tsv'}: split '{split}': no judgement with score > 0, nothing to evaluate"
    )


def test_empty_eval_qrels_is_rejected(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10), "test": [10]})
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataError, match="split 'test': no judgement with score > 0"):
        prepare_data(DataConfig(path=str(folder)))


def test_custom_eval_split_is_reported(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10), "heldout": [10, 11, 12]})
    prepared = prepare_data(DataConfig(path=str(folder), eval_split="heldout"))
    assert_honest(prepared)
    assert prepared.report.name == "heldout" and prepared.report_role == "test"
    assert set(prepared.report.queries) == {"q10", "q11", "q12"} and prepared.counts["test_queries"] == 3
    assert len(prepared.train_examples) == 9


def test_missing_custom_eval_split_names_the_split_and_the_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10)})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), eval_split="heldout"))
    assert err.value.path == folder
    assert err.value.message == "data.eval_split 'heldout': no 'qrels/heldout.tsv' in this folder (found: train)"


def test_huge_eval_split_name_gives_a_short_message(tmp_path: Path) -> None:
    train_file = write_train_file(tmp_path / "train.jsonl", ["a b", "c d", "e f"])
    with pytest.raises(ValueError, match="needs data.path") as err:
        prepare_data(DataConfig(train_file=str(train_file), eval_split="h" * 1_000_000))
    assert len(str(err.value)) < 300


def test_custom_eval_split_needs_a_folder_and_a_plain_name(tmp_path: Path) -> None:
    train_file = write_train_file(tmp_path / "train.jsonl", ["a b", "c d", "e f"])
    with pytest.raises(ValueError, match="data.eval_split 'heldout' needs data.path"):
        prepare_data(DataConfig(train_file=str(train_file), eval_split="heldout"))
    with pytest.raises(ValueError, match="invalid split name"):
        prepare_data(DataConfig(train_file=str(train_file), eval_split="../x"))


# ------------------------------------------------------------------------------------------- too little data


@pytest.mark.parametrize(("test_fraction", "setting"), [(0.1, "test_fraction"), (0.0, "dev_fraction")])
def test_one_query_is_too_few_to_carve(tmp_path: Path, test_fraction: float, setting: str) -> None:
    train_file = write_train_file(tmp_path / "train.jsonl", ["only query"])
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(train_file=str(train_file), test_fraction=test_fraction))
    assert err.value.path == train_file
    assert f"data.{setting}=" in err.value.message and "1 distinct judged query left" in err.value.message


def test_two_train_queries_leave_too_few_for_dev_after_test(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(2)})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert err.value.path == folder / "qrels" / "train.tsv"
    assert "too few to carve a 'dev' split out (data.dev_fraction=0.1)" in err.value.message


def test_folder_without_train_qrels_needs_a_train_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"test": range(3)})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert err.value.path == folder / "qrels" / "train.tsv"
    assert "data.train_file" in err.value.message


def test_no_training_example_left_names_the_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"dev": [0, 1], "test": [2, 3]})
    train_file = write_train_file(tmp_path / "train.jsonl", [question(i).upper() for i in range(4)])
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))
    assert err.value.path == train_file
    assert err.value.message == "no training example left once the dev and test queries are held out (4 dropped)"


def test_no_train_query_left_names_the_train_qrels(tmp_path: Path) -> None:
    texts = {2: question(0), 3: question(1)}
    folder = make_folder(tmp_path / "beir", {"train": [0, 1], "dev": [2], "test": [3]}, texts=texts)
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert err.value.path == folder / "qrels" / "train.tsv"
    assert "no training example left" in err.value.message


@pytest.mark.parametrize("shipped", [{}, {"dev": [10, 11], "test": [12, 13]}])
def test_train_split_without_a_relevant_judgement_says_so(tmp_path: Path, shipped: dict[str, list[int]]) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10), **shipped})
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t0\n" for i in range(10))
    )
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert (
        str(err.value)
        == f"{folder / 'qrels' / 'train.tsv'}: split 'train': no judgement with score > 0, nothing to train on"
    )


def test_train_split_without_a_relevant_judgement_cannot_be_carved_beside_a_train_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10)}, score=0)
    train_file = write_train_file(tmp_path / "train.jsonl", ["a b", "c d", "e f"])
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))
    assert err.value.path == folder / "qrels" / "train.tsv"
    assert err.value.message == "no judgement with score > 0: no query to carve a 'test' split from"


def test_no_data_at_all_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="set data.path"):
        prepare_data(DataConfig())


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(tmp_path / "nope")))
    assert err.value.path == tmp_path / "nope" and err.value.message == "folder not found"
