"""The last bad inputs: lone surrogates in any text, an unreadable qrels folder (or one that is a file)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from embedtune.config import DataConfig
from embedtune.data.beir import load_beir
from embedtune.data.pairs import load_pairs
from embedtune.data.prepare import prepare_data
from embedtune.data.training_file import load_triplets
from embedtune.errors import DataError, check_unicode
from tests.data.prepare_files import make_folder

SURROGATE = "\ud800"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSON (ASCII escapes, so a lone surrogate becomes the escape that decodes back to it)."""
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_check_unicode_names_the_code_point_and_its_position():
    assert check_unicode("fine é 한국어 😀", "f.jsonl", 1, "text") == "fine é 한국어 😀"
    with pytest.raises(DataError) as err:
        check_unicode(f"ab{SURROGATE}c", "f.jsonl", 3, "pos[1]")
    assert str(err.value).startswith("f.jsonl:3: field 'pos[1]': lone surrogate U+D800 at character 3: not valid")
    with pytest.raises(DataError, match="lone surrogate U\\+DFFF at character 1"):
        check_unicode("\udfff", "f.jsonl", 1, "text")


@pytest.mark.parametrize(
    ("file", "field", "line"),
    [
        ("corpus.jsonl", "text", 2),
        ("corpus.jsonl", "title", 1),
        ("corpus.jsonl", "_id", 3),
        ("queries.jsonl", "text", 2),
    ],
)
def test_lone_surrogate_in_a_beir_folder_names_file_line_and_field(tmp_path, file, field, line):
    folder = make_folder(tmp_path / "beir", {"train": range(10), "test": [10, 11]})
    records = [json.loads(text) for text in (folder / file).read_text().splitlines()]
    records[line - 1][field] = f"bad {SURROGATE} text"
    if field == "_id":  # keep the qrels consistent: the record is no longer judged
        records[line - 1][field] = f"zz{SURROGATE}"
    write_jsonl(folder / file, records)
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert (err.value.path, err.value.line, err.value.field) == (folder / file, line, field)
    assert "lone surrogate U+D800" in err.value.message
    with pytest.raises(DataError, match="lone surrogate"):
        load_beir(folder)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"query": f"q {SURROGATE}", "pos": ["p"]}, "query"),
        ({"query": "q", "pos": ["p", f"p {SURROGATE}"]}, "pos[1]"),
        ({"query": "q", "pos": ["p"], "neg": [f"{SURROGATE}n"]}, "neg[0]"),
        ({"query": "q", "pos": ["p"], "pos_ids": [f"d{SURROGATE}"]}, "pos_ids[0]"),
        ({"query": "q", "pos": ["p"], "phase": SURROGATE}, "phase"),
        ({"query": "q", "pos": ["p"], "neg": ["n"], "neg_sources": [["bm25", SURROGATE]]}, "neg_sources[0][1]"),
    ],
)
def test_lone_surrogate_in_a_training_file_names_line_and_field(tmp_path, record, field):
    path = write_jsonl(tmp_path / "train.jsonl", [{"query": "fine", "pos": ["fine"]}, record])
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)
    assert "lone surrogate" in err.value.message


@pytest.mark.parametrize("field", ["text1", "text2", "phase"])
def test_lone_surrogate_in_a_pairs_file_names_line_and_field(tmp_path, field):
    record = {"text1": "a", "text2": "b", "label": 1.0, "phase": "p1"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(record), {**record, field: f"x{SURROGATE}"}])
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)


def test_lone_surrogate_in_a_training_file_stops_prepare_data(tmp_path):
    folder = make_folder(tmp_path / "beir", {"test": [0, 1]})
    records = [{"query": f"question {i}", "pos": [f"passage {i}"]} for i in range(8)]
    records[5]["pos"] = [f"passage {SURROGATE}"]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), train_file=str(path)))
    assert (err.value.path, err.value.line, err.value.field) == (path, 6, "pos[0]")


# ------------------------------------------------------------------------------------- unreadable qrels folder


@pytest.fixture()
def unreadable_qrels(monkeypatch):
    """Make every file under a folder named ``qrels`` fail to stat, as a qrels/ without search permission does."""
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if self.parent.name == "qrels":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)


def test_unreadable_qrels_folder_is_named_not_the_dataset_folder(tmp_path, unreadable_qrels):
    folder = make_folder(tmp_path / "beir", {"train": range(10), "test": [10, 11]})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert err.value.path == folder / "qrels"
    assert str(err.value) == f"{folder / 'qrels'}: cannot read: Permission denied"
    with pytest.raises(DataError) as err:
        load_beir(folder, splits=["test"])
    assert err.value.path == folder / "qrels"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any folder")
def test_qrels_folder_without_permissions_is_named(tmp_path):
    folder = make_folder(tmp_path / "beir", {"train": range(10), "test": [10, 11]})
    (folder / "qrels").chmod(0)
    try:
        with pytest.raises(DataError) as err:
            prepare_data(DataConfig(path=str(folder)))
    finally:
        (folder / "qrels").chmod(0o755)
    assert err.value.path == folder / "qrels" and "Permission denied" in err.value.message


def test_qrels_that_is_a_file_is_named(tmp_path):
    folder = make_folder(tmp_path / "beir", {"train": range(3)})
    for path in (folder / "qrels").iterdir():
        path.unlink()
    (folder / "qrels").rmdir()
    (folder / "qrels").write_text("not a folder\n")
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder)))
    assert err.value.path == folder / "qrels" and err.value.message.startswith("not a folder")
