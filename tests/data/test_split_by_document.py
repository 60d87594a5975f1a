"""data.test_split_by=document: carved test and dev queries have no relevant document that is a training positive."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from embedtune.config import DataConfig
from embedtune.data.beir import load_beir, write_beir
from embedtune.data.document_groups import carve_groups, document_groups
from embedtune.data.prepare import PreparedData, prepare_data
from embedtune.data.splits import normalize_query
from embedtune.data.types import EvalSplit, RetrievalSet
from embedtune.errors import DataError
from tests.data.prepare_files import assert_honest, make_folder


def shared_documents_folder(folder: Path, clusters: int = 16) -> Path:
    """A BEIR folder whose train queries come in clusters of 1 to 4 sharing one relevant document (plus their own)."""
    corpus, queries, train = {}, {}, {}
    for cluster in range(clusters):
        corpus[f"shared{cluster}"] = f"shared abstract number {cluster}"
        for member in range(1 + cluster % 4):
            query_id = f"c{cluster}m{member}"
            corpus[f"own-{query_id}"] = f"own abstract of claim {query_id}"
            queries[query_id] = f"claim {member} of cluster {cluster}"
            train[query_id] = {f"shared{cluster}": 1, f"own-{query_id}": 2}
    return write_beir(RetrievalSet(corpus=corpus, queries=queries, qrels={"train": train}), folder)


def relevant(split: EvalSplit) -> list[tuple[str, str]]:
    return [(doc, split.corpus[doc]) for judged in split.qrels.values() for doc, score in judged.items() if score > 0]


def leaked(prepared: PreparedData) -> list[tuple[str, str]]:
    """Relevant (id, text) pairs of dev and reported queries that are training positives, by id or by text."""
    ids = {doc_id for example in prepared.train_examples for doc_id in example.pos_ids}
    texts = {normalize_query(text) for example in prepared.train_examples for text in example.pos}
    splits = {prepared.dev.name: prepared.dev, prepared.report.name: prepared.report}
    return [
        (doc, text)
        for split in splits.values()
        for doc, text in relevant(split)
        if doc in ids or normalize_query(text) in texts
    ]


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 1234])
def test_no_test_or_dev_query_has_a_relevant_document_that_is_a_training_positive(tmp_path, seed):
    folder = shared_documents_folder(tmp_path / "beir")
    config = DataConfig(
        path=str(folder), test_split_by="document", split_seed=seed, test_fraction=0.2, dev_fraction=0.2
    )
    prepared = prepare_data(config)
    assert_honest(prepared)
    assert prepared.report.name == "test" and prepared.report_role == "test"
    assert prepared.report.queries and prepared.dev.queries
    assert leaked(prepared) == []
    everyone = set(prepared.dev.queries) | set(prepared.report.queries)
    everyone |= {example.query for example in prepared.train_examples}
    assert len(everyone) == 40  # no query is dropped: 16 clusters of 1 + 2 + 3 + 4 claims
    assert "by document" in prepared.report.source and "by document" in prepared.dev.source


def test_carving_by_query_leaks_on_the_same_folder(tmp_path):
    folder = shared_documents_folder(tmp_path / "beir")
    configs = [DataConfig(path=str(folder), split_seed=seed, test_fraction=0.2) for seed in range(5)]
    assert any(leaked(prepare_data(config)) for config in configs)


def test_same_seed_gives_the_same_split_and_another_seed_another(tmp_path):
    folder = shared_documents_folder(tmp_path / "beir")

    def splits(seed: int) -> tuple[list[str], list[str]]:
        prepared = prepare_data(DataConfig(path=str(folder), test_split_by="document", split_seed=seed))
        return sorted(prepared.report.queries), sorted(prepared.dev.queries)

    assert splits(42) == splits(42)
    assert any(splits(seed) != splits(42) for seed in range(5))


def test_carved_share_stays_close_to_the_fraction(tmp_path):
    folder = shared_documents_folder(tmp_path / "beir")
    prepared = prepare_data(DataConfig(path=str(folder), test_split_by="document", test_fraction=0.25))
    assert abs(len(prepared.report.queries) - 10) <= 4  # 25 % of 40, give or take the largest group


def test_document_split_logs_what_it_carved(tmp_path, caplog):
    folder = shared_documents_folder(tmp_path / "beir")
    with caplog.at_level(logging.INFO):
        prepare_data(DataConfig(path=str(folder), test_split_by="document"))
    assert "test: carved" in caplog.text and "data.test_split_by=document" in caplog.text


def test_groups_follow_chains_of_shared_documents_and_equal_texts():
    corpus = {"d1": "one", "d2": "two", "d3": "three", "d4": "THREE ", "d5": "five", "d6": "six"}
    queries = {"a": "qa", "b": "qb", "c": "qc", "d": "qd", "e": "Same text", "f": "same  TEXT", "g": "qg"}
    qrels = {
        "a": {"d1": 1},
        "b": {"d1": 1, "d2": 1},
        "c": {"d2": 1},
        "d": {"d3": 1, "d6": 0},  # d4 has d3's text: one document; a score of 0 links nothing
        "e": {"d4": 1},
        "f": {"d5": 1},
        "g": {"d6": 1},
    }
    assert document_groups(queries, qrels, corpus) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]


def test_carve_groups_takes_the_smallest_group_when_none_fits_and_leaves_one_behind():
    rest, carved = carve_groups([["a", "b", "c"], ["d", "e"], ["f", "g", "h"]], [3, 2, 3], 0.1, seed=3)
    assert carved == [1] and rest == [0, 2]
    with pytest.raises(ValueError, match="at least 2"):
        carve_groups([["a", "b"]], [2], 0.5, seed=0)


@pytest.mark.parametrize(
    ("split", "settings"), [("test", {"test_split_by": "document"}), ("dev", {"dev_split_by": "document"})]
)
def test_one_linked_group_cannot_be_carved_by_document(tmp_path, split, settings):
    corpus = {"shared": "shared text", **{f"d{i}": f"doc {i}" for i in range(7)}}
    qrels = {f"q{i}": {"shared": 1, f"d{i}": 1} for i in range(5)}
    queries = {f"q{i}": f"query {i}" for i in range(7)}
    splits = {"train": qrels}
    if split == "dev":  # a shipped test beside the linked training queries
        splits["test"] = {"q5": {"d5": 1}, "q6": {"d6": 1}}
    folder = write_beir(RetrievalSet(corpus=corpus, queries=queries, qrels=splits), tmp_path / "beir")
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), **settings))
    assert err.value.path == folder / "qrels" / "train.tsv"
    assert f"carving '{split}' by document: all 5 distinct judged queries are linked" in err.value.message
    assert f"set data.{split}_split_by=query" in err.value.message


@pytest.mark.parametrize(
    ("splits", "settings", "named"),
    [
        ({"train": range(10), "test": [10, 11]}, {}, "test"),
        ({"train": range(10), "dev": [10, 11]}, {"test_fraction": 0.0}, "dev"),
        ({"train": range(10), "dev": [10, 11], "test": [12]}, {"eval_split": "dev"}, "dev"),
        ({"train": range(10), "heldout": [10, 11]}, {"eval_split": "heldout"}, "heldout"),
    ],
)
def test_a_shipped_reported_split_cannot_be_carved_by_document(tmp_path, splits, settings, named):
    folder = make_folder(tmp_path / "beir", splits)
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), test_split_by="document", **settings))
    assert err.value.path == folder / "qrels" / f"{named}.tsv"
    assert err.value.message.startswith("data.test_split_by=document carves the reported split")


def test_without_a_test_split_the_reported_dev_is_carved_by_document(tmp_path):
    folder = shared_documents_folder(tmp_path / "beir")
    prepared = prepare_data(DataConfig(path=str(folder), test_split_by="document", test_fraction=0.0))
    assert prepared.report is prepared.dev and prepared.report_role == "selection"
    assert leaked(prepared) == []


def test_a_training_file_is_carved_by_its_passages(tmp_path):
    records = []
    for cluster in range(12):
        for member in range(1 + cluster % 3):
            query = f"claim {member} of cluster {cluster}"
            records.append({"query": query, "pos": [f"Shared  passage {cluster}", f"own passage {query}"]})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    for seed in range(4):
        prepared = prepare_data(DataConfig(train_file=str(path), test_split_by="document", split_seed=seed))
        assert_honest(prepared)
        assert leaked(prepared) == []
        assert prepared.counts["train_examples"] + len(prepared.dev.queries) + len(prepared.report.queries) == 24


def test_training_examples_whose_positive_is_held_out_are_dropped_and_counted(tmp_path, caplog):
    """Carving the folder's train qrels does not see a training file's positives: those that leak are dropped."""
    folder = make_folder(tmp_path / "beir", {"train": range(20)})
    records = [
        {"query": f"question {i} about topic {i}", "pos": [f"document {(i + 1) % 20} answers topic {(i + 1) % 20}"]}
        for i in range(20)
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(DataConfig(path=str(folder), train_file=str(path), test_split_by="document"))
    assert leaked(prepared) == []
    carved = {int(query_id[1:]) for query_id in [*prepared.dev.queries, *prepared.report.queries]}
    linked = [i for i in range(20) if i not in carved and (i + 1) % 20 in carved]
    assert linked and prepared.counts["train_examples"] == 20 - len(carved) - len(linked)
    assert f"Dropped {len(linked)} training examples with a positive that is relevant to a carved" in caplog.text


def with_shipped_test(folder: Path, claims: int = 6) -> Path:
    """The shared-documents folder plus a shipped test split whose claims cite the first clusters' shared abstracts."""
    retrieval_set = load_beir(shared_documents_folder(folder.parent / f"{folder.name}-train-only"))
    for claim in range(claims):
        retrieval_set.queries[f"t{claim}"] = f"test claim {claim}"
        retrieval_set.qrels.setdefault("test", {})[f"t{claim}"] = {f"shared{claim}": 1}
    return write_beir(retrieval_set, folder)


