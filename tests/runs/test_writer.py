from __future__ import annotations

import dataclasses
import json
import os
import socket
from datetime import datetime
from pathlib import Path

import pytest

from embedtune.runs import (
    MAX_ERROR_CHARS,
    RunRecordError,
    RunStoreError,
    fail_run,
    finish_run,
    read_run_metrics,
    read_run_record,
    start_run,
)
from embedtune.runs import writer as writer_module
from tests.runs.factories import DATA_HASHES, finished_run, make_config, make_metrics, started_run


def test_start_run_writes_a_running_record(tmp_path: Path):
    folder = started_run(tmp_path / "runs", "fiqa")
    assert folder.parent == tmp_path / "runs"
    assert folder.name.endswith("-fiqa") and len(folder.name) == len("20240101-000000-fiqa")
    assert sorted(path.name for path in folder.iterdir()) == ["run.json"]
    record = read_run_record(folder)
    assert record.name == "fiqa"
    assert record.status == "running"
    assert record.finished is None and record.error is None
    assert record.pid == os.getpid()
    assert record.host == socket.gethostname()
    assert record.config == make_config()
    assert record.data_hashes == DATA_HASHES
    assert record.command == "embedtune train --name fiqa"
    assert {"python", "embedtune", "torch"} <= set(record.versions)
    created = datetime.fromisoformat(record.created)
    assert created.tzinfo is not None
    assert folder.name.startswith(created.strftime("%Y%m%d-%H%M%S"))


def test_start_run_never_reuses_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fixed = datetime(2026, 1, 2, 3, 4, 5).astimezone()
    monkeypatch.setattr(writer_module, "_now", lambda: fixed)
    first = started_run(tmp_path, "same")
    (first / "keep.txt").write_text("user file")
    before = (first / "run.json").read_bytes()
    second = started_run(tmp_path, "same", config=make_config(training__epochs=3))
    assert (first.name, second.name) == ("20260102-030405-same", "20260102-030405-same-2")
    assert (first / "run.json").read_bytes() == before
    assert (first / "keep.txt").read_text() == "user file"
    assert read_run_record(second).config["training"]["epochs"] == 3


def test_start_run_with_a_config_that_is_not_json_creates_nothing(tmp_path: Path):
    with pytest.raises(RunRecordError, match="cannot be written as JSON"):
        start_run(tmp_path / "runs", "x", config={"bad": {1, 2}}, data_hashes={}, command="c")
    assert not (tmp_path / "runs").exists()


def test_start_run_with_bad_data_hashes_creates_nothing(tmp_path: Path):
    with pytest.raises(RunRecordError, match="'data_hashes.a'"):
        start_run(tmp_path / "runs", "x", config={}, data_hashes={"a": 1}, command="c")
    assert not (tmp_path / "runs").exists()


def test_start_run_rejects_a_bad_name(tmp_path: Path):
    with pytest.raises(RunStoreError, match="invalid run name"):
        start_run(tmp_path, "a/b", config={}, data_hashes={}, command="c")


def test_finish_run_writes_metrics_then_marks_finished(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    record = read_run_record(folder)
    assert record.status == "finished"
    assert datetime.fromisoformat(record.finished) >= datetime.fromisoformat(record.created)
    assert read_run_metrics(folder) == make_metrics()
    assert json.loads((folder / "metrics.json").read_text())["report"]["role"] == "test"
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]


def test_finish_run_twice_is_refused(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    with pytest.raises(RunStoreError, match="already 'finished'"):
        finish_run(folder, make_metrics(0.1, 0.2))
    assert read_run_metrics(folder) == make_metrics()


def test_finish_run_with_off_schema_metrics_writes_nothing(tmp_path: Path):
    folder = started_run(tmp_path, "fiqa")
    bad = dataclasses.replace(make_metrics(), report=dataclasses.replace(make_metrics().report, role="train"))
    with pytest.raises(RunRecordError, match="'report.role'"):
        finish_run(folder, bad)
    assert not (folder / "metrics.json").exists()
    assert read_run_record(folder).status == "running"


def test_fail_run_marks_failed_with_the_error(tmp_path: Path):
    folder = started_run(tmp_path, "fiqa")
    assert fail_run(folder, "CUDA out of memory") is True
    record = read_run_record(folder)
    assert (record.status, record.error) == ("failed", "CUDA out of memory")
    assert record.finished is not None
    assert not (folder / "metrics.json").exists()


def test_fail_run_interrupted(tmp_path: Path):
    folder = started_run(tmp_path, "fiqa")
    fail_run(folder, "KeyboardInterrupt", interrupted=True)
    assert read_run_record(folder).status == "interrupted"


def test_fail_run_caps_the_error_text(tmp_path: Path):
    folder = started_run(tmp_path, "fiqa")
    fail_run(folder, "E" * 50_000)
    error = read_run_record(folder).error
    assert error.startswith("E" * MAX_ERROR_CHARS)
    assert len(error) < MAX_ERROR_CHARS + 60
    assert "50000 chars" in error


def test_fail_run_leaves_a_finished_run_finished(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    assert fail_run(folder, "crashed while printing the table") is False
    record = read_run_record(folder)
    assert record.status == "finished" and record.error is None


def test_fail_run_on_a_corrupt_record_names_the_file(tmp_path: Path):
    folder = started_run(tmp_path, "fiqa")
    (folder / "run.json").write_text("{")
    with pytest.raises(RunRecordError, match="run.json: not valid JSON"):
        fail_run(folder, "boom")
