"""Loader limits: 32-bit qrels scores, float32 weights, short messages for huge input, any failure as a DataError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.data import beir, training_file
from embedtune.data.beir import dataset_files, load_beir, load_corpus, load_qrels
from embedtune.data.training_file import load_triplets
from embedtune.errors import DataError

HEADER = "query-id\tcorpus-id\tscore"
HUGE = "x" * 1_000_000
MAX_MESSAGE = 300


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def make_beir(folder: Path, qrels: list[str]) -> Path:
    write_lines(folder / "corpus.jsonl", ['{"_id": "d1", "text": "doc one"}', '{"_id": "d2", "text": "doc two"}'])
    write_lines(folder / "queries.jsonl", ['{"_id": "q1", "text": "query one"}'])
    write_lines(folder / "qrels" / "test.tsv", qrels)
    return folder


def assert_short(error: DataError, path: Path) -> None:
    assert len(str(error)) - len(str(path)) < MAX_MESSAGE


# ------------------------------------------------------------------------------------------------ qrels scores


@pytest.mark.parametrize("score", ["2147483647", "-2147483648", "0", "-0", "0000000000000000001", "-1"])
def test_scores_within_int32_are_accepted(tmp_path: Path, score: str) -> None:
    folder = make_beir(tmp_path / "set", [HEADER, f"q1\td1\t{score}"])
    assert load_beir(folder).qrels["test"] == {"q1": {"d1": int(score)}}


@pytest.mark.parametrize("score", ["2147483648", "-2147483649", "99999999999", "1" + "0" * 5000, "-" + "9" * 100_000])
def test_scores_outside_int32_are_rejected(tmp_path: Path, score: str) -> None:
    folder = make_beir(tmp_path / "set", [HEADER, f"q1\td1\t{score}"])
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert err.type is DataError
    assert (err.value.path, err.value.line, err.value.field) == (folder / "qrels" / "test.tsv", 2, "score")
    assert "does not fit a 32-bit int (-2147483648 to 2147483647)" in err.value.message
    assert_short(err.value, err.value.path)


# ------------------------------------------------------------------------------------------------ neg weights


def weight_file(path: Path, weight: str) -> Path:
    return write_lines(path, [f'{{"query": "q", "pos": ["p"], "neg": ["n"], "neg_weights": [{weight}]}}'])


@pytest.mark.parametrize("weight", ["3.4e38", "3.4028235e38", "1.1754944e-38", "1.2e-38", "1e-30", "0.5", "7"])
def test_weights_that_are_normal_float32_are_accepted(tmp_path: Path, weight: str) -> None:
    (example,) = load_triplets(weight_file(tmp_path / "train.jsonl", weight))
    assert example.neg_weights == (float(weight),)


@pytest.mark.parametrize(
    ("weight", "fragment"),
    [
        ("1e39", "above the float32 maximum 3.4028235e+38: it would overflow to inf"),
        ("3.5e38", "overflow"),
        ("1e-50", "underflow to 0, which the loss reads as a padding slot"),
        ("1e-39", "below the smallest normal float32 1.1754944e-38"),
        ("5e-324", "underflow"),
        ("1" + "0" * 4000, "expected a finite number"),
    ],
)
def test_weights_outside_normal_float32_are_rejected(tmp_path: Path, weight: str, fragment: str) -> None:
    path = weight_file(tmp_path / "train.jsonl", weight)
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, 1, "neg_weights[0]")
    assert fragment in err.value.message
    assert_short(err.value, path)


# ------------------------------------------------------------------------------------- huge values are shortened


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("corpus.jsonl", [json.dumps({"_id": HUGE, "text": "a"}), json.dumps({"_id": HUGE, "text": "b"})]),
        ("queries.jsonl", [json.dumps({"_id": HUGE, "text": "a"}), json.dumps({"_id": HUGE, "text": "b"})]),
        ("qrels/test.tsv", [HEADER, f"{HUGE}\td1\t1"]),
        ("qrels/test.tsv", [HEADER, f"q1\t{HUGE}\t1"]),
        ("qrels/test.tsv", [HEADER, f"q1\td1\t{HUGE}"]),
        ("qrels/test.tsv", [HUGE]),
    ],
)
def test_a_one_megabyte_value_gives_a_short_message(tmp_path: Path, name: str, lines: list[str]) -> None:
    folder = make_beir(tmp_path / "set", [HEADER, "q1\td1\t1"])
    write_lines(folder / name, lines)
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert err.value.path == folder / name
    assert_short(err.value, folder / name)
    assert "xxxx..." in str(err.value)


def test_duplicate_huge_judgement_gives_a_short_message(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "test.tsv", [HEADER, f"q\t{HUGE}\t1", f"q\t{HUGE}\t1"])
    with pytest.raises(DataError) as err:
        load_qrels(path, {"q"}, {HUGE})
    assert err.value.line == 3 and "duplicate judgement" in err.value.message
    assert_short(err.value, path)


def test_invalid_huge_split_name_gives_a_short_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid split name") as err:
        load_beir(tmp_path, splits=[HUGE + "/"])
    assert len(str(err.value)) < MAX_MESSAGE


# --------------------------------------------------------------------------------- every failure is a DataError


@pytest.mark.parametrize("loader", [load_beir, load_triplets, load_corpus, dataset_files])
@pytest.mark.parametrize("name", ["n" * 5000, "bad\0name"])
def test_unusable_path_is_a_short_data_error(tmp_path: Path, loader, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(DataError) as err:
        loader(path)
    assert err.type is DataError
    assert err.value.path == path
    assert len(str(err.value)) < MAX_MESSAGE
    assert "\0" not in str(err.value)


def test_qrels_with_unusable_path_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / ("n" * 5000)
    with pytest.raises(DataError, match="File name too long") as err:
        load_qrels(path, {"q"}, {"d"})
    assert err.value.path == path


def test_unexpected_error_while_reading_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_beir(tmp_path / "set", [HEADER, "q1\td1\t1"])

    def explode(path: Path):
        raise RuntimeError("disk on fire " + HUGE)

    monkeypatch.setattr(beir, "iter_jsonl_objects", explode)
    with pytest.raises(DataError) as err:
        load_beir(folder)
    assert err.value.path == folder / "corpus.jsonl"
    assert err.value.message.startswith("cannot read: RuntimeError: 'disk on fire")
    assert isinstance(err.value.__cause__, RuntimeError)
    assert_short(err.value, err.value.path)


def test_recursion_error_while_reading_a_training_file_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = weight_file(tmp_path / "train.jsonl", "1")

    def recurse(record, path, line, *_):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(training_file, "_parse_example", recurse)
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert str(err.value) == f"{path}: cannot read: nested too deeply"


def test_deeply_nested_json_is_a_data_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", ["[" * 100_000 + "]" * 100_000])
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert (err.value.path, err.value.line) == (path, 1)
