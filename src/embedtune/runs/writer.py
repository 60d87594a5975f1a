"""The writer side of the run store, used by training: start a run, then finish it or mark it failed.

Every write is atomic (temporary file, ``fsync``, ``os.replace``) and every record is checked against the schema
before it is written, so the reader never meets a record the writer produced but cannot read.

Under multi-process training (``torchrun``, ``accelerate launch``) only the main process (rank 0) writes: the other
processes get the run folder's path from it (:func:`start_run`) and leave the record alone (:func:`fail_run`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import socket
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from embedtune.io import write_json_atomic
from embedtune.runs.errors import RunRecordError, RunStoreError
from embedtune.runs.folder import check_run_name, create_run_folder, git_commit, library_versions, run_folder_name
from embedtune.runs.record import (
    METRICS_FILE,
    RUN_FILE,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    RunMetrics,
    RunRecord,
    read_run_record,
)
from embedtune.runs.store import process_alive as _process_alive

MAX_ERROR_CHARS = 2000
"""Longest error text stored in ``run.json``; longer texts keep their start and are marked as cut."""

MAIN_PROCESS_TIMEOUT = timedelta(days=7)
"""How long other processes wait for rank 0 in :func:`run_on_main_process` (its final evaluation may be long)."""

T = TypeVar("T")


def start_run(
    runs_dir: str | Path, name: str, *, config: dict[str, Any], data_hashes: dict[str, str], command: str
) -> Path:
    """Create a new run folder and write its ``run.json`` with status ``running``.

    The folder is always new (``<runs_dir>/<YYYYmmdd-HHMMSS>-<name>``, with ``-2``, ``-3`` ... on a clash); the
    record holds the start time, this process's pid and host, installed library versions and the git commit. Under
    ``torch.distributed`` with several processes, every process calls this at the same point; rank 0 alone creates
    the folder and the others receive its path (or raise rank 0's error).

    Args:
        runs_dir: Folder holding run folders (created when missing).
        name: Run name (non-empty, no ``/``).
        config: Nested dict of every resolved setting (JSON-serialisable).
        data_hashes: Data file path -> sha256 hex digest.
        command: The command line that started the run.

    Returns:
        The new run folder.

    Raises:
        RunRecordError: if ``config`` or ``data_hashes`` cannot be recorded (wrong types, not JSON-serialisable);
            nothing is created then.
        RunStoreError: naming the path, if ``name`` is not valid or the run folder cannot be created.
        OSError: if ``run.json`` cannot be written.
    """
    return run_on_main_process(
        lambda: _start_run(runs_dir, name, config=config, data_hashes=data_hashes, command=command)
    )


def _start_run(
    runs_dir: str | Path, name: str, *, config: dict[str, Any], data_hashes: dict[str, str], command: str
) -> Path:
    check_run_name(name)
    now = _now()
    record = RunRecord(
        name=name,
        created=_iso(now),
        status=STATUS_RUNNING,
        pid=os.getpid(),
        host=socket.gethostname(),
        config=config,
        command=command,
        versions=library_versions(),
        data_hashes=data_hashes,
        git_commit=git_commit(),
    )
    content = _checked(record.to_dict(), RunRecord, Path(runs_dir) / run_folder_name(name, now) / RUN_FILE)
    folder = create_run_folder(runs_dir, name, now=now)
    write_json_atomic(folder / RUN_FILE, content)
    return folder


def check_resumable(folder: str | Path) -> RunRecord:
    """Check that a run can be resumed: it stopped (failed, interrupted, or killed while ``running``) unfinished.

    Args:
        folder: The run folder.

    Returns:
        Its record (``config`` holds the run's settings).

    Raises:
        RunStoreError: if the run finished, or is still running (its process is alive on this host, or it ran on
            another host and cannot be checked).
        RunRecordError: if ``run.json`` cannot be read.
    """
    folder = Path(folder)
    record = read_run_record(folder)
    if record.status == STATUS_FINISHED:
        raise RunStoreError(f"run {folder} already finished; there is nothing to resume")
    if record.status == STATUS_RUNNING:
        if record.host != socket.gethostname():
            raise RunStoreError(f"run {folder} is recorded as running on host {record.host}; resume it there")
        if _process_alive(record.pid):
            raise RunStoreError(f"run {folder} is still running (pid {record.pid})")
    return record


def resume_run(folder: str | Path, *, data_hashes: dict[str, str]) -> Path:
    """Mark a stopped run ``running`` again, in this process, to continue it from its last checkpoint.

    The data must be what the run started with: a changed file would silently mix two data sets in one run.
    Under several processes rank 0 alone writes, as in :func:`start_run`.

    Args:
        folder: The run folder.
        data_hashes: Data file path -> sha256 of the files as they are now.

    Returns:
        The folder.

    Raises:
        RunStoreError: as :func:`check_resumable`, or when a data file changed or is not the run's.
    """

    def reopen() -> Path:
        record = check_resumable(folder)
        if data_hashes != record.data_hashes:
            changed = sorted(set(data_hashes.items()) ^ set(record.data_hashes.items()))
            raise RunStoreError(
                f"cannot resume run {folder}: its data changed since it started ({changed[0][0]} differs)"
            )
        reopened = dataclasses.replace(
            record, status=STATUS_RUNNING, finished=None, error=None, pid=os.getpid(), host=socket.gethostname()
        )
        _write_record(Path(folder), reopened)
        return Path(folder)

    return run_on_main_process(reopen)


def finish_run(folder: str | Path, metrics: RunMetrics) -> None:
    """Write ``metrics.json``, then mark the run ``finished`` with the end time.

    Args:
        folder: A run folder made by :func:`start_run`, still ``running``.
        metrics: The run's final figures.

    Raises:
        RunRecordError: if ``metrics`` does not fit the schema (nothing is written then), or ``run.json`` cannot
            be read.
        RunStoreError: if the run is not ``running`` (it already finished or failed).
        OSError: if a file cannot be written.
    """
    folder = Path(folder)
    content = _checked(metrics.to_dict(), RunMetrics, folder / METRICS_FILE)
    record = _running_record(folder)
    write_json_atomic(folder / METRICS_FILE, content)
    _write_record(folder, dataclasses.replace(record, status=STATUS_FINISHED, finished=_iso(_now())))


def fail_run(folder: str | Path, error: str, interrupted: bool = False) -> bool:
    """Mark a running run ``failed`` (or ``interrupted``) with the end time and the error text.

    Meant for an ``except`` block around training; a run that already ended is left as it is, so that a failure
    after :func:`finish_run` (printing the table, say) does not turn a finished run into a failed one. In a process
    other than rank 0 it does nothing (rank 0 records the run).

    Args:
        folder: A run folder made by :func:`start_run`.
        error: Why the run stopped; cut to about :data:`MAX_ERROR_CHARS` characters.
        interrupted: Record status ``interrupted`` (Ctrl-C, a signal) instead of ``failed``.

    Returns:
        ``True`` when the record was updated, ``False`` when the run had already ended or this is not rank 0.

    Raises:
        RunRecordError: if ``run.json`` cannot be read or does not fit the schema.
        OSError: if ``run.json`` cannot be written.
    """
    if not is_main_process():
        return False
    folder = Path(folder)
    record = read_run_record(folder)
    if record.status != STATUS_RUNNING:
        return False
    status = STATUS_INTERRUPTED if interrupted else STATUS_FAILED
    _write_record(folder, dataclasses.replace(record, status=status, finished=_iso(_now()), error=cap_error(error)))
    return True


def is_main_process() -> bool:
    """Whether this process writes the run: rank 0 of an initialised ``torch.distributed`` group, or the only one."""
    return _rank_and_world_size()[0] == 0


def run_on_main_process(work: Callable[[], T]) -> T:
    """Run ``work`` in rank 0 only and hand its result to every process; without a process group, ``work()``.

    Under ``torch.distributed`` with several processes, every process calls this at the same point: all wait for
    each other, rank 0 runs ``work``, and the others receive its (picklable) result, or its error, over a gloo group
    that waits up to :data:`MAIN_PROCESS_TIMEOUT` (rank 0's work may outlast the training collectives' timeout).

    Args:
        work: What only rank 0 does (create the run folder, evaluate and report).

    Returns:
        ``work``'s result, in every process.

    Raises:
        Exception: whatever ``work`` raised in rank 0, in every process (a ``RuntimeError`` quoting it where the
            error cannot be pickled).
    """
    rank, world_size = _rank_and_world_size()
    if world_size == 1:
        return work()
    # torch: runs/ stays importable without it
    import torch.distributed as dist

    group = dist.new_group(backend="gloo", timeout=MAIN_PROCESS_TIMEOUT)
    try:
        dist.barrier(group=group)
        message: list[Any] = [None]
        if rank == 0:
            try:
                message = [(True, work())]
            except Exception as error:
                dist.broadcast_object_list([(False, _picklable(error))], src=0, group=group)
                raise
        dist.broadcast_object_list(message, src=0, group=group)
    finally:
        dist.destroy_process_group(group)
    succeeded, value = message[0]
    if not succeeded:
        raise value
    return value


def _rank_and_world_size() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised default process group; ``(0, 1)`` without one.

    torch is never imported here: without it imported, no process group can exist.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _picklable(error: Exception) -> Exception:
    """``error`` itself when it survives pickling, else a RuntimeError quoting it (rank 0's error for the others)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any pickling failure falls back to the message
        return RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")
    return error


def cap_error(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Cut ``text`` to about ``limit`` characters, keeping its start and saying how long it was."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (cut, {len(text)} chars in all)"


def _running_record(folder: Path) -> RunRecord:
    """Return the folder's record, which must still be ``running``; RunStoreError otherwise."""
    record = read_run_record(folder)
    if record.status != STATUS_RUNNING:
        raise RunStoreError(f"cannot finish run {folder}: its status is already {record.status!r}")
    return record


def _write_record(folder: Path, record: RunRecord) -> None:
    """Check ``record`` against the schema and write it to ``<folder>/run.json`` atomically."""
    path = folder / RUN_FILE
    write_json_atomic(path, _checked(record.to_dict(), RunRecord, path))


def _checked(content: dict[str, Any], schema: type[RunRecord] | type[RunMetrics], path: Path) -> dict[str, Any]:
    """``content`` after a JSON round trip and a schema check, exactly as the reader will see it.

    Raises:
        RunRecordError: naming ``path`` and the field if ``content`` does not fit ``schema``, or naming no field if
            it is not JSON-serialisable.
    """
    try:
        decoded = json.loads(json.dumps(content, allow_nan=True))
    except (TypeError, ValueError) as error:
        raise RunRecordError(path, None, f"cannot be written as JSON: {error}") from None
    schema.from_dict(decoded, path)
    return content


def _now() -> datetime:
    """Return the current local time, with its UTC offset."""
    return datetime.now().astimezone()


def _iso(moment: datetime) -> str:
    """``moment`` as ISO-8601 to the second, e.g. ``2024-05-01T10:30:00+02:00``."""
    return moment.isoformat(timespec="seconds")
