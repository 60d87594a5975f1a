from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from embedtune.data.beir import dataset_files, load_beir, write_beir
from embedtune.data.errors import DataError
from embedtune.data.types import RetrievalSet
from embedtune.io import file_sha256

SCIFACT = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "scifact"

CORPUS_LINES = [
    '{"_id": "d1", "title": "Title One", "text": "Body one.", "metadata": {"x": 1}}',
    '{"_id": "d2", "title": "", "text": "Body two."}',
    '{"_id": "d3", "text": "Body three."}',
    '{"_id": "d4", "title": "Only a title", "text": ""}',
]
QUERIES_LINES = [
    '{"_id": "q1", "text": "first query", "metadata": {}}',
    '{"_id": "q2", "text": "second query"}',
    '{"_id": "q3", "text": "third query"}',
]
TRAIN_LINES = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q1\td2\t2", "q2\td3\t0"]
TEST_LINES = ["query-id\tcorpus-id\tscore", "q3\td4\t1", "q3\td1\t-1"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def make_beir(
    folder: Path,
    corpus: list[str] | None = None,
    queries: list[str] | None = None,
    qrels: dict[str, list[str]] | None = None,
) -> Path:
    write_lines(folder / "corpus.jsonl", CORPUS_LINES if corpus is None else corpus)
    write_lines(folder / "queries.jsonl", QUERIES_LINES if queries is None else queries)
    for split, lines in ({"train": TRAIN_LINES, "test": TEST_LINES} if qrels is None else qrels).items():
        write_lines(folder / "qrels" / f"{split}.tsv", lines)
    return folder


def assert_data_error(err: pytest.ExceptionInfo[DataError], path: Path, line: int | None, field: str | None) -> None:
    assert err.type is DataError
    assert err.value.path == path
    assert err.value.line == line
    assert err.value.field == field


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


# ---------------------------------------------------------------------------------------------------- writing


def sample_set() -> RetrievalSet:
    return RetrievalSet(
        corpus={"d1": "Title One Body one.", "d2": 'Body "two" with\ttab and ünïcode'},
        queries={"q1": "first query", "q2": "second query"},
        qrels={"train": {"q1": {"d1": 1, "d2": 0}}, "test": {"q2": {"d2": 2}}},
    )


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    original = sample_set()

    folder = write_beir(original, tmp_path / "out")
    loaded = load_beir(folder)

    assert folder == tmp_path / "out"
    assert loaded.corpus == original.corpus
    assert loaded.queries == original.queries
    assert loaded.qrels == original.qrels
    assert loaded.source == folder


def test_write_beir_file_contents(tmp_path: Path) -> None:
    folder = write_beir(sample_set(), tmp_path / "out")

    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert corpus == [
        {"_id": "d1", "title": "", "text": "Title One Body one."},
        {"_id": "d2", "title": "", "text": 'Body "two" with\ttab and ünïcode'},
    ]
    queries = [json.loads(line) for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert queries == [{"_id": "q1", "text": "first query"}, {"_id": "q2", "text": "second query"}]
    assert (folder / "qrels" / "train.tsv").read_bytes() == b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n"
    assert (folder / "qrels" / "test.tsv").read_bytes() == b"query-id\tcorpus-id\tscore\nq2\td2\t2\n"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "corpus.jsonl",
        "qrels",
        "qrels/test.tsv",
        "qrels/train.tsv",
        "queries.jsonl",
    ]


def test_write_beir_into_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    write_beir(sample_set(), tmp_path / "out")
    assert (tmp_path / "out" / "corpus.jsonl").is_file()


def test_write_beir_refuses_non_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        write_beir(sample_set(), folder)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_write_beir_refuses_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("x")
    with pytest.raises(FileExistsError):
        write_beir(sample_set(), path)


def test_write_beir_is_atomic_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def recording_replace(src: str, dst: str | Path) -> None:
        replaced.append((Path(src), Path(dst)))
        assert Path(src).parent == Path(dst).parent
        assert Path(src).is_file()
        assert not Path(dst).exists()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    folder = write_beir(sample_set(), tmp_path / "out")

    assert sorted(dst.relative_to(folder).as_posix() for _, dst in replaced) == [
        "corpus.jsonl",
        "qrels/test.tsv",
        "qrels/train.tsv",
        "queries.jsonl",
    ]
    assert not list(folder.rglob("*.tmp"))


def test_write_beir_removes_temp_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(src: str, dst: str | Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_beir(sample_set(), tmp_path / "out")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------------------------------- hashing


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 10_000  # 2.5 MB: more than one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_dataset_files_lists_beir_files_sorted(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "set")
    (folder / "README.md").write_text("not data")
    (folder / "qrels" / "notes.txt").write_text("not data")

    assert dataset_files(folder) == [
        folder / "corpus.jsonl",
        folder / "qrels" / "test.tsv",
        folder / "qrels" / "train.tsv",
        folder / "queries.jsonl",
    ]


def test_dataset_files_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        dataset_files(tmp_path / "nope")
    assert_data_error(err, tmp_path / "nope", None, None)


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
