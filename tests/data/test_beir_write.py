"""Writing BEIR folders (atomic, refusing to overwrite) and listing and hashing their files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from embedtune.data.beir import dataset_files, load_beir, write_beir
from embedtune.data.types import RetrievalSet
from embedtune.errors import DataError
from embedtune.io import file_sha256
from tests.data.beir_files import assert_data_error, make_beir

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
