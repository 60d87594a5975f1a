"""The two errors of the run store: a bad run record, and a runs folder that cannot be used."""

from __future__ import annotations

from pathlib import Path


class RunRecordError(ValueError):
    """A run record file (``run.json`` or ``metrics.json``) that cannot be read or does not fit the schema.

    Args:
        path: The file holding the bad record.
        field: Dotted name of the offending field (``"report.base.ndcg@10"``), or ``None`` when the whole file is
            bad (unreadable, not JSON, not an object).
        problem: What is wrong, in plain words.

    Attributes:
        path: As given, as a :class:`~pathlib.Path`.
        field: As given.
    """

    def __init__(self, path: str | Path, field: str | None, problem: str) -> None:
        self.path = Path(path)
        self.field = field
        where = f"{self.path}: field {field!r}" if field else str(self.path)
        super().__init__(f"{where}: {problem}")


class RunStoreError(ValueError):
    """A runs folder or run folder that cannot be created or written; the one-line message names the path."""
