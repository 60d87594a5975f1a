"""Hand-made BEIR folders for the loader tests: a 4-document, 3-query set with train and test qrels."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.errors import DataError

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
