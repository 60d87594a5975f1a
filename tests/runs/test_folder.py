from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from embedtune.runs import RunStoreError, check_runs_dir, create_run_folder
from embedtune.runs import folder as folder_module

needs_non_root = pytest.mark.skipif(os.geteuid() == 0, reason="root can write into any folder")


def test_check_runs_dir_accepts_an_existing_writable_folder(tmp_path: Path):
    check_runs_dir(tmp_path)


def test_check_runs_dir_accepts_a_creatable_path_and_creates_nothing(tmp_path: Path):
    check_runs_dir(tmp_path / "a" / "b" / "runs", name="fiqa")
    assert list(tmp_path.iterdir()) == []


def test_check_runs_dir_accepts_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    check_runs_dir("runs")
    check_runs_dir(".")


def test_check_runs_dir_rejects_a_file(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.write_text("x")
    with pytest.raises(RunStoreError, match=f"^runs folder {runs} is a file, not a folder$"):
        check_runs_dir(runs)


def test_check_runs_dir_rejects_a_path_under_a_file(tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(RunStoreError, match=f"^cannot create runs folder {blocker}/a/runs: {blocker} is a file"):
        check_runs_dir(blocker / "a" / "runs")


@needs_non_root
def test_check_runs_dir_rejects_an_unwritable_folder(tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RunStoreError, match=f"runs folder {locked} is not writable"):
            check_runs_dir(locked)
        with pytest.raises(RunStoreError, match=f"cannot create runs folder {locked}/runs: {locked} is not writable"):
            check_runs_dir(locked / "runs")
    finally:
        locked.chmod(0o700)


def test_check_runs_dir_rejects_a_folder_it_may_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The same check as above, runnable as root: os.access is what the check asks.
    monkeypatch.setattr(folder_module.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(RunStoreError, match=f"cannot create runs folder {tmp_path}/new: {tmp_path} is not writable"):
        check_runs_dir(tmp_path / "new")


def test_check_runs_dir_rejects_a_name_part_too_long(tmp_path: Path):
    with pytest.raises(RunStoreError, match="File name too long"):
        check_runs_dir(tmp_path / ("x" * 300) / "runs")
    with pytest.raises(RunStoreError, match="is over 255 bytes"):
        check_runs_dir(tmp_path, name="y" * 250)


@pytest.mark.parametrize("name", ["", "a/b", "nul\0"])
def test_check_runs_dir_rejects_a_bad_run_name(tmp_path: Path, name: str):
    with pytest.raises(RunStoreError, match="invalid run name"):
        check_runs_dir(tmp_path, name=name)


def test_create_run_folder_never_reuses_a_folder(tmp_path: Path):
    fixed = datetime(2026, 1, 2, 3, 4, 5)
    first = create_run_folder(tmp_path, "same", now=fixed)
    (first / "keep.txt").write_text("user file")
    (tmp_path / "20260102-030405-same-2").write_text("a file in the way")
    second = create_run_folder(tmp_path, "same", now=fixed)
    assert first.name == "20260102-030405-same"
    assert second.name == "20260102-030405-same-3"
    assert (first / "keep.txt").read_text() == "user file"
    assert list(second.iterdir()) == []


def test_create_run_folder_when_runs_dir_is_a_file(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.write_text("x")
    with pytest.raises(RunStoreError, match=f"cannot create runs folder {runs}: "):
        create_run_folder(runs, "fiqa")


def test_create_run_folder_under_a_file(tmp_path: Path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(RunStoreError, match=f"cannot create runs folder {tmp_path}/blocker/runs: Not a directory"):
        create_run_folder(tmp_path / "blocker" / "runs", "fiqa")


def test_create_run_folder_with_a_name_too_long(tmp_path: Path):
    with pytest.raises(RunStoreError, match=f"cannot create run folder {tmp_path}/.*: File name too long"):
        create_run_folder(tmp_path, "n" * 300)


@needs_non_root
def test_create_run_folder_in_an_unwritable_folder(tmp_path: Path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RunStoreError, match="Permission denied"):
            create_run_folder(tmp_path, "fiqa")
    finally:
        tmp_path.chmod(0o700)


def test_create_run_folder_rejects_a_bad_name(tmp_path: Path):
    with pytest.raises(RunStoreError, match="invalid run name 'a/b'"):
        create_run_folder(tmp_path, "a/b")
    assert list(tmp_path.iterdir()) == []
