from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.data.beir import load_beir
from embedtune.errors import DataError
from tests.data.beir_files import (
    CORPUS_LINES,
    QUERIES_LINES,
    assert_data_error,
    make_beir,
    write_lines,
)

SCIFACT = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "scifact"

# ---------------------------------------------------------------------------------------------------- happy paths


def test_load_beir_reads_corpus_queries_and_all_qrels(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")

    result = load_beir(folder)

    assert result.corpus == {
        "d1": "Title One Body one.",
        "d2": "Body two.",
        "d3": "Body three.",
        "d4": "Only a title",
    }
    assert result.queries == {"q1": "first query", "q2": "second query", "q3": "third query"}
    assert result.qrels == {
        "train": {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 0}},
        "test": {"q3": {"d4": 1, "d1": -1}},
    }
    assert all(
        isinstance(score, int) for qrels in result.qrels.values() for d in qrels.values() for score in d.values()
    )
    assert result.source == folder


def test_load_beir_reads_only_requested_splits(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")

    result = load_beir(folder, splits=["test"])

    assert result.qrels == {"test": {"q3": {"d4": 1, "d1": -1}}}


def test_load_beir_skips_blank_lines_and_accepts_crlf(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    write_lines(folder / "corpus.jsonl", ["", '{"_id": "d1", "text": "a doc"}', "   "])
    (folder / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "a query"}\r\n\r\n')
    (folder / "qrels").mkdir()
    (folder / "qrels" / "train.tsv").write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\n\r\n")

    result = load_beir(folder)

    assert result.corpus == {"d1": "a doc"}
    assert result.queries == {"q1": "a query"}
    assert result.qrels == {"train": {"q1": {"d1": 1}}}


def test_corpus_title_and_text_are_joined_and_stripped(tmp_path: Path) -> None:
    folder = make_beir(
        tmp_path / "set",
        corpus=['{"_id": "d1", "title": " Spaced ", "text": "body "}'],
        queries=['{"_id": "q1", "text": "q"}'],
        qrels={"train": ["query-id\tcorpus-id\tscore", "q1\td1\t1"]},
    )

    assert load_beir(folder).corpus == {"d1": "Spaced  body"}


# ---------------------------------------------------------------------------------------------------- folder / files


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_beir(tmp_path / "nope")
    assert_data_error(err, tmp_path / "nope", None, None)
    assert "not found" in err.value.message


def test_folder_that_is_a_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError) as err:
        load_beir(path)
    assert_data_error(err, path, None, None)
    assert "not a folder" in err.value.message


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_missing_jsonl_file_is_a_data_error(tmp_path: Path, name: str) -> None:
    folder = make_beir(tmp_path / "set")
    (folder / name).unlink()
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / name, None, None)
    assert err.value.message == "file not found"


def test_missing_requested_split_names_the_missing_file(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")
    with pytest.raises(DataError) as err:
        load_beir(folder, splits=["train", "dev"])
    assert_data_error(err, folder / "qrels" / "dev.tsv", None, None)
    assert "not found" in err.value.message
    assert "dev.tsv" in str(err.value)


def test_no_qrels_files_is_a_data_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set", qrels={})
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "qrels", None, None)
    assert "no qrels" in err.value.message


def test_invalid_split_name_is_a_value_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")
    with pytest.raises(ValueError, match="invalid split name"):
        load_beir(folder, splits=["../corpus"])


@pytest.mark.parametrize(
    ("name", "lines", "message"),
    [
        ("corpus.jsonl", [], "no documents"),
        ("queries.jsonl", ["", "  "], "no queries"),
    ],
)
def test_jsonl_file_without_records_is_a_data_error(tmp_path: Path, name: str, lines: list[str], message: str) -> None:
    folder = make_beir(tmp_path / "set")
    write_lines(folder / name, lines)
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / name, None, None)
    assert err.value.message == message


# ---------------------------------------------------------------------------------------------------- JSONL records

JSONL_CASES = [
    # (file, bad line, field, message fragment)
    ('{"_id": "x", "text": ', None, "malformed JSON"),
    ("not json at all", None, "malformed JSON"),
    ('["_id", "x"]', None, "expected a JSON object, got array"),
    ('"just a string"', None, "expected a JSON object, got string"),
    ('{"text": "no id"}', "_id", "missing required field"),
    ('{"_id": "x"}', "text", "missing required field"),
    ('{"_id": 7, "text": "int id"}', "_id", "expected a string, got number"),
    ('{"_id": null, "text": "null id"}', "_id", "expected a string, got null"),
    ('{"_id": "  ", "text": "blank id"}', "_id", "empty id"),
    ('{"_id": "x", "text": 3}', "text", "expected a string, got number"),
    ('{"_id": "x", "text": ["a"]}', "text", "expected a string, got array"),
]


@pytest.mark.parametrize(("bad_line", "field", "fragment"), JSONL_CASES)
@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_invalid_jsonl_record(tmp_path: Path, name: str, bad_line: str, field: str | None, fragment: str) -> None:
    folder = make_beir(tmp_path / "set")
    good = CORPUS_LINES if name == "corpus.jsonl" else QUERIES_LINES
    write_lines(folder / name, [good[0], "", bad_line, *good[1:]])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / name, 3, field)
    assert fragment in err.value.message


