"""Tests of ``embedtune data check``: the table, the warnings, ``--json`` and one-line errors with exit code 2."""

from __future__ import annotations

import json

from embedtune.cli import main
from tests.conftest import write_tiny_beir
from tests.data.test_check import LIMIT, training_records, write_jsonl, write_problem_beir, write_qrels

PLANTED_BEIR_CODES = {
    "duplicate_documents",
    "duplicate_queries",
    "query_id_in_several_splits",
    "query_text_in_several_splits",
    "queries_without_relevant",
    "unjudged_queries",
    "long_documents",
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", "check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help(capsys):
    assert main(["data", "check", "--help"]) == 0
    assert "usage: embedtune data check" in capsys.readouterr().out


def test_beir_folder_prints_statistics_and_every_planted_warning(tmp_path, capsys):
    folder = write_problem_beir(tmp_path / "beir")
    code, out, err = run(capsys, str(folder), "--model", "whitespace", "--max-seq-length", str(LIMIT))
    assert code == 0, err
    assert out.splitlines()[0] == f"{folder} (BEIR folder): valid, {len(PLANTED_BEIR_CODES)} warning(s)"
    assert f"Token lengths (whitespace, max_seq_length {LIMIT})" in out
    for code_name in PLANTED_BEIR_CODES:
        assert f"[{code_name}]" in out
    assert "query ids judged in several splits: 1 [query_id_in_several_splits]" in out and "q1: test, train" in out
    assert "documents longer than max_seq_length 20 (truncated when encoded): 1" in out and "d5: 30 tokens" in out
    statistics = out.split("Token lengths")[0]
    assert any(line.split() == ["unjudged", "queries", "1"] for line in statistics.splitlines())
    assert any(
        line.split() == ["relevant", "per", "query", "mean", "1.33,", "min", "1,", "max", "2"]
        for line in out.splitlines()
    )


def test_clean_folder_says_no_warnings(tmp_path, capsys):
    code, out, _ = run(capsys, str(write_tiny_beir(tmp_path / "beir")), "--model", "whitespace")
    assert code == 0
    assert "valid, no warnings" in out.splitlines()[0]
    assert "Warnings" not in out
    assert "Token lengths (whitespace, no max_seq_length)" in out


def test_json_report_parses_and_holds_everything(tmp_path, capsys):
    path = write_jsonl(tmp_path / "train.jsonl", training_records())
    beir = write_problem_beir(tmp_path / "beir")
    code, out, _ = run(capsys, str(path), "--model", "whitespace", "--beir", str(beir), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "training" and report["tokenizer"] == "whitespace" and report["max_seq_length"] is None
    counts = {warning["code"]: warning["count"] for warning in report["warnings"]}
    assert counts == {
        "duplicate_queries": 1,
        "duplicate_positive_pairs": 1,
        "negative_is_positive": 1,
        "query_in_held_out": 1,
        "positive_in_held_out": 1,
    }
    assert report["counts"]["records"] == 4
    assert report["counts"]["compared_with"] == {"folder": str(beir), "held_out_splits": "test"}
    assert set(report["lengths"]) == {"queries", "documents"}
    assert report["lengths"]["documents"]["max"] == 30


def test_pairs_file_shows_its_label_distribution(tmp_path, capsys):
    pairs = [{"text1": f"q{i % 3}", "text2": f"doc {i}", "label": i % 2} for i in range(6)]
    code, out, _ = run(capsys, str(write_jsonl(tmp_path / "pairs.jsonl", pairs)), "--model", "whitespace")
    assert code == 0
    assert "(labelled-pairs file): valid, no warnings" in out.splitlines()[0]
    lines = [line.split() for line in out.splitlines()]
    assert ["labels"] in lines and ["0", "3"] in lines and ["1", "3"] in lines


def test_malformed_training_file_is_one_error_line_and_exit_2(tmp_path, capsys):
    path = write_jsonl(tmp_path / "train.jsonl", [{"query": "q", "pos": ["p"]}, {"query": "q2", "pos": "oops"}])
    code, out, err = run(capsys, str(path), "--model", "whitespace")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: {path}:2: field 'pos': ")


def test_malformed_beir_qrels_name_file_line_and_field(tmp_path, capsys):
    folder = write_tiny_beir(tmp_path / "beir")
    write_qrels(folder, "test", [("q10", "v0", 1), ("q11", "no-such-doc", 1)])
    code, out, err = run(capsys, str(folder), "--model", "whitespace", "--json")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith(f"error: {folder / 'qrels' / 'test.tsv'}:3: field 'corpus-id': unknown document id")


def test_bad_options_exit_2(tmp_path, capsys):
    folder = write_tiny_beir(tmp_path / "beir")
    code, _, err = run(capsys, str(folder), "--model", "whitespace", "--beir", str(folder))
    assert code == 2 and err.startswith("error: ") and "--beir" in err
    assert run(capsys, str(folder), "--max-seq-length", "0")[0] == 2
    code, _, err = run(capsys, str(tmp_path / "missing.jsonl"))
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, str(folder), "--model", str(tmp_path / "no-model"))
    assert code == 2 and err == f"error: {tmp_path / 'no-model'}: model folder not found\n"


def test_default_model_is_the_offline_minilm_tokenizer(tmp_path, capsys):
    folder = tmp_path / "beir"
    write_jsonl(folder / "corpus.jsonl", [{"_id": "d", "text": "pear " * 400}])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q", "text": "fruit"}])
    write_qrels(folder, "test", [("q", "d", 1)])
    code, out, err = run(capsys, str(folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["tokenizer"] == "all-MiniLM-L6-v2" and report["max_seq_length"] == 256
    assert report["lengths"]["documents"]["truncated"] == 1
    assert [warning["code"] for warning in report["warnings"]] == ["long_documents"]
