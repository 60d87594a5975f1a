"""The one place embedtune reads and writes user files: line and JSONL reading, atomic writes, hashing.

Every OS error met while reading a user's file (missing, unreadable, a folder, a name too long) becomes one
:class:`~embedtune.errors.DataError` naming the file; every write goes through a temporary file in the same
folder, ``fsync`` and ``os.replace``, so a crash never leaves a torn file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from embedtune.errors import DataError, describe_os_error

_HASH_CHUNK_BYTES = 1 << 20


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield the non-blank lines of a UTF-8 text file with their 1-based line numbers.

    Line endings (LF or CRLF) and a leading byte-order mark are removed; lines holding only whitespace are skipped.

    Args:
        path: File to read.

    Yields:
        ``(line_number, line_text)`` pairs.

    Raises:
        DataError: if the file does not exist, cannot be read (permissions, a folder, ...) or a line is not UTF-8.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    if path.is_dir():
        raise DataError(path, None, None, "is a folder, expected a file")
    try:
        with path.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise DataError(path, line_number, None, f"not valid UTF-8 ({error.reason})") from None
                if line_number == 1:
                    text = text.removeprefix("\ufeff")
                text = text.rstrip("\r\n")
                if text.strip():
                    yield line_number, text
    except OSError as error:
        raise DataError(path, None, None, f"cannot read: {describe_os_error(error)}") from None


def parse_json(text: str, path: str | Path, line: int | None) -> Any:
    """Decode one JSON document, turning every decoding failure into a DataError at ``path:line``.

    Args:
        text: The JSON text: one line of a JSONL file, or a whole file.
        path: The file it came from (named in errors).
        line: The 1-based line ``text`` starts at, or ``None`` for a whole file (a decoding error then names the
            line it occurred on).

    Raises:
        DataError: on malformed JSON, an integer literal past Python's digit limit, or nesting too deep to decode.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = error.lineno if line is None else line + error.lineno - 1
        raise DataError(path, at, None, f"malformed JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise DataError(path, line, None, "malformed JSON: nested too deeply") from None
    except ValueError as error:  # e.g. an integer literal longer than Python's digit limit
        raise DataError(path, line, None, f"malformed JSON: {error}") from None


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield the JSON objects of a JSONL file with their 1-based line numbers, skipping blank lines.

    Args:
        path: JSONL file to read.

    Yields:
        ``(line_number, record)`` pairs, one per non-blank line.

    Raises:
        DataError: if the file cannot be read, a line is not valid JSON (``field`` is ``None``) or a line holds a
            JSON value that is not an object.
    """
    for line_number, text in iter_text_lines(path):
        record = parse_json(text, path, line_number)
        if not isinstance(record, dict):
            raise DataError(path, line_number, None, f"expected a JSON object, got {json_type_name(record)}")
        yield line_number, record


def read_text(path: str | Path) -> str:
    """Read a whole UTF-8 text file.

    Raises:
        DataError: naming the file if it is missing, unreadable, a folder or not UTF-8.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(path, None, None, f"not valid UTF-8 ({error.reason})") from None
    except OSError as error:
        raise DataError(path, None, None, f"cannot read: {describe_os_error(error)}") from None


def json_type_name(value: object) -> str:
    """Name a decoded JSON value's type in JSON terms (``string``, ``number``, ``array``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@contextlib.contextmanager
def atomic_file(path: str | Path, binary: bool = False, suffix: str = ".tmp") -> Iterator[IO]:
    """Open a temporary file next to ``path`` that replaces it only when the block ends without an error.

    The data is flushed and fsynced, then ``os.replace`` swaps it in: readers see the old file or the whole new one,
    never half of it. On any error (Ctrl-C included) the temporary file is removed and ``path`` is left as it was.

    Args:
        path: Destination; its folder must exist.
        binary: Open in binary mode; text mode writes UTF-8 with Unix line ends.
        suffix: Suffix of the temporary file (``.<name>.<random><suffix>`` in the same folder).

    Yields:
        The open file.

    Raises:
        OSError: if the file cannot be written or replaced.
    """
    path = Path(path)
    text = {} if binary else {"encoding": "utf-8", "newline": "\n"}
    handle = tempfile.NamedTemporaryFile(
        "wb" if binary else "w", dir=path.parent, prefix=f".{path.name}.", suffix=suffix, delete=False, **text
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_lines_atomic(path: str | Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (each ending in a newline) to ``path`` atomically (see :func:`atomic_file`).

    Args:
        path: Destination; its folder must exist.
        lines: Text lines, UTF-8 encoded on write.
    """
    with atomic_file(path) as handle:
        handle.writelines(lines)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON (non-ASCII kept as is) to ``path`` atomically."""
    write_lines_atomic(path, [json.dumps(data, indent=2, ensure_ascii=False) + "\n"])


def jsonl_line(record: dict[str, Any]) -> str:
    """Serialise one record as a UTF-8 JSONL line (non-ASCII text kept as is, never ASCII-escaped)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 of a file's bytes, reading it in 1 MiB chunks.

    Args:
        path: File to hash.

    Returns:
        The hex digest (64 lowercase hex characters).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
