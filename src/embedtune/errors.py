"""The errors a user meets and how their messages quote input: the lowest layer, importing nothing of embedtune.

:class:`DataError` (bad input data, located by file, line and field), the guard that turns failures while reading
into it (:func:`reading`), the check that a text decoded from JSON is valid Unicode (:func:`check_unicode`),
:class:`ConfigError` (a bad setting) and the helpers that keep messages short (:func:`shorten`,
:func:`describe_os_error`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAX_QUOTED_CHARS = 80
"""Longest piece of user input quoted in an error message; longer values are cut with ``...``."""

MAX_PATH_CHARS = 200
"""Longest file path shown as is in a message; longer ones (or ones with control characters) are shortened."""


def shorten(value: Any, limit: int = MAX_QUOTED_CHARS) -> str:
    """Return ``repr(value)`` cut to about ``limit`` characters, so that messages never echo megabytes of input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} chars)"


def describe_os_error(error: OSError) -> str:
    """One line for an OS error: its reason (``Permission denied``, ``File name too long`` ...) without errno noise."""
    return error.strerror or str(error) or type(error).__name__


class ConfigError(ValueError):
    """An invalid setting: unknown key, wrong type or out-of-range value. The message names the setting."""


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
        shown_path = _display_path(self.path)
        location = shown_path if line is None else f"{shown_path}:{line}"
        where = f" field '{field}':" if field else ""
        super().__init__(f"{location}:{where} {message}")


def check_unicode(text: str, path: str | Path, line: int | None, field: str | None) -> str:
    """Return ``text`` unchanged if it is valid Unicode, so that every tokenizer and UTF-8 file can take it.

    A UTF-8 file cannot hold a lone surrogate (U+D800 to U+DFFF), but a JSON escape such as backslash-u-D800 decodes
    to one; the tokenizer would fail on it much later, after the run folder exists.

    Args:
        text: A text decoded from the user's file.
        path: The file (named in the error).
        line: The 1-based line of the record, or ``None``.
        field: The field holding ``text`` (``text``, ``pos[2]``...), or ``None``.

    Returns:
        ``text``.

    Raises:
        DataError: naming file, line and field, the code point and its 1-based position, for a lone surrogate.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code_point = ord(text[error.start])
        message = (
            f"lone surrogate U+{code_point:04X} at character {error.start + 1}: not valid Unicode, no tokenizer can "
            "encode it (a broken \\u escape in the JSON?)"
        )
        raise DataError(path, line, field, message) from None
    return text


def _display_path(path: Path) -> str:
    """Return the path as text, shortened when it is absurdly long or holds control characters (a NUL byte...)."""
    text = str(path)
    if len(text) <= MAX_PATH_CHARS and text.isprintable():
        return text
    return shorten(text, MAX_PATH_CHARS)


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn any exception other than DataError raised inside the block into a DataError naming ``path``.

    Loaders wrap their work in ``with reading(path):`` so that an OS error (name too long, permission denied),
    a RecursionError or any other surprise while reading a user's file reaches the user as one line naming the
    file; the original exception stays attached as ``__cause__`` for debugging.

    Args:
        path: The file (or folder) being read.

    Yields:
        Nothing; the block runs unchanged.

    Raises:
        DataError: re-raised as is, or built from any other :class:`Exception` raised in the block.
    """
    try:
        yield
    except DataError:
        raise
    except Exception as error:  # every failure must name the file
        raise DataError(path, None, None, f"cannot read: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    """One short line for an unexpected exception: its reason without errno noise or megabytes of input."""
    if isinstance(error, OSError):
        return describe_os_error(error)
    if isinstance(error, RecursionError):
        return "nested too deeply"
    detail = str(error)
    return type(error).__name__ if not detail else f"{type(error).__name__}: {shorten(detail)}"
