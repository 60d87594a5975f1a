from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.data.errors import DataError
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample

GOOD = '{"query": "q0", "pos": ["p0"]}'


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_loads_records_with_and_without_negatives(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "train.jsonl",
        [
            '{"query": "what is x", "pos": ["x is y", "x is z"], "neg": ["a", "b"], "neg_weights": [0.5, 2]}',
            "",
            '{"query": "q2", "pos": ["p"], "neg": ["n"], "pos_scores": [1.0], "prompt": "ignored"}',
            '{"query": "q3", "pos": ["p3"]}',
            '{"query": "q4", "pos": ["p4"], "neg": []}',
        ],
    )

    examples = load_triplets(path)

    assert examples == [
        TrainingExample(query="what is x", pos=("x is y", "x is z"), neg=("a", "b"), neg_weights=(0.5, 2.0)),
        TrainingExample(query="q2", pos=("p",), neg=("n",), neg_weights=(1.0,)),
        TrainingExample(query="q3", pos=("p3",), neg=(), neg_weights=()),
        TrainingExample(query="q4", pos=("p4",), neg=(), neg_weights=()),
    ]
    assert all(isinstance(w, float) for w in examples[0].neg_weights)


def test_accepts_str_path(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", [GOOD])
    assert load_triplets(str(path)) == [TrainingExample(query="q0", pos=("p0",))]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_triplets(tmp_path / "nope.jsonl")
    assert err.value.path == tmp_path / "nope.jsonl"
    assert (err.value.line, err.value.field) == (None, None)
    assert err.value.message == "file not found"


@pytest.mark.parametrize("lines", [[], ["", "   "]])
def test_file_without_records(tmp_path: Path, lines: list[str]) -> None:
    path = write_lines(tmp_path / "train.jsonl", lines)
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert err.value.path == path
    assert (err.value.line, err.value.field) == (None, None)
    assert err.value.message == "no training examples"


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ('{"query": "q", "pos": [', None, "malformed JSON"),
        ("{'query': 'q'}", None, "malformed JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        ("42", None, "expected a JSON object"),
        ('{"pos": ["p"]}', "query", "missing required field"),
        ('{"query": "q"}', "pos", "missing required field"),
        ('{"query": 3, "pos": ["p"]}', "query", "expected a non-empty string"),
        ('{"query": null, "pos": ["p"]}', "query", "expected a non-empty string"),
        ('{"query": "", "pos": ["p"]}', "query", "empty query"),
        ('{"query": " \\t ", "pos": ["p"]}', "query", "empty query"),
        ('{"query": "q", "pos": "p"}', "pos", "expected a list of strings"),
        ('{"query": "q", "pos": []}', "pos", "expected at least one passage"),
        ('{"query": "q", "pos": ["a", "b", 3]}', "pos[2]", "expected a string"),
        ('{"query": "q", "pos": ["a", "b", ""]}', "pos[2]", "empty passage"),
        ('{"query": "q", "pos": ["  ", "b"]}', "pos[0]", "empty passage"),
        ('{"query": "q", "pos": ["a"], "neg": "n"}', "neg", "expected a list of strings"),
        ('{"query": "q", "pos": ["a"], "neg": null}', "neg", "expected a list of strings"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", null]}', "neg[1]", "expected a string"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", ""]}', "neg[1]", "empty passage"),
        ('{"query": "q", "pos": ["a"], "neg_weights": [1.0]}', "neg_weights", "without neg"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": 1.0}', "neg_weights", "expected a list"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": []}', "neg_weights", "expected 1 weights"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [1, 2]}', "neg_weights", "got 2"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", "m"], "neg_weights": [1, "2"]}', "neg_weights[1]", "a number"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [true]}', "neg_weights[0]", "a number"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [null]}', "neg_weights[0]", "a number"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [NaN]}', "neg_weights[0]", "finite"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [Infinity]}', "neg_weights[0]", "finite"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [-Infinity]}', "neg_weights[0]", "finite"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [1e400]}', "neg_weights[0]", "finite"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [0]}', "neg_weights[0]", "> 0"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_weights": [0.0]}', "neg_weights[0]", "> 0"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", "m"], "neg_weights": [1, -0.5]}', "neg_weights[1]", "> 0"),
    ],
)
def test_invalid_record(tmp_path: Path, record: str, field: str | None, fragment: str) -> None:
    path = write_lines(tmp_path / "train.jsonl", [GOOD, "", record, GOOD])
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert err.type is DataError
    assert err.value.path == path
    assert err.value.line == 3
    assert err.value.field == field
    assert fragment in err.value.message


def test_error_message_locates_the_problem(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", ['{"query": "q", "pos": ["a", 1]}'])
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert str(err.value) == f"{path}:1: field 'pos[1]': expected a string, got int"
