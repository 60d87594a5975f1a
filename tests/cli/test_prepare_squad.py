from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from embedtune.cli import main, prepare
from embedtune.data.beir import load_beir
from embedtune.data.builders import beir_folder


def write_squad(path: Path, articles: int = 10, bad_question: bool = False) -> Path:
    data = []
    for index in range(articles):
        context = f"정보 {index}번은 항목 {index}에 관한 것이다. It has {index} parts."
        qas = [
            {"id": f"q{index}", "question": f"정보 {index}번은 무엇에 관한 것인가?", "answers": [f"항목 {index}"]},
            {"id": f"x{index}", "question": "unanswerable?", "answers": [], "is_impossible": True},
        ]
        data.append({"title": f"문서 {index}", "paragraphs": [{"context": context, "qas": qas}]})
    if bad_question:
        data[-1]["paragraphs"][0]["qas"][0]["question"] = ["not", "a", "string"]
    path.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prepare_squad_writes_a_beir_folder_and_prints_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = write_squad(tmp_path / "squad.json"), tmp_path / "out"
    code, printed, errors = run(["prepare", "squad", str(source), str(out)], capsys)
    assert (code, errors) == (0, "")
    data = load_beir(out)
    assert set(data.qrels) == {"train", "dev", "test"} and len(data.queries) == 10
    assert "articles: 10, paragraphs: 10" in printed
    assert "questions kept: 10, unanswerable dropped: 10" in printed
    for name, qrels in data.qrels.items():
        assert any(line.split()[0] == name and line.split()[2] == str(len(qrels)) for line in printed.splitlines())


def test_prepare_squad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = write_squad(tmp_path / "squad.json"), tmp_path / "out"
    argv = ["prepare", "squad", str(source), str(out), "--seed", "5", "--fractions", "0.5,0.5,0"]
    code, printed, _ = run([*argv, "--document", "answer-sentence"], capsys)
    assert code == 0
    assert sorted(path.name for path in (out / "qrels").iterdir()) == ["dev.tsv", "train.tsv"]
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(corpus) == 20  # two sentences per paragraph
    positives = {doc for qrels in load_beir(out).qrels.values() for judgements in qrels.values() for doc in judgements}
    assert {record["text"] for record in corpus if record["_id"] in positives} == {
        f"정보 {index}번은 항목 {index}에 관한 것이다." for index in range(10)
    }
    assert "answer-sentence documents, seed 5, fractions 0.5/0.5/0" in printed


@pytest.mark.parametrize("fractions", ["0.8,0.1", "0.8,0.1,x", "0.5,0.5,0.5", "nan,0.5,0.5", "-0.2,0.6,0.6"])
def test_bad_fractions_are_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], fractions: str) -> None:
    source = write_squad(tmp_path / "squad.json")
    code, _, errors = run(["prepare", "squad", str(source), str(tmp_path / "out"), "--fractions", fractions], capsys)
    assert code == 2
    assert "argument --fractions" in errors and "Traceback" not in errors
    assert not (tmp_path / "out").exists()


def test_bad_input_is_one_error_line_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_squad(tmp_path / "squad.json", bad_question=True)
    code, _, errors = run(["prepare", "squad", str(source), str(tmp_path / "out")], capsys)
    assert code == 2
    assert errors == f"error: {source}: field 'data[9].paragraphs[0].qas[0].question': expected a string, got array\n"
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_replaced_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = write_squad(tmp_path / "squad.json"), tmp_path / "out"
    (out / "qrels").mkdir(parents=True)
    (out / "qrels" / "old.tsv").write_text("old\n")
    (out / "corpus.jsonl").write_text("old\n")
    code, _, errors = run(["prepare", "squad", str(source), str(out)], capsys)
    assert code == 2 and "exists and is not empty" in errors and "--overwrite" in errors
    assert (out / "corpus.jsonl").read_text() == "old\n"

    code, _, _ = run(["prepare", "squad", str(source), str(out), "--overwrite"], capsys)
    assert code == 0
    assert sorted(path.name for path in (out / "qrels").iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
    assert len(load_beir(out).queries) == 10
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "squad.json"]  # no leftovers


def test_overwrite_never_deletes_a_folder_holding_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = write_squad(tmp_path / "squad.json"), tmp_path / "project"
    out.mkdir()
    (out / "corpus.jsonl").write_text("old\n")
    (out / "notes.txt").write_text("precious\n")
    code, _, errors = run(["prepare", "squad", str(source), str(out), "--overwrite"], capsys)
    assert code == 2 and "refusing to delete it" in errors and "'notes.txt'" in errors
    assert (out / "notes.txt").read_text() == "precious\n"


def test_an_empty_folder_or_a_file_as_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_squad(tmp_path / "squad.json")
    (tmp_path / "empty").mkdir()
    assert run(["prepare", "squad", str(source), str(tmp_path / "empty")], capsys)[0] == 0
    assert len(load_beir(tmp_path / "empty").queries) == 10
    code, _, errors = run(["prepare", "squad", str(source), str(source), "--overwrite"], capsys)
    assert code == 2 and "is not a folder" in errors


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("failing_step", ["write", "rename"])
def test_a_crash_while_writing_leaves_no_half_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    existing: bool,
    failing_step: str,
) -> None:
    source, out = write_squad(tmp_path / "squad.json"), tmp_path / "out"
    if existing:
        (out / "qrels").mkdir(parents=True)
        (out / "corpus.jsonl").write_text("old\n")
    real_write = beir_folder.write_lines_atomic

    def failing_write(path: Path, lines: Any) -> None:
        if Path(path).name == "train.tsv":
            raise OSError(28, "No space left on device")
        real_write(path, lines)

    def failing_replace(self: Path, target: Any) -> Path:
        raise OSError(28, "No space left on device")

    if failing_step == "write":
        monkeypatch.setattr(beir_folder, "write_lines_atomic", failing_write)
    else:
        monkeypatch.setattr(Path, "replace", failing_replace)  # the final rename of the finished folder
    code, _, errors = run(["prepare", "squad", str(source), str(out), "--overwrite"], capsys)
    monkeypatch.undo()
    assert code == 2 and "No space left on device" in errors
    if existing:
        assert sorted(path.name for path in out.iterdir()) == ["corpus.jsonl", "qrels"]
        assert (out / "corpus.jsonl").read_text() == "old\n"
    else:
        assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == (["out"] if existing else []) + ["squad.json"]


def test_prepare_help_lists_squad(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--help"]) == 0
    assert "squad" in capsys.readouterr().out
    assert main(["prepare", "squad", "--help"]) == 0
    assert "--document" in capsys.readouterr().out


def test_prepare_docs_commands_are_registered_when_that_module_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake = types.ModuleType("embedtune.cli.prepare_docs")

    def register(name: str) -> Any:
        def add(subparsers: argparse._SubParsersAction) -> None:
            calls.append(name)
            subparsers.add_parser(name)

        return add

    fake.register_docs, fake.register_code = register("docs"), register("code")
    monkeypatch.setitem(sys.modules, "embedtune.cli.prepare_docs", fake)
    parser = argparse.ArgumentParser(prog="embedtune")
    prepare.add_prepare_command(parser.add_subparsers(dest="command"))
    assert calls == ["docs", "code"]
    assert parser.parse_args(["prepare", "docs"]).prepare_command == "docs"


def test_a_missing_optional_module_is_skipped_but_a_broken_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert prepare._optional_module("embedtune.cli.no_such_module_here") is None
    (tmp_path / "broken_prepare_module.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        prepare._optional_module("broken_prepare_module")
