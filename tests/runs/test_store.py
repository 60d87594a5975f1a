from __future__ import annotations

import socket
from pathlib import Path

import pytest

from embedtune.runs import (
    RunInfo,
    RunStoreError,
    fail_run,
    find_runs,
    finish_run,
    load_run,
    resolve_run,
)
from embedtune.runs import store as store_module
from tests.runs.factories import dead_pid, finished_run, make_metrics, started_by_dead_process, started_run


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    finished_run(root, "fiqa", make_metrics(0.3000, 0.3456, wall=42.25))
    finished_run(root, "fiqa-lr5e5", make_metrics(0.3000, 0.3612))
    fail_run(started_run(root, "fiqa-crashed"), "CUDA out of memory")
    (root / "not-a-run").mkdir()
    (root / "stray.txt").write_text("x")
    return root


def folder_of(root: Path, name: str) -> Path:
    return next(path for path in root.iterdir() if path.name.split("-", 2)[-1] == name)


# --- load_run: statuses ------------------------------------------------------------------------------------------


def test_load_finished_run(runs_root: Path):
    run = load_run(folder_of(runs_root, "fiqa"))
    assert isinstance(run, RunInfo)
    assert (run.status, run.name, run.error) == ("finished", "fiqa", None)
    assert run.config["training"]["learning_rate"] == 2e-5
    assert run.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert run.primary_metric == "ndcg@10"
    assert run.report.fine_tuned["ndcg@10"] == 0.3456
    assert run.metrics.wall_time_s == 42.25


def test_load_running_run(tmp_path: Path):
    run = load_run(started_run(tmp_path, "live"))
    assert (run.status, run.metrics, run.error, run.process_gone) == ("running", None, None, False)


def test_load_failed_run(runs_root: Path):
    run = load_run(folder_of(runs_root, "fiqa-crashed"))
    assert (run.status, run.error, run.metrics) == ("failed", "CUDA out of memory", None)


def test_load_interrupted_run(tmp_path: Path):
    folder = started_run(tmp_path, "stopped")
    fail_run(folder, "KeyboardInterrupt", interrupted=True)
    run = load_run(folder)
    assert (run.status, run.error, run.process_gone) == ("interrupted", "KeyboardInterrupt", False)


def test_running_record_of_a_dead_process_reads_as_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run = load_run(started_by_dead_process(tmp_path, "killed", monkeypatch))
    assert run.record.status == "running"
    assert run.status == "interrupted"
    assert run.process_gone


def test_running_record_from_another_host_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run = load_run(started_by_dead_process(tmp_path, "remote", monkeypatch, host=f"not-{socket.gethostname()}"))
    assert run.status == "running"


def test_process_alive():
    assert store_module.process_alive(store_module.os.getpid())
    assert not store_module.process_alive(dead_pid())
    assert not store_module.process_alive(2**40)


def test_process_owned_by_another_user_counts_as_alive(monkeypatch: pytest.MonkeyPatch):
    def deny(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(store_module.os, "kill", deny)
    assert store_module.process_alive(12345)


# --- load_run: corrupt records -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "run.json: not valid JSON"),
        ("[1, 2]", "run.json: must be a JSON object, got array"),
        ('{"name": 3}', "run.json: field 'name': must be a string, got number 3"),
    ],
)
def test_load_corrupt_run_json(tmp_path: Path, content: str, problem: str):
    (tmp_path / "run.json").write_text(content)
    run = load_run(tmp_path)
    assert run.status == "corrupt"
    assert problem in run.error
    assert run.record is None and run.name == tmp_path.name


def test_load_unreadable_run_json(tmp_path: Path):
    (tmp_path / "run.json").mkdir()
    run = load_run(tmp_path)
    assert run.status == "corrupt" and "cannot read: Is a directory" in run.error


def test_load_folder_without_run_json(tmp_path: Path):
    run = load_run(tmp_path)
    assert run.status == "corrupt" and "run.json: file not found" in run.error


