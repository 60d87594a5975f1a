"""prepare_data, case by case: which split comes from where, its size, its corpus and the reported role."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from embedtune.config import DataConfig
from embedtune.data.prepare import examples_from_qrels, prepare_data
from embedtune.data.types import RetrievalSet, TrainingExample
from tests.data.prepare_files import assert_honest, make_folder, question, texts, train_texts, write_train_file

# ------------------------------------------------------------------------------- a. BEIR folder with train and test


def test_folder_with_train_and_test_carves_dev_from_train(tiny_beir: Path) -> None:
    prepared = prepare_data(DataConfig(path=str(tiny_beir)))

    assert_honest(prepared)
    assert prepared.report.name == "test" and prepared.report_role == "test"
    assert set(prepared.report.queries) == {"q10", "q11", "q12", "q13"}
    assert prepared.report.source == str(tiny_beir / "qrels" / "test.tsv")
    assert prepared.dev.name == "dev" and len(prepared.dev.queries) == 1
    assert set(prepared.dev.queries) < {f"q{i}" for i in range(10)}
    assert (
        prepared.dev.source
        == f"carved from {tiny_beir / 'qrels' / 'train.tsv'} (10 % of 10 distinct queries, seed 42)"
    )
    assert len(prepared.dev.corpus) == len(prepared.report.corpus) == 14
    assert prepared.counts == {
        "train_queries": 9,
        "train_examples": 9,
        "dev_queries": 1,
        "test_queries": 4,
        "dropped_duplicates": 0,
    }
    assert prepared.files == [
        tiny_beir / "corpus.jsonl",
        tiny_beir / "queries.jsonl",
        tiny_beir / "qrels" / "test.tsv",
        tiny_beir / "qrels" / "train.tsv",
    ]


def test_folder_with_all_three_splits_uses_them_as_shipped(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(0, 8), "dev": [8, 9], "test": [10, 11, 12]})
    prepared = prepare_data(DataConfig(path=str(folder)))

    assert_honest(prepared)
    assert set(prepared.dev.queries) == {"q8", "q9"}
    assert prepared.dev.source == str(folder / "qrels" / "dev.tsv")
    assert set(prepared.report.queries) == {"q10", "q11", "q12"}
    assert [example.query for example in prepared.train_examples] == [question(i) for i in range(8)]
    assert prepared.train_examples[0].pos == ("document 0 answers topic 0",)


def test_preparation_is_deterministic_and_seeded(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(60)})
    first = prepare_data(DataConfig(path=str(folder), split_seed=1))
    assert first == prepare_data(DataConfig(path=str(folder), split_seed=1))
    others = [prepare_data(DataConfig(path=str(folder), split_seed=seed)).dev.queries for seed in range(2, 6)]
    assert any(dev != first.dev.queries for dev in others)


# ------------------------------------------------------------------------------- b. BEIR folder with train only


def test_folder_with_train_only_carves_test_then_dev(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(20)})
    train_tsv = folder / "qrels" / "train.tsv"
    prepared = prepare_data(DataConfig(path=str(folder)))

    assert_honest(prepared)
    assert len(prepared.report.queries) == 2 and prepared.report.name == "test"
    assert prepared.report.source == f"carved from {train_tsv} (10 % of 20 distinct queries, seed 42)"
    assert len(prepared.dev.queries) == 2
    assert prepared.dev.source == f"carved from {train_tsv} (10 % of 18 distinct queries, seed 42)"
    assert len(prepared.train_examples) == 16
    everything = texts(prepared.dev) | texts(prepared.report) | train_texts(prepared)
    assert everything == {question(i) for i in range(20)}
    assert prepared.counts["test_queries"] == 2 and prepared.counts["dropped_duplicates"] == 0


def test_test_fraction_zero_reports_on_dev_as_selection(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(20)})
    with caplog.at_level(logging.INFO):
        prepared = prepare_data(DataConfig(path=str(folder), test_fraction=0))

    assert_honest(prepared)
    assert prepared.report is prepared.dev and prepared.report_role == "selection"
    assert len(prepared.dev.queries) == 2 and len(prepared.train_examples) == 18
    assert prepared.counts["test_queries"] == 0
    assert "No test split" in caplog.text


def test_eval_split_dev_reports_on_dev_and_carves_no_test(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10)})
    prepared = prepare_data(DataConfig(path=str(folder), eval_split="dev"))
    assert prepared.report is prepared.dev and prepared.report_role == "selection"
    assert len(prepared.train_examples) == 9 and prepared.counts["test_queries"] == 0


# ------------------------------------------------------------------------ c. BEIR folder with test only + file


def test_folder_with_test_only_and_train_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_folder(tmp_path / "beir", {"test": range(4)})
    file_queries = [f"file query {i}" for i in range(19)] + ["  QUESTION 1 about   topic 1 "]
    train_file = write_train_file(tmp_path / "train.jsonl", file_queries)
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))

    assert_honest(prepared)
    assert prepared.report.source == str(folder / "qrels" / "test.tsv")
    assert set(prepared.report.queries) == {"q0", "q1", "q2", "q3"}
    assert len(prepared.report.corpus) == 4  # the folder's corpus
    assert len(prepared.dev.queries) == 2  # 10 % of the 19 file queries that are no test query
    assert prepared.dev.source == f"carved from {train_file} (10 % of 19 distinct queries, seed 42)"
    file_passages = {f"{kind} for {query}" for query in file_queries for kind in ("pos", "neg")}
    assert set(prepared.dev.corpus.values()) == file_passages
    for query_id, judged in prepared.dev.qrels.items():
        assert [prepared.dev.corpus[doc_id] for doc_id in judged] == [f"pos for {prepared.dev.queries[query_id]}"]
    assert len(prepared.train_examples) == 17
    assert prepared.counts["dropped_duplicates"] == 1
    assert "Dropped 1 training examples" in caplog.text
    assert prepared.files[-1] == train_file and folder / "qrels" / "test.tsv" in prepared.files


# ------------------------------------------------------------------- d. BEIR folder with train (or dev) + file


def test_folder_with_train_and_test_plus_train_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(10), "test": [10, 11]})
    file_queries = [question(i) for i in range(11)] + ["new one", "new two", "new three"]
    train_file = write_train_file(tmp_path / "train.jsonl", file_queries)
    prepared = prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))

    assert_honest(prepared)
    assert set(prepared.dev.queries) < {f"q{i}" for i in range(10)} and len(prepared.dev.queries) == 1
    assert str(folder / "qrels" / "train.tsv") in prepared.dev.source
    assert len(prepared.dev.corpus) == 12  # the folder's corpus, not the file's passages
    assert set(prepared.report.queries) == {"q10", "q11"}
    # the file trains; its copies of the dev query and of test query q10 are dropped
    assert prepared.counts["dropped_duplicates"] == 2
    assert len(prepared.train_examples) == 12
    assert all(example.neg for example in prepared.train_examples)


def test_folder_with_train_only_plus_train_file_carves_both_splits_from_the_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(20)})
    train_file = write_train_file(tmp_path / "train.jsonl", [f"file query {i}" for i in range(5)])
    prepared = prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))

    assert_honest(prepared)
    assert len(prepared.report.queries) == 2 and len(prepared.dev.queries) == 2
    assert set(prepared.report.queries) | set(prepared.dev.queries) < {f"q{i}" for i in range(20)}
    assert len(prepared.train_examples) == 5 and prepared.counts["train_queries"] == 5


def test_folder_with_dev_only_plus_train_file_carves_test_from_the_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"dev": range(3)})
    train_file = write_train_file(tmp_path / "train.jsonl", [f"file query {i}" for i in range(10)])
    prepared = prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))

    assert_honest(prepared)
    assert prepared.dev.source == str(folder / "qrels" / "dev.tsv")
    assert prepared.report.source.startswith(f"carved from {train_file}") and len(prepared.report.queries) == 1
    assert len(prepared.train_examples) == 9


# ------------------------------------------------------------------------------------- e. training file alone


def test_train_file_alone_carves_test_then_dev(tmp_path: Path) -> None:
    queries = [f"file query {i}" for i in range(30)]
    train_file = write_train_file(tmp_path / "train.jsonl", queries)
    prepared = prepare_data(DataConfig(train_file=str(train_file)))

    assert_honest(prepared)
    assert len(prepared.report.queries) == 3 and prepared.report_role == "test"
    assert len(prepared.dev.queries) == 3 and len(prepared.train_examples) == 24
    assert prepared.report.corpus == prepared.dev.corpus and len(prepared.dev.corpus) == 60
    assert texts(prepared.dev) | texts(prepared.report) | train_texts(prepared) == set(queries)
    assert prepared.files == [train_file]
    assert prepared.counts == {
        "train_queries": 24,
        "train_examples": 24,
        "dev_queries": 3,
        "test_queries": 3,
        "dropped_duplicates": 0,
    }


def test_train_file_alone_without_test(tmp_path: Path) -> None:
    train_file = write_train_file(tmp_path / "train.jsonl", [f"file query {i}" for i in range(10)])
    prepared = prepare_data(DataConfig(train_file=str(train_file), test_fraction=0))
    assert prepared.report is prepared.dev and prepared.report_role == "selection"
    assert len(prepared.dev.queries) == 1 and len(prepared.train_examples) == 9


@pytest.mark.parametrize("seed", range(6))
def test_repeated_query_texts_in_the_file_stay_in_one_split(tmp_path: Path, seed: int) -> None:
    records = []
    for i in range(10):
        records.append({"query": f"Query {i}", "pos": [f"first answer {i}"]})
        records.append({"query": f"  query   {i} ", "pos": [f"second answer {i}"]})
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(record) + "\n" for record in records))
    prepared = prepare_data(DataConfig(train_file=str(train_file), split_seed=seed, test_fraction=0.2))

    assert_honest(prepared)
    assert prepared.counts["dropped_duplicates"] == 0
    assert len(prepared.train_examples) == 2 * prepared.counts["train_queries"]
    for split in (prepared.dev, prepared.report):
        for query_id, judged in split.qrels.items():
            number = split.queries[query_id].split()[-1]
            assert {split.corpus[doc_id] for doc_id in judged} == {f"first answer {number}", f"second answer {number}"}


# ---------------------------------------------------------------------------------------------------- helpers


def test_examples_from_qrels_keep_only_relevant_documents() -> None:
    retrieval_set = RetrievalSet(
        corpus={"d1": "doc one", "d2": "doc two"},
        queries={"q1": "query one", "q2": "query two"},
        qrels={"train": {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 0}}},
    )
    assert examples_from_qrels(retrieval_set, "train") == [TrainingExample("query one", ("doc one",), pos_ids=("d1",))]
