from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError

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


# --- optional fields written by `embedtune mine` ------------------------------------------------------------------

MINED = (
    '{"query": "q", "query_id": "Q1", "pos": ["a", "b"], "pos_ids": ["d1", "d2"], "pos_scores": [0.9, 1], '
    '"neg": ["n", "m"], "neg_ids": ["d3", "d4"], "neg_scores": [0.5, -0.25], '
    '"neg_sources": [["dense"], ["dense", "bm25"]], "neg_weights": [1.5, 0.5], "phase": "warmup"}'
)


def test_loads_mined_fields(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", [MINED, GOOD])

    mined, plain = load_triplets(path)

    assert mined.query_id == "Q1"
    assert mined.pos_ids == ("d1", "d2")
    assert mined.neg_ids == ("d3", "d4")
    assert mined.pos_scores == (0.9, 1.0)
    assert all(isinstance(score, float) for score in mined.pos_scores)
    assert mined.neg_scores == (0.5, -0.25)
    assert mined.neg_sources == (("dense",), ("dense", "bm25"))
    assert mined.neg_weights == (1.5, 0.5)
    assert mined.phase == "warmup"
    assert plain == TrainingExample(query="q0", pos=("p0",))
    assert (plain.query_id, plain.phase, plain.pos_scores, plain.neg_ids) == (None, None, (), ())


def test_phase_may_be_any_string(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", ['{"query": "q", "pos": ["a"], "phase": ""}'])
    assert load_triplets(path)[0].phase == ""


def test_write_triplets_round_trips(tmp_path: Path) -> None:
    from embedtune.data.training_file import training_record, write_triplets

    source = write_lines(tmp_path / "train.jsonl", [MINED, '{"query": "é ü", "pos": ["ß"], "neg": []}'])
    examples = load_triplets(source)
    out = tmp_path / "out.jsonl"

    write_triplets(out, examples)

    again = load_triplets(out)
    assert again == examples
    assert [e.pos_scores for e in again] == [e.pos_scores for e in examples]
    assert [e.neg_sources for e in again] == [e.neg_sources for e in examples]
    assert "é ü" in out.read_text(encoding="utf-8")  # UTF-8, not ASCII-escaped
    assert "neg_weights" not in training_record(examples[0], neg_weights=False)
    assert "pos_scores" not in training_record(examples[1])


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ('{"query": "q", "pos": ["a"], "query_id": 3}', "query_id", "expected a string"),
        ('{"query": "q", "pos": ["a"], "query_id": " "}', "query_id", "empty"),
        ('{"query": "q", "pos": ["a"], "phase": 1}', "phase", "expected a string"),
        ('{"query": "q", "pos": ["a"], "phase": null}', "phase", "expected a string"),
        ('{"query": "q", "pos": ["a"], "pos_ids": "d"}', "pos_ids", "expected a list"),
        ('{"query": "q", "pos": ["a"], "pos_ids": ["d", "e"]}', "pos_ids", "expected 1 entries (one per pos), got 2"),
        ('{"query": "q", "pos": ["a", "b"], "pos_ids": ["d", 4]}', "pos_ids[1]", "expected a string id"),
        ('{"query": "q", "pos": ["a", "b"], "pos_ids": ["d", ""]}', "pos_ids[1]", "empty id"),
        ('{"query": "q", "pos": ["a"], "neg_ids": ["d"]}', "neg_ids", "without neg"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_ids": []}', "neg_ids", "expected 1 entries"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_ids": [null]}', "neg_ids[0]", "expected a string id"),
        ('{"query": "q", "pos": ["a"], "pos_scores": 0.5}', "pos_scores", "expected a list"),
        ('{"query": "q", "pos": ["a"], "pos_scores": []}', "pos_scores", "expected 1 entries"),
        ('{"query": "q", "pos": ["a"], "pos_scores": ["0.5"]}', "pos_scores[0]", "expected a number"),
        ('{"query": "q", "pos": ["a"], "pos_scores": [true]}', "pos_scores[0]", "expected a number"),
        ('{"query": "q", "pos": ["a"], "pos_scores": [NaN]}', "pos_scores[0]", "finite"),
        ('{"query": "q", "pos": ["a"], "pos_scores": [1e400]}', "pos_scores[0]", "finite"),
        ('{"query": "q", "pos": ["a"], "neg_scores": [0.1]}', "neg_scores", "without neg"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", "m", "o"], "neg_scores": [1, 2]}', "neg_scores", "got 2"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", "m"], "neg_scores": [1, -Infinity]}', "neg_scores[1]", "finite"),
        ('{"query": "q", "pos": ["a"], "neg": ["n", "m"], "neg_scores": [1, null]}', "neg_scores[1]", "number"),
        ('{"query": "q", "pos": ["a"], "neg_sources": [["dense"]]}', "neg_sources", "without neg"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_sources": ["dense"]}', "neg_sources[0]", "expected a list"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_sources": [[]], "x": 1}', None, None),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_sources": [["dense", 2]]}', "neg_sources[0][1]", "name"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_sources": [[""]]}', "neg_sources[0][0]", "empty string"),
        ('{"query": "q", "pos": ["a"], "neg": ["n"], "neg_sources": [["a"], ["b"]]}', "neg_sources", "got 2"),
    ],
)
def test_invalid_mined_field(tmp_path: Path, record: str, field: str | None, fragment: str | None) -> None:
    path = write_lines(tmp_path / "train.jsonl", [GOOD, "", record, GOOD])
    if fragment is None:  # a valid record among the invalid ones: empty source lists are allowed
        assert load_triplets(path)[1].neg_sources == ((),)
        return
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, 3, field)
    assert fragment in err.value.message
