"""The reader side of the run store: find, load and resolve run folders for ``embedtune runs``.

A run folder is a sub-folder holding ``run.json``. Reading never raises on a bad folder: a record that cannot be
read or does not fit the schema gives a :class:`RunInfo` with status ``"corrupt"`` and the error, so that one
broken folder never hides the others.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtune.errors import describe_os_error
from embedtune.runs.errors import RunRecordError, RunStoreError
from embedtune.runs.record import (
    METRICS_FILE,
    RUN_FILE,
    STATUS_CORRUPT,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    Report,
    RunMetrics,
    RunRecord,
    read_run_metrics,
    read_run_record,
)


@dataclass(frozen=True)
class RunInfo:
    """What ``embedtune runs`` knows about one run folder.

    Attributes:
        path: The run folder.
        status: ``running``, ``finished``, ``failed``, ``interrupted`` or ``corrupt``. A record still ``running``
            whose process is gone from this host reads as ``interrupted``.
        record: The parsed ``run.json``, or ``None`` when it cannot be read.
        metrics: The parsed ``metrics.json``, or ``None`` when absent or unreadable.
        error: Why the run is corrupt (the record error) or why it failed (the recorded error), else ``None``.
    """

    path: Path
    status: str
    record: RunRecord | None = None
    metrics: RunMetrics | None = None
    error: str | None = None

    @property
    def folder(self) -> str:
        """The run folder's name, e.g. ``"20240501-103000-msmarco-small"``."""
        return self.path.name

    @property
    def name(self) -> str:
        """The recorded run name (the folder name when the record cannot be read)."""
        return self.record.name if self.record else self.folder

    @property
    def created(self) -> str:
        """ISO-8601 start time, or ``""`` when unknown."""
        return self.record.created if self.record else ""

    @property
    def config(self) -> dict[str, Any]:
        """Nested dict of every resolved setting (empty when unknown)."""
        return self.record.config if self.record else {}

    @property
    def base_model(self) -> str | None:
        """``config["model"]["name_or_path"]``, or ``None`` when the config does not record it."""
        model = self.config.get("model")
        value = model.get("name_or_path") if isinstance(model, dict) else None
        return None if value is None else str(value)

    @property
    def primary_metric(self) -> str | None:
        """The metric checkpoints were selected by, or ``None`` without metrics."""
        return self.metrics.primary_metric if self.metrics else None

    @property
    def report(self) -> Report | None:
        """Base vs fine-tuned figures on the reported split, or ``None`` without metrics."""
        return self.metrics.report if self.metrics else None

    @property
    def process_gone(self) -> bool:
        """Whether the record says ``running`` but its process has ended (shown as ``interrupted``)."""
        return self.record is not None and self.record.status == STATUS_RUNNING and self.status == STATUS_INTERRUPTED


def load_run(folder: str | Path) -> RunInfo:
    """Read one run folder; never raises on a bad record.

    Args:
        folder: The run folder (holding ``run.json`` and, once finished, ``metrics.json``).

    Returns:
        Its :class:`RunInfo`. Status ``corrupt`` (with ``error`` saying why) when ``run.json`` is missing,
        unreadable or off-schema, when ``metrics.json`` is present but bad, or when a finished run lacks it.
    """
    folder = Path(folder)
    try:
        record = read_run_record(folder)
    except RunRecordError as error:
        return RunInfo(folder, STATUS_CORRUPT, error=str(error))
    try:
        metrics = read_run_metrics(folder) if _exists(folder / METRICS_FILE) else None
    except RunRecordError as error:
        return RunInfo(folder, STATUS_CORRUPT, record, error=str(error))
    if record.status == STATUS_FINISHED and metrics is None:
        problem = f"{folder / METRICS_FILE}: file not found, although {RUN_FILE} says the run finished"
        return RunInfo(folder, STATUS_CORRUPT, record, error=problem)
    status = STATUS_INTERRUPTED if _process_gone(record) else record.status
    error = record.error if status in (STATUS_FAILED, STATUS_INTERRUPTED) else None
    return RunInfo(folder, status, record, metrics, error)


def find_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Read every run folder directly under ``root``; a corrupt one is listed with status ``corrupt``.

    Args:
        root: Folder holding run folders.

    Returns:
        Runs sorted by folder name (which starts with a timestamp, so oldest first). Sub-folders without
        ``run.json`` are skipped; a missing ``root`` gives an empty list.

    Raises:
        RunStoreError: naming ``root``, if it exists but cannot be listed (a file, permission denied).
    """
    return [load_run(folder) for folder in run_folders(Path(root))]


def resolve_run(ref: str, root: str | Path = "runs") -> Path:
    """Turn a user's reference to a run into its folder.

    Tried in order: ``ref`` as a path to a run folder; an exact folder name under ``root``; a folder whose name is
    ``<timestamp>-<ref>`` (the run name); a folder name ending with ``ref``; a folder name containing ``ref``. The
    first of these that matches exactly one folder wins.

    Args:
        ref: Path, folder name, run name, or a unique suffix or substring of a folder name.
        root: Folder holding run folders.

    Returns:
        The run folder's path.

    Raises:
        ValueError: if ``ref`` is empty, matches no run, or matches several runs at the same step (the message
            lists the candidates).
        RunStoreError: naming ``root``, if it exists but cannot be listed.
    """
    if not ref:
        raise ValueError("empty run reference")
    as_path = Path(ref)
    if _exists(as_path / RUN_FILE):
        return as_path
    folders = run_folders(Path(root))
    for matches in _match_tiers(ref, folders):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(folder.name for folder in matches)
            raise ValueError(f"run reference {ref!r} is ambiguous; candidates: {names}")
    available = ", ".join(folder.name for folder in folders) or "none"
    raise ValueError(f"no run matches {ref!r} (as a path or under {root}); available runs: {available}")


def run_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding ``run.json`` (or one that cannot be checked), sorted by name.

    Raises:
        RunStoreError: naming ``root``, if it exists but cannot be listed.
    """
    try:
        children = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        if root.is_file():
            raise RunStoreError(f"runs folder {root} is a file, not a folder") from None
        return []
    except OSError as error:
        raise RunStoreError(f"cannot list runs folder {root}: {describe_os_error(error)}") from None
    return sorted((child for child in children if _exists(child / RUN_FILE, unknown=True)), key=lambda p: p.name)


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this host (one owned by another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _process_gone(record: RunRecord) -> bool:
    """Whether a ``running`` record's process has ended; a process on another host is assumed alive."""
    if record.status != STATUS_RUNNING or record.host != socket.gethostname():
        return False
    return not process_alive(record.pid)


def _exists(path: Path, unknown: bool = False) -> bool:
    """Whether ``path`` exists; ``unknown`` is returned when it cannot be checked (permission, name too long)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return unknown
    return True


def _match_tiers(ref: str, folders: Sequence[Path]) -> Iterable[list[Path]]:
    """Candidate folders for ``ref``, from the strictest way of matching to the loosest."""
    yield [f for f in folders if f.name == ref]
    yield [f for f in folders if f.name.endswith(f"-{ref}")]
    yield [f for f in folders if f.name.endswith(ref)]
    yield [f for f in folders if ref in f.name]
