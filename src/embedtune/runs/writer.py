"""The writer side of the run store, used by training: start a run, then finish it or mark it failed.

Every write is atomic (temporary file, ``fsync``, ``os.replace``) and every record is checked against the schema
before it is written, so the reader never meets a record the writer produced but cannot read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

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

MAX_ERROR_CHARS = 2000
"""Longest error text stored in ``run.json``; longer texts keep their start and are marked as cut."""


def start_run(
    runs_dir: str | Path, name: str, *, config: dict[str, Any], data_hashes: dict[str, str], command: str
) -> Path:
    """Create a new run folder and write its ``run.json`` with status ``running``.

    The folder is always new (``<runs_dir>/<YYYYmmdd-HHMMSS>-<name>``, with ``-2``, ``-3`` ... on a clash); the
    record holds the start time, this process's pid and host, installed library versions and the git commit.

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
    after :func:`finish_run` (printing the table, say) does not turn a finished run into a failed one.

    Args:
        folder: A run folder made by :func:`start_run`.
        error: Why the run stopped; cut to about :data:`MAX_ERROR_CHARS` characters.
        interrupted: Record status ``interrupted`` (Ctrl-C, a signal) instead of ``failed``.

    Returns:
        ``True`` when the record was updated, ``False`` when the run had already ended.

    Raises:
        RunRecordError: if ``run.json`` cannot be read or does not fit the schema.
        OSError: if ``run.json`` cannot be written.
    """
    folder = Path(folder)
    record = read_run_record(folder)
    if record.status != STATUS_RUNNING:
        return False
    status = STATUS_INTERRUPTED if interrupted else STATUS_FAILED
    _write_record(folder, dataclasses.replace(record, status=status, finished=_iso(_now()), error=cap_error(error)))
    return True


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
