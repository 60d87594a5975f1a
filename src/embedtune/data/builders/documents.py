"""Read a folder of raw documents (``.txt``, ``.md``, ``.html``/``.htm``, ``.jsonl``) into clean texts.

* ``.txt`` and ``.md``: the file is one document, kept as written except for whitespace: runs of spaces and tabs
  become one space, lines are stripped, runs of blank lines become one blank line (the paragraph break). A ``.md``
  file's title is its first ``# `` heading.
* ``.html``/``.htm``: the file is one document, turned into text by
  :func:`embedtune.data.html_text.html_to_text`; each block element (``p``, ``li``, ``h1``...) is a paragraph.
* ``.jsonl``: one document per non-blank line, a JSON object with a string ``text`` and an optional string ``title``
  and ``_id`` (unique in the file).

A document without a real title is named after its file's stem (``title_is_real`` is then false). Files are read
recursively in sorted path order, skipping hidden files and folders; files of other types are listed as skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.data.beir import record_id
from embedtune.data.html_text import html_to_text
from embedtune.data.splits import group_by_hash_split
from embedtune.errors import DataError, reading
from embedtune.io import iter_jsonl_objects, json_type_name, read_text

TEXT_SUFFIXES = (".txt",)
MARKDOWN_SUFFIXES = (".md",)
HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIXES = (".jsonl",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES + JSONL_SUFFIXES
"""File types read as documents (compared case-insensitively)."""

SPLITS = ("train", "dev", "test")
"""Split names, in the order of the fractions."""

_MARKDOWN_TITLE = re.compile(r"#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")


@dataclass(frozen=True)
class Document:
    """One source document.

    Attributes:
        source: Unique name of the document: its file's path relative to the folder read (``notes/a.md``), with
            ``#<_id>`` (or ``:<line>`` without an ``_id``) appended for a record of a ``.jsonl`` file.
        title: Its title: the real one when known, else its file's stem.
        title_is_real: Whether ``title`` is a real title (a ``.md`` heading or a ``.jsonl`` ``title``).
        text: Its text: paragraphs separated by a blank line, whitespace normalised.
    """

    source: str
    title: str
    title_is_real: bool
    text: str


@dataclass
class DocumentFolder:
    """What :func:`read_documents` found.

    Attributes:
        documents: The documents with text, in sorted file order (records of a ``.jsonl`` file in line order).
        files: Files read as documents.
        empty: Documents dropped because they hold no text once cleaned.
        skipped: ``(relative path, reason)`` of every file not read (unsupported type).
    """

    documents: list[Document] = field(default_factory=list)
    files: int = 0
    empty: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def normalize_text(text: str) -> str:
    """Normalise the whitespace of a plain text, keeping its paragraphs.

    Args:
        text: Any text.

    Returns:
        Each line with its runs of whitespace collapsed to one space and stripped; runs of blank lines collapsed to
        one blank line; no blank line at either end.
    """
    lines = [" ".join(line.split()) for line in text.splitlines()]
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join("\n".join(paragraph) for paragraph in paragraphs if paragraph)


def markdown_title(text: str) -> str | None:
    """Return the text of the first level-1 ATX heading (``# Title``) of a Markdown text.

    Args:
        text: Markdown text.

    Returns:
        The heading's text without the ``#`` marks, or ``None`` when there is no non-empty ``# `` heading.
    """
    for line in text.splitlines():
        match = _MARKDOWN_TITLE.fullmatch(line.strip())
        if match and match.group(1).strip():
            return match.group(1).strip()
    return None


def read_document_file(path: Path, relative: str) -> tuple[list[Document], int]:
    """Read the documents of one file.

    Args:
        path: A file with a supported suffix (see :data:`SUPPORTED_SUFFIXES`).
        relative: Its path relative to the folder read, in POSIX form (used in :attr:`Document.source`).

    Returns:
        ``(documents with text, documents dropped because they hold no text)``.

    Raises:
        DataError: naming the file (and line and field for ``.jsonl``) if it cannot be read or decoded, or a
            ``.jsonl`` record is not an object, lacks a string ``text``, or has a non-string ``title`` or a missing,
            empty or duplicate ``_id`` where one is given.
        ValueError: for an unsupported suffix.
    """
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, relative)
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"unsupported file type {path.suffix!r}: {path}")
    raw = read_text(path).removeprefix("\ufeff")
    with reading(path):
        if suffix in HTML_SUFFIXES:
            text = "\n\n".join(html_to_text(raw).split("\n"))
        else:
            text = normalize_text(raw)
        title = markdown_title(text) if suffix in MARKDOWN_SUFFIXES else None
    if not text:
        return [], 1
    return [Document(relative, title if title is not None else path.stem, title is not None, text)], 0


def _read_jsonl(path: Path, relative: str) -> tuple[list[Document], int]:
    """Read the documents of a ``.jsonl`` file: one object per line with ``text`` and optional ``title``/``_id``."""
    documents: list[Document] = []
    empty = 0
    first_seen: dict[str, int] = {}
    for line, record in iter_jsonl_objects(path):
        text = normalize_text(_string_field(record, "text", path, line, required=True))
        title = " ".join(_string_field(record, "title", path, line, required=False).split())
        source = f"{relative}#{record_id(record, path, line, first_seen)}" if "_id" in record else f"{relative}:{line}"
        if not text:
            empty += 1
            continue
        documents.append(Document(source, title or path.stem, bool(title), text))
    return documents, empty


def _string_field(record: dict[str, Any], name: str, path: Path, line: int, required: bool) -> str:
    """Return ``record[name]``: a string; ``""`` when absent and not required."""
    if name not in record:
        if required:
            raise DataError(path, line, name, "missing required field")
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise DataError(path, line, name, f"expected a string, got {json_type_name(value)}")
    return value


def read_documents(folder: str | Path) -> DocumentFolder:
    """Read every supported file under a folder, recursively, in sorted path order.

    Hidden files and folders (names starting with ``.``) are not read; files of other types are listed in
    :attr:`DocumentFolder.skipped`.

    Args:
        folder: The folder of raw documents.

    Returns:
        The documents and what was skipped.

    Raises:
        DataError: if ``folder`` is not an existing folder, or a file is bad (see :func:`read_document_file`).
    """
    folder = Path(folder)
    with reading(folder):
        if not folder.is_dir():
            raise DataError(folder, None, None, "not a folder" if folder.exists() else "folder not found")
        files = sorted(_visible_files(folder), key=lambda path: path.relative_to(folder).as_posix())
    found = DocumentFolder()
    for path in files:
        relative = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            found.skipped.append((relative, f"unsupported file type (read: {', '.join(SUPPORTED_SUFFIXES)})"))
            continue
        documents, empty = read_document_file(path, relative)
        found.documents.extend(documents)
        found.empty += empty
        found.files += 1
    return found


def _visible_files(folder: Path) -> Iterable[Path]:
    """Yield the files under ``folder`` whose path has no hidden component."""
    for parent, subfolders, filenames in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        yield from (Path(parent, name) for name in filenames if not name.startswith("."))


def assign_source_splits(
    sources: Iterable[str], fractions: Sequence[float], seed: int, unit: str = "source documents"
) -> dict[str, str]:
    """Assign source documents (or modules) to train/dev/test by a seeded hash, each positive share non-empty.

    Each source goes to the split :func:`~embedtune.data.splits.hash_split` gives ``"<seed>:<source>"``, so a
    source's split depends only on its name, the seed and the fractions (adding documents moves no other one).
    When that leaves a split with a positive share empty, it takes the source with the smallest seeded hash from
    the largest split, until no such split is left.

    Args:
        sources: Source names (duplicates ignored).
        fractions: Share of sources for train, dev and test.
        seed: Seed mixed into the hash.
        unit: What a source is, in words, for the error message.

    Returns:
        Source -> split name.

    Raises:
        ValueError: if ``fractions`` is invalid, or there are fewer sources than splits with a positive share.
    """
    unique = sorted(set(sources))
    needed = sum(1 for share in fractions if share > 0)
    if len(unique) < needed:
        raise ValueError(f"fractions {tuple(fractions)} need at least {needed} {unit}, got {len(unique)}")
    groups = group_by_hash_split(unique, lambda source: f"{seed}:{source}", SPLITS, fractions)
    for name, share in zip(SPLITS, fractions, strict=True):
        if share > 0 and not groups[name]:
            donor = max(SPLITS, key=lambda other: len(groups[other]))
            moved = min(groups[donor], key=lambda source: _seeded_digest(seed, source))
            groups[donor].remove(moved)
            groups[name].append(moved)
    return {source: name for name, members in groups.items() for source in members}


def _seeded_digest(seed: int, source: str) -> str:
    """Return the SHA-256 hex digest of ``"<seed>:<source>"``."""
    return hashlib.sha256(f"{seed}:{source}".encode()).hexdigest()