def test_invalid_utf8_is_a_data_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")
    (folder / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "\xff"}\n')
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "queries.jsonl", 2, None)
    assert "UTF-8" in err.value.message


@pytest.mark.parametrize("text", ['""', '"   "', '"\\n\\t"'])
def test_query_with_empty_text_is_a_data_error(tmp_path: Path, text: str) -> None:
    folder = make_beir(tmp_path / "set")
    write_lines(folder / "queries.jsonl", [QUERIES_LINES[0], f'{{"_id": "q9", "text": {text}}}'])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "queries.jsonl", 2, "text")
    assert err.value.message == "empty text"


@pytest.mark.parametrize(
    "record",
    [
        '{"_id": "d9", "text": ""}',
        '{"_id": "d9", "title": "", "text": " "}',
        '{"_id": "d9", "title": "  ", "text": ""}',
    ],
)
def test_document_with_empty_text_and_title_is_a_data_error(tmp_path: Path, record: str) -> None:
    folder = make_beir(tmp_path / "set")
    write_lines(folder / "corpus.jsonl", [*CORPUS_LINES, record])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "corpus.jsonl", 5, "text")
    assert "empty text and empty title" in err.value.message


def test_document_with_non_string_title_is_a_data_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")
    write_lines(folder / "corpus.jsonl", ['{"_id": "d1", "title": 5, "text": "body"}'])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "corpus.jsonl", 1, "title")
    assert "expected a string" in err.value.message


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_duplicate_id_names_first_line(tmp_path: Path, name: str) -> None:
    folder = make_beir(tmp_path / "set")
    good = CORPUS_LINES if name == "corpus.jsonl" else QUERIES_LINES
    write_lines(folder / name, [*good, "", good[1]])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / name, len(good) + 2, "_id")
    assert "duplicate" in err.value.message
    assert "first seen on line 2" in err.value.message


def test_error_message_locates_the_problem(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")
    write_lines(folder / "queries.jsonl", [QUERIES_LINES[0], '{"_id": "q2", "text": ""}'])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert str(err.value) == f"{folder / 'queries.jsonl'}:2: field 'text': empty text"


# ---------------------------------------------------------------------------------------------------- qrels

HEADER = "query-id\tcorpus-id\tscore"


@pytest.mark.parametrize(
    ("lines", "line", "field", "fragment"),
    [
        (["query-id\tdoc-id\tscore", "q1\td1\t1"], 1, None, "expected the header"),
        (["q1\td1\t1", "q2\td3\t1"], 1, None, "expected the header"),
        (["query-id corpus-id score", "q1\td1\t1"], 1, None, "expected the header"),
        ([HEADER, "q1\td1\t1", "q1\td2"], 3, None, "expected 3 tab-separated columns, got 2"),
        ([HEADER, "q1\td1\t1\textra"], 2, None, "expected 3 tab-separated columns, got 4"),
        ([HEADER, "q1 d1 1"], 2, None, "expected 3 tab-separated columns, got 1"),
        ([HEADER, "q1\td1\tabc"], 2, "score", "expected an integer, got 'abc'"),
        ([HEADER, "q1\td1\t1.5"], 2, "score", "expected an integer, got '1.5'"),
        ([HEADER, "q1\td1\t"], 2, "score", "expected an integer"),
        ([HEADER, "q1\td1\t1_0"], 2, "score", "expected an integer"),
        ([HEADER, "q1\td1\t1", "qX\td2\t1"], 3, "query-id", "unknown query id 'qX'"),
        ([HEADER, "q1\tdX\t1"], 2, "corpus-id", "unknown document id 'dX'"),
        ([HEADER, "q1\td1\t1", "q2\td2\t1", "q1\td1\t2"], 4, None, "duplicate judgement"),
    ],
)
def test_invalid_qrels(tmp_path: Path, lines: list[str], line: int, field: str | None, fragment: str) -> None:
    folder = make_beir(tmp_path / "set", qrels={"train": lines})
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "qrels" / "train.tsv", line, field)
    assert fragment in err.value.message


def test_duplicate_qrels_row_names_first_line(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set", qrels={"train": [HEADER, "q1\td1\t1", "q2\td2\t1", "q1\td1\t2"]})
    with pytest.raises(DataError, match="first seen on line 2"):
        load_beir(folder)


def test_empty_qrels_file_is_a_data_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set", qrels={"train": []})
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert_data_error(err, folder / "qrels" / "train.tsv", None, None)
    assert "expected the header" in err.value.message


def test_qrels_header_only_gives_empty_split(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set", qrels={"train": [HEADER]})
    assert load_beir(folder).qrels == {"train": {}}


# ---------------------------------------------------------------------------------------------------- real data


def test_load_real_scifact() -> None:
    if not SCIFACT.is_dir():
        pytest.skip(f"../shared/datasets/scifact not found: {SCIFACT}")

    result = load_beir(SCIFACT)

    assert len(result.corpus) == 5183
    assert len(result.queries) == 1109
    assert sorted(result.qrels) == ["test", "train"]
    assert len(result.qrels["train"]) == 809
    assert len(result.qrels["test"]) == 300
    assert sum(len(docs) for docs in result.qrels["train"].values()) == 919
    assert not result.qrels["train"].keys() & result.qrels["test"].keys()