def dev_leaks(prepared: PreparedData) -> list[str]:
    """Relevant documents of dev queries that are training positives, by id or by text."""
    ids = {doc_id for example in prepared.train_examples for doc_id in example.pos_ids}
    texts = {normalize_query(text) for example in prepared.train_examples for text in example.pos}
    return [doc for doc, text in relevant(prepared.dev) if doc in ids or normalize_query(text) in texts]


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_dev_split_by_document_selects_on_unseen_documents_beside_a_shipped_test(tmp_path, seed):
    folder = with_shipped_test(tmp_path / "beir")
    prepared = prepare_data(DataConfig(path=str(folder), dev_split_by="document", dev_fraction=0.2, split_seed=seed))
    assert_honest(prepared)
    assert prepared.report.name == "test" and sorted(prepared.report.queries) == [f"t{i}" for i in range(6)]
    assert "by document" in prepared.dev.source and prepared.dev.queries
    assert dev_leaks(prepared) == []
    everyone = set(prepared.dev.queries) | {example.query for example in prepared.train_examples}
    assert len(everyone) == 40  # no training query is dropped


def test_without_dev_split_by_the_same_dev_shares_documents_with_training(tmp_path):
    folder = with_shipped_test(tmp_path / "beir")
    configs = [DataConfig(path=str(folder), dev_fraction=0.2, split_seed=seed) for seed in range(5)]
    assert any(dev_leaks(prepare_data(config)) for config in configs)


def test_dev_split_by_query_beside_test_carved_by_document(tmp_path, caplog):
    folder = shared_documents_folder(tmp_path / "beir")
    with caplog.at_level(logging.INFO):
        prepared = prepare_data(DataConfig(path=str(folder), test_split_by="document", dev_split_by="query"))
    assert "by document" in prepared.report.source and "by document" not in prepared.dev.source
    assert "data.test_split_by=document" in caplog.text and "data.dev_split_by" not in caplog.text
    ids = {doc_id for example in prepared.train_examples for doc_id in example.pos_ids}
    assert not ids & {doc for doc, _ in relevant(prepared.report)}


def test_a_shipped_dev_cannot_be_carved_by_document(tmp_path):
    folder = make_folder(tmp_path / "beir", {"train": range(10), "dev": [10, 11], "test": [12]})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), dev_split_by="document"))
    assert err.value.path == folder / "qrels" / "dev.tsv"
    assert err.value.message.startswith("data.dev_split_by=document carves dev")


def test_carving_the_shipped_test_by_document_points_to_dev_split_by(tmp_path):
    folder = with_shipped_test(tmp_path / "beir")
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), test_split_by="document"))
    assert "set data.dev_split_by=document to select on unseen documents" in err.value.message