def test_load_corrupt_metrics_keeps_the_record(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    data = make_metrics().to_dict()
    data["report"]["fine_tuned"]["ndcg@10"] = None
    (folder / "metrics.json").write_text(str(data))  # Python repr, not JSON
    run = load_run(folder)
    assert run.status == "corrupt" and "metrics.json: not valid JSON" in run.error
    assert run.record.name == "fiqa" and run.metrics is None


def test_load_finished_run_without_metrics_is_corrupt(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    (folder / "metrics.json").unlink()
    run = load_run(folder)
    assert run.status == "corrupt" and "run.json says the run finished" in run.error


# --- find_runs ---------------------------------------------------------------------------------------------------


def test_find_runs_sorted_by_folder_and_skips_non_runs(runs_root: Path):
    runs = find_runs(runs_root)
    assert [run.folder for run in runs] == sorted(run.folder for run in runs)
    assert sorted(run.name for run in runs) == ["fiqa", "fiqa-crashed", "fiqa-lr5e5"]


def test_a_corrupt_folder_does_not_break_find_runs(runs_root: Path):
    (folder_of(runs_root, "fiqa-lr5e5") / "run.json").write_text('{"name": "fiqa-lr5e5", "status": 7}')
    broken = runs_root / "20000101-000000-broken"
    broken.mkdir()
    (broken / "run.json").write_bytes(b"\xff")
    statuses = {run.folder: run.status for run in find_runs(runs_root)}
    assert statuses[broken.name] == "corrupt"
    assert statuses[folder_of(runs_root, "fiqa-lr5e5").name] == "corrupt"
    assert statuses[folder_of(runs_root, "fiqa").name] == "finished"
    assert statuses[folder_of(runs_root, "fiqa-crashed").name] == "failed"


def test_find_runs_missing_root(tmp_path: Path):
    assert find_runs(tmp_path / "nope") == []
    assert find_runs(tmp_path / "nope" / "deeper") == []


def test_find_runs_root_is_a_file(tmp_path: Path):
    (tmp_path / "runs").write_text("x")
    with pytest.raises(RunStoreError, match="is a file"):
        find_runs(tmp_path / "runs")


def test_finish_after_listing_a_running_run(tmp_path: Path):
    folder = started_run(tmp_path, "fiqa")
    assert [run.status for run in find_runs(tmp_path)] == ["running"]
    finish_run(folder, make_metrics())
    assert [run.status for run in find_runs(tmp_path)] == ["finished"]


# --- resolve_run -------------------------------------------------------------------------------------------------


def test_resolve_by_path(runs_root: Path):
    path = folder_of(runs_root, "fiqa")
    assert resolve_run(str(path), root=runs_root / "elsewhere") == path


def test_resolve_by_folder_name(runs_root: Path):
    path = folder_of(runs_root, "fiqa-lr5e5")
    assert resolve_run(path.name, root=runs_root) == path


def test_resolve_by_run_name_even_when_it_is_a_substring_of_others(runs_root: Path):
    # "fiqa" is in every folder name, but only one run is named exactly "fiqa".
    assert resolve_run("fiqa", root=runs_root) == folder_of(runs_root, "fiqa")


def test_resolve_by_unique_suffix_and_substring(runs_root: Path):
    assert resolve_run("lr5e5", root=runs_root) == folder_of(runs_root, "fiqa-lr5e5")
    assert resolve_run("ashed", root=runs_root) == folder_of(runs_root, "fiqa-crashed")
    assert resolve_run("crash", root=runs_root) == folder_of(runs_root, "fiqa-crashed")


def test_resolve_ambiguous_lists_candidates(runs_root: Path):
    finished_run(runs_root, "fiqa-lr1e5")
    with pytest.raises(ValueError, match="ambiguous") as info:
        resolve_run("fiqa-lr", root=runs_root)
    candidates = str(info.value).split("candidates: ")[1].split(", ")
    assert sorted(candidates) == sorted(folder_of(runs_root, name).name for name in ("fiqa-lr5e5", "fiqa-lr1e5"))


def test_resolve_unknown_lists_available(runs_root: Path):
    with pytest.raises(ValueError, match="no run matches 'msmarco'") as info:
        resolve_run("msmarco", root=runs_root)
    assert folder_of(runs_root, "fiqa").name in str(info.value)


def test_resolve_ignores_folders_that_are_not_runs(runs_root: Path):
    with pytest.raises(ValueError, match="no run matches"):
        resolve_run("not-a-run", root=runs_root)


def test_resolve_finds_a_corrupt_run(runs_root: Path):
    (folder_of(runs_root, "fiqa") / "run.json").write_text("oops")
    folder = resolve_run("fiqa", root=runs_root)
    assert load_run(folder).status == "corrupt"


def test_resolve_empty_or_overlong_ref(runs_root: Path):
    with pytest.raises(ValueError, match="empty"):
        resolve_run("", root=runs_root)
    with pytest.raises(ValueError, match="no run matches"):
        resolve_run("x" * 5000, root=runs_root)
