"""The single error type raised for bad input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data, located by file, line and field.

    Raised by every loader before any model is loaded, so a user sees one clear message such as
    ``queries.jsonl:12: field 'text': empty text``.

    Args:
        path: File holding the bad record.
        line: 1-based line number in ``path`` (``None`` when the problem concerns the whole file).
        field: Name of the offending field or column (``None`` when the whole record is bad).
        message: What is wrong, in plain words.
    """

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.message = message
        location = str(self.path) if line is None else f"{self.path}:{line}"
        where = f" field '{field}':" if field else ""
        super().__init__(f"{location}:{where} {message}")
