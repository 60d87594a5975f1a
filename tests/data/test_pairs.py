"""Labelled-pair training files: validation, grouping into examples, detection, and prepare_data with pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.config import DataConfig
from embedtune.data.pairs import (
    RELEVANT_LABEL,
    PairExample,
    is_pairs_file,
    load_pair_groups,
    load_pairs,
    pairs_as_examples,
    pairs_as_training_examples,
    pairs_outside,
)
from embedtune.data.prepare import prepare_data
from embedtune.data.splits import normalize_query
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError
from tests.data.prepare_files import assert_honest, make_folder, question, texts, train_texts, write_train_file

GOOD = '{"text1": "q0", "text2": "p0", "label": 1}'


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_pairs(path: Path, records: list[dict]) -> Path:
    return write_lines(path, [json.dumps(record) for record in records])


def graded_records(queries: list[str]) -> list[dict]:
    """Per query: a relevant pair (0.9), an irrelevant one (0.1) and a positive-only 0/1 pair."""
    records = []
    for query in queries:
        records.append({"text1": query, "text2": f"good answer to {query}", "label": 0.9})
        records.append({"text1": query, "text2": f"poor answer to {query}", "label": 0.1, "phase": "hard"})
        records.append({"text1": query, "text2": f"exact answer to {query}", "label": 1})
    return records


# ---------------------------------------------------------------------------------------------------- load_pairs


def test_loads_pairs_with_and_without_phase(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "pairs.jsonl",
        [
            '{"text1": "what is x", "text2": "x is y", "label": 0.75, "phase": "warmup"}',
            "",
            '{"text1": "q2", "text2": "p2", "label": 0, "source": "ignored"}',
            '{"text1": "q3", "text2": "p3", "label": 1, "phase": ""}',
        ],
    )

    pairs = load_pairs(path)

    assert pairs == [
        PairExample("what is x", "x is y", 0.75, "warmup"),
        PairExample("q2", "p2", 0.0, None),
        PairExample("q3", "p3", 1.0, ""),
    ]
    assert all(type(pair.label) is float for pair in pairs)


def test_accepts_str_path(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "pairs.jsonl", [GOOD])
    assert load_pairs(str(path)) == [PairExample("q0", "p0", 1.0)]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_pairs(tmp_path / "nope.jsonl")
    assert err.value.path == tmp_path / "nope.jsonl"
    assert (err.value.line, err.value.field, err.value.message) == (None, None, "file not found")


@pytest.mark.parametrize("lines", [[], ["", "   "]])
def test_file_without_records(tmp_path: Path, lines: list[str]) -> None:
    path = write_lines(tmp_path / "pairs.jsonl", lines)
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, None, None)
    assert err.value.message == "no labelled pairs"


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ('{"text1": "q", "text2": ', None, "malformed JSON"),
        ('["q", "p", 1]', None, "expected a JSON object"),
        ('{"text2": "p", "label": 1}', "text1", "missing required field"),
        ('{"text1": "q", "label": 1}', "text2", "missing required field"),
        ('{"text1": 3, "text2": "p", "label": 1}', "text1", "expected a non-empty string, got number"),
        ('{"text1": null, "text2": "p", "label": 1}', "text1", "expected a non-empty string, got null"),
        ('{"text1": "q", "text2": ["p"], "label": 1}', "text2", "expected a non-empty string, got array"),
        ('{"text1": "", "text2": "p", "label": 1}', "text1", "empty text"),
        ('{"text1": "q", "text2": " \\t ", "label": 1}', "text2", "empty text"),
        ('{"text1": "q", "text2": "p"}', "label", "missing required field"),
        ('{"text1": "q", "text2": "p", "label": "1"}', "label", "expected a number in [0, 1], got string"),
        ('{"text1": "q", "text2": "p", "label": true}', "label", "got boolean"),
        ('{"text1": "q", "text2": "p", "label": false}', "label", "got boolean"),
        ('{"text1": "q", "text2": "p", "label": null}', "label", "got null"),
        ('{"text1": "q", "text2": "p", "label": [1]}', "label", "got array"),
        ('{"text1": "q", "text2": "p", "label": NaN}', "label", "finite"),
        ('{"text1": "q", "text2": "p", "label": Infinity}', "label", "finite"),
        ('{"text1": "q", "text2": "p", "label": -Infinity}', "label", "finite"),
        ('{"text1": "q", "text2": "p", "label": 1e400}', "label", "finite"),
        ('{"text1": "q", "text2": "p", "label": 1.0000001}', "label", "in [0, 1], got 1.0000001"),
        ('{"text1": "q", "text2": "p", "label": -0.1}', "label", "in [0, 1], got -0.1"),
        ('{"text1": "q", "text2": "p", "label": 5}', "label", "in [0, 1], got 5"),
        ('{"text1": "q", "text2": "p", "label": 1, "phase": 2}', "phase", "expected a string, got number"),
        ('{"text1": "q", "text2": "p", "label": 1, "phase": null}', "phase", "expected a string, got null"),
    ],
)
def test_invalid_record(tmp_path: Path, record: str, field: str | None, fragment: str) -> None:
    path = write_lines(tmp_path / "pairs.jsonl", [GOOD, "", record, GOOD])
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert err.type is DataError
    assert (err.value.path, err.value.line, err.value.field) == (path, 3, field)
    assert fragment in err.value.message


def test_error_message_locates_the_problem(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "pairs.jsonl", ['{"text1": "q", "text2": "p", "label": 2}'])
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert str(err.value) == f"{path}:1: field 'label': expected a similarity in [0, 1], got 2"


# ------------------------------------------------------------------------------------------------- is_pairs_file


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([GOOD], True),
        (["", "  ", GOOD], True),
        (['{"text1": "q", "label": "broken record, still a pairs file"}'], True),
        ([GOOD.replace("text1", "query")], False),
        (['{"query": "q", "pos": ["p"]}', GOOD], False),
        (['{"text1": "q", "text2": ', GOOD], False),
        (['["text1"]'], False),
        (['"text1"'], False),
        ([], False),
    ],
)
def test_is_pairs_file_reads_the_first_record(tmp_path: Path, lines: list[str], expected: bool) -> None:
    assert is_pairs_file(write_lines(tmp_path / "train.jsonl", lines)) is expected


def test_is_pairs_file_is_false_for_unreadable_paths(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_bytes(b"\xff\xfe not utf-8\n")
    assert is_pairs_file(tmp_path / "nope.jsonl") is False
    assert is_pairs_file(tmp_path) is False
    assert is_pairs_file(tmp_path / "bad.jsonl") is False
    assert is_pairs_file(str(tmp_path / "x\0y.jsonl")) is False


def test_a_malformed_first_line_gets_the_triplets_loaders_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", ['{"text1": "q", ', GOOD])
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(train_file=str(path)))
    assert (err.value.path, err.value.line, err.value.field) == (path, 1, None)
    assert "malformed JSON" in err.value.message


# --------------------------------------------------------------------------------------------- grouping pairs


def test_pairs_group_by_text1_in_first_appearance_order() -> None:
    pairs = [
        PairExample("b query", "b1", 0.2),
        PairExample("a query", "a1", RELEVANT_LABEL),
        PairExample("b query", "b2", 1.0),
        PairExample("a query", "a2", 0.49),
        PairExample("a query", "a3", 0.8),
        PairExample("no positive", "n1", 0.3),
        PairExample("B query", "b3", 1.0),
        PairExample("b query", "b4", 0.0),
    ]

    assert pairs_as_examples(pairs) == [
        TrainingExample("b query", pos=("b2",), neg=("b1", "b4")),
        TrainingExample("a query", pos=("a1", "a3"), neg=("a2",)),
        TrainingExample("B query", pos=("b3",)),
    ]


def test_relevant_label_is_the_middle_of_the_scale() -> None:
    assert RELEVANT_LABEL == 0.5
    assert pairs_as_examples([PairExample("q", "p", 0.4999)]) == []


def test_pairs_outside_drops_held_out_queries_by_normalised_text() -> None:
    pairs = [PairExample("Keep me", "p", 1.0), PairExample("  DROP   me ", "p", 0.0), PairExample("drop me", "p", 1.0)]
    assert pairs_outside(pairs, {normalize_query("Drop me")}) == [pairs[0]]


def test_load_pair_groups_needs_a_relevant_pair(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl", [{"text1": "q", "text2": "p", "label": 0.3}])
    with pytest.raises(DataError) as err:
        load_pair_groups(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, None, "label")
    assert "no pair labelled >= 0.5" in err.value.message


def test_load_pair_groups_returns_pairs_and_examples(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl", graded_records(["q1"]))
    pairs, examples = load_pair_groups(path)
    assert [pair.text2 for pair in pairs] == ["good answer to q1", "poor answer to q1", "exact answer to q1"]
    assert examples == [TrainingExample("q1", ("good answer to q1", "exact answer to q1"), ("poor answer to q1",))]


# ------------------------------------------------------------------------------------- prepare_data with pairs


def pair_texts(pairs: list[PairExample]) -> set[str]:
    return {normalize_query(pair.text1) for pair in pairs}


def test_pairs_file_alone_carves_splits_by_text1(tmp_path: Path) -> None:
    queries = [f"file query {i}" for i in range(30)]
    unjudged = [{"text1": f"unjudged {i}", "text2": f"loose passage {i}", "label": 0.2} for i in range(2)]
    train_file = write_pairs(tmp_path / "pairs.jsonl", graded_records(queries) + unjudged)

    prepared = prepare_data(DataConfig(train_file=str(train_file)))

    assert_honest(prepared)
    assert prepared.train_pairs is not None
    held_out = texts(prepared.dev) | texts(prepared.report)
    assert len(prepared.dev.queries) == 3 and len(prepared.report.queries) == 3
    assert pair_texts(prepared.train_pairs).isdisjoint(held_out)
    assert pair_texts(prepared.train_pairs) == (set(queries) - held_out) | {"unjudged 0", "unjudged 1"}
    assert len(prepared.train_pairs) == 24 * 3 + 2
    assert train_texts(prepared) == set(queries) - held_out
    # the carved splits rank every passage of the file's judged queries, relevant where labelled >= 0.5
    assert len(prepared.dev.corpus) == 90
    for split in (prepared.dev, prepared.report):
        for query_id, judged in split.qrels.items():
            query = split.queries[query_id]
            relevant = {split.corpus[doc_id] for doc_id in judged}
            assert relevant == {f"good answer to {query}", f"exact answer to {query}"}
    assert prepared.counts == {
        "train_queries": 24,
        "train_examples": 24,
        "dev_queries": 3,
        "test_queries": 3,
        "dropped_duplicates": 0,
        "train_pairs": 74,
    }
    assert prepared.files == [train_file]


@pytest.mark.parametrize("seed", range(4))
def test_respelled_text1_stays_in_one_split(tmp_path: Path, seed: int) -> None:
    records = []
    for i in range(10):
        records.append({"text1": f"Query {i}", "text2": f"first answer {i}", "label": 1})
        records.append({"text1": f"  query   {i} ", "text2": f"second answer {i}", "label": 0.0})
    train_file = write_pairs(tmp_path / "pairs.jsonl", records)

    prepared = prepare_data(DataConfig(train_file=str(train_file), split_seed=seed, test_fraction=0.2))

    assert_honest(prepared)
    assert prepared.train_pairs is not None
    assert pair_texts(prepared.train_pairs).isdisjoint(texts(prepared.dev) | texts(prepared.report))
    assert len(prepared.train_pairs) == 2 * prepared.counts["train_queries"] == prepared.counts["train_pairs"]


def test_pairs_of_a_shipped_test_query_are_dropped(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"test": range(4)})
    queries = [f"file query {i}" for i in range(19)] + ["  QUESTION 1 about   topic 1 "]
    train_file = write_pairs(tmp_path / "pairs.jsonl", graded_records(queries))
    prepared = prepare_data(DataConfig(path=str(folder), train_file=str(train_file)))

    assert_honest(prepared)
    assert prepared.train_pairs is not None
    assert normalize_query(question(1)) not in pair_texts(prepared.train_pairs)
    assert len(prepared.dev.queries) == 2 and prepared.counts["dropped_duplicates"] == 1
    assert prepared.counts["train_pairs"] == len(prepared.train_pairs) == 17 * 3


def test_triplets_file_has_no_train_pairs(tmp_path: Path) -> None:
    train_file = write_train_file(tmp_path / "train.jsonl", [f"file query {i}" for i in range(10)])
    prepared = prepare_data(DataConfig(train_file=str(train_file)))
    assert prepared.train_pairs is None and "train_pairs" not in prepared.counts


def test_folder_training_data_has_no_train_pairs(tmp_path: Path) -> None:
    prepared = prepare_data(DataConfig(path=str(make_folder(tmp_path / "beir", {"train": range(20)}))))
    assert prepared.train_pairs is None and "train_pairs" not in prepared.counts


def test_pairs_file_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    train_file = write_lines(tmp_path / "pairs.jsonl", [GOOD, '{"text1": "q", "text2": "p", "label": 1.5}'])
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(train_file=str(train_file)))
    assert (err.value.path, err.value.line, err.value.field) == (train_file, 2, "label")


def test_pairs_become_training_rows_per_text1_and_phase():
    pairs = [
        PairExample("q0", "p0", 1.0, "easy"),
        PairExample("q0", "n0", 0.0, "easy"),
        PairExample("q1", "n1", 0.2, "hard"),  # no relevant pair: no row
        PairExample("q0", "p0b", 0.7, "hard"),
        PairExample("q0", "n0b", 0.49, "hard"),
        PairExample("q0", "n0c", 0.0, "easy"),
        PairExample("q2", "p2", 0.5),
    ]

    rows = pairs_as_training_examples(pairs)

    assert rows == [
        TrainingExample("q0", ("p0",), ("n0", "n0c"), phase="easy"),
        TrainingExample("q0", ("p0b",), ("n0b",), phase="hard"),
        TrainingExample("q2", ("p2",), (), phase=None),
    ]
    assert [row.phase for row in rows] == ["easy", "hard", None]
    assert all(row.neg_weights == (1.0,) * len(row.neg) for row in rows)
