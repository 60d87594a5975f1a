"""The last bad inputs through the command line: one ``error:`` line, exit code 2, no run folder, no model loaded."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest

from embedtune.cli import main
from embedtune.training import pipeline
from tests.runs.factories import finished_run


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture()
def no_model_loading(monkeypatch):
    monkeypatch.setattr(pipeline, "load_base_model", lambda *a, **k: pytest.fail("a model was loaded"))


def train(tmp_path: Path, *args: str) -> int:
    return main(["train", "--runs-dir", str(tmp_path / "runs"), *args])


def assert_no_run_folder(tmp_path: Path) -> None:
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------------------------- runs commands


@pytest.mark.parametrize("action", [["list"], ["show", "first"], ["compare", "first", "second"]])
def test_runs_commands_name_a_missing_runs_folder(tmp_path, capsys, action):
    missing = tmp_path / "DOES-NOT-EXIST"
    assert main(["runs", "--runs-dir", str(missing), *action]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: runs folder {missing} not found") and "--runs-dir" in line


def test_runs_list_of_an_empty_runs_folder_still_says_no_runs(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path), "list"]) == 0
    assert capsys.readouterr().out.strip() == "No runs found."


def test_runs_show_of_a_run_folder_path_needs_no_runs_folder(tmp_path, capsys):
    folder = finished_run(tmp_path / "elsewhere", "first")
    assert main(["runs", "--runs-dir", str(tmp_path / "missing"), "show", str(folder)]) == 0
    assert "first" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ train inputs


def test_eval_split_train_is_refused_before_anything(tiny_beir, tmp_path, capsys, no_model_loading):
    assert (tiny_beir / "qrels" / "test.tsv").is_file()
    assert train(tmp_path, "--data", str(tiny_beir), "--set", "data.eval_split=train", "--check") == 2
    assert error_line(capsys).startswith("error: data.eval_split: 'train' is the split the run trains on")
    assert train(tmp_path, "--data", str(tiny_beir), "--set", "data.eval_split=train") == 2
    assert_no_run_folder(tmp_path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["loss.name=margin_mse"], "no training record has a hard negative"),
        (["loss.name=cosent"], "trains on labelled pairs"),
        (["eval.extra_datasets=/nonexistent-extra"], "nonexistent-extra"),
        (["loss.guide=true", "loss.guide_model=/nonexistent-guide"], "nonexistent-guide"),
    ],
    ids=["teacher scores", "labelled pairs", "extra data set", "guide model"],
)
def test_check_refuses_what_the_run_refuses(settings, message, tiny_beir, tmp_path, capsys, no_model_loading):
    options = ["--data", str(tiny_beir)] + [part for setting in settings for part in ("--set", setting)]
    assert train(tmp_path, *options, "--check") == 2
    checked = error_line(capsys)
    assert train(tmp_path, *options) == 2
    assert error_line(capsys) == checked and message in checked
    assert_no_run_folder(tmp_path)


def test_lone_surrogate_in_the_corpus_stops_before_the_run_folder(tiny_beir, tmp_path, capsys, no_model_loading):
    corpus = tiny_beir / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    record = json.loads(lines[3])
    record["text"] += " \ud800"
    lines[3] = json.dumps(record)
    corpus.write_text("\n".join(lines) + "\n")
    assert train(tmp_path, "--data", str(tiny_beir)) == 2
    assert error_line(capsys) == (
        f"error: {corpus}:4: field 'text': lone surrogate U+D800 at character {len(record['text'])}: not valid "
        "Unicode, no tokenizer can encode it (a broken \\u escape in the JSON?)"
    )
    assert_no_run_folder(tmp_path)


@pytest.fixture()
def offline_empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("asked the hub offline"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("check", [True, False])
def test_model_null_fails_the_check_and_the_run_at_once(tiny_beir, tmp_path, capsys, offline_empty_hub_cache, check):
    assert train(tmp_path, "--data", str(tiny_beir), "--model", "null", *(["--check"] if check else [])) == 2
    line = error_line(capsys)
    assert line.startswith("error: model 'null' (hub repository sentence-transformers/null) is neither a local folder")
    assert_no_run_folder(tmp_path)


def test_unreachable_hub_fails_the_check_at_once(tiny_beir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(self, repo_id, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    assert train(tmp_path, "--data", str(tiny_beir), "--model", "some-org/some-model", "--check") == 2
    assert "the hub cannot be reached" in error_line(capsys)
