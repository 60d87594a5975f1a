"""Read, validate and write retrieval sets in the BEIR folder layout.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and one
``qrels/<split>.tsv`` per split (header ``query-id<TAB>corpus-id<TAB>score``). Every problem found while reading is
raised as a :class:`~embedtune.data.errors.DataError` that names the file, the 1-based line and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from embedtune.data.errors import DataError
from embedtune.data.types import Qrels, RetrievalSet

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")

_INTEGER = re.compile(r"-?[0-9]+")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HASH_CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------------------------------
# Line and JSONL reading shared by the loaders
# --------------------------------------------------------------------------------------------------------------------


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield the non-blank lines of a UTF-8 text file with their 1-based line numbers.

    Line endings (LF or CRLF) and a leading byte-order mark are removed; lines holding only whitespace are
    skipped.

    Args:
        path: File to read.

    Yields:
        ``(line_number, line_text)`` pairs.

    Raises:
        DataError: if the file does not exist or a line is not valid UTF-8.
    """
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
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


def iter_jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield the JSON objects of a JSONL file with their 1-based line numbers, skipping blank lines.

    Args:
        path: JSONL file to read.

    Yields:
        ``(line_number, record)`` pairs, one per non-blank line.

    Raises:
        DataError: if the file does not exist, a line is not valid JSON (``field`` is ``None``) or a line holds a JSON
            value that is not an object.
    """
    for line_number, text in iter_text_lines(path):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(path, line_number, None, f"malformed JSON: {error.msg} (column {error.colno})") from None
        except ValueError as error:  # e.g. an integer literal longer than Python's digit limit
            raise DataError(path, line_number, None, f"malformed JSON: {error}") from None
        if not isinstance(record, dict):
            raise DataError(path, line_number, None, f"expected a JSON object, got {_json_type_name(record)}")
        yield line_number, record


def _json_type_name(value: object) -> str:
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


def _required_string(record: dict[str, Any], field: str, path: Path, line: int) -> str:
    """Return ``record[field]``, which must be present and a string (possibly empty)."""
    if field not in record:
        raise DataError(path, line, field, "missing required field")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string, got {_json_type_name(value)}")
    return value


def _record_id(record: dict[str, Any], path: Path, line: int, first_seen: dict[str, int]) -> str:
    """Return the record's ``_id`` after checking it is a non-empty string not seen before in the file."""
    record_id = _required_string(record, "_id", path, line)
    if not record_id.strip():
        raise DataError(path, line, "_id", "empty id")
    if record_id in first_seen:
        raise DataError(path, line, "_id", f"duplicate id {record_id!r} (first seen on line {first_seen[record_id]})")
    first_seen[record_id] = line
    return record_id


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def load_corpus(path: Path) -> dict[str, str]:
    """Read a BEIR ``corpus.jsonl``.

    Args:
        path: The ``corpus.jsonl`` file.

    Returns:
        Document id -> document text, in file order. The text is ``f"{title} {text}"`` stripped when the title is
        non-empty, else ``text``.

    Raises:
        DataError: on a missing file, malformed JSON, a non-object line, a missing or non-string ``_id``/``text``, a
            non-string ``title``, a document whose text and title are both empty, a duplicate ``_id``, or a file
            with no documents.
    """
    corpus: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line, record in iter_jsonl_objects(path):
        doc_id = _record_id(record, path, line, first_seen)
        text = _required_string(record, "text", path, line)
        title = record.get("title", "")
        if not isinstance(title, str):
            raise DataError(path, line, "title", f"expected a string, got {_json_type_name(title)}")
        if not text.strip() and not title.strip():
            raise DataError(path, line, "text", "empty text and empty title")
        corpus[doc_id] = f"{title} {text}".strip() if title.strip() else text
    if not corpus:
        raise DataError(path, None, None, "no documents")
    return corpus


def load_queries(path: Path) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl``.

    Args:
        path: The ``queries.jsonl`` file.

    Returns:
        Query id -> query text, in file order.

    Raises:
        DataError: on a missing file, malformed JSON, a non-object line, a missing or non-string ``_id``/``text``, an
            empty or whitespace-only ``text``, a duplicate ``_id``, or a file with no queries.
    """
    queries: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line, record in iter_jsonl_objects(path):
        query_id = _record_id(record, path, line, first_seen)
        text = _required_string(record, "text", path, line)
        if not text.strip():
            raise DataError(path, line, "text", "empty text")
        queries[query_id] = text
    if not queries:
        raise DataError(path, None, None, "no queries")
    return queries


def load_qrels(path: Path, query_ids: Iterable[str], doc_ids: Iterable[str]) -> Qrels:
    """Read one BEIR ``qrels/<split>.tsv`` file and check it against the known queries and documents.

    Args:
        path: The TSV file: header ``query-id<TAB>corpus-id<TAB>score``, then one judgement per line.
        query_ids: Ids of the queries the judgements may refer to.
        doc_ids: Ids of the documents the judgements may refer to.

    Returns:
        Query id -> document id -> integer score. Rows with a score <= 0 are kept (they mark judged non-relevant
        documents).

    Raises:
        DataError: on a missing file or header, a wrong header, a row without exactly 3 columns, a score that is not
            an integer (field ``score``), an unknown query or document id (field ``query-id`` / ``corpus-id``), or a
            duplicate (query-id, corpus-id) row.
    """
    known_queries = query_ids if isinstance(query_ids, (set, frozenset, dict)) else set(query_ids)
    known_docs = doc_ids if isinstance(doc_ids, (set, frozenset, dict)) else set(doc_ids)
    qrels: Qrels = {}
    first_seen: dict[tuple[str, str], int] = {}
    lines = iter_text_lines(path)
    _check_qrels_header(path, next(lines, None))
    for line, text in lines:
        query_id, doc_id, score = _parse_qrels_row(path, line, text)
        if query_id not in known_queries:
            raise DataError(path, line, "query-id", f"unknown query id {query_id!r} (not in {QUERIES_FILE})")
        if doc_id not in known_docs:
            raise DataError(path, line, "corpus-id", f"unknown document id {doc_id!r} (not in {CORPUS_FILE})")
        pair = (query_id, doc_id)
        if pair in first_seen:
            raise DataError(
                path,
                line,
                None,
                f"duplicate judgement for ({query_id!r}, {doc_id!r}) (first seen on line {first_seen[pair]})",
            )
        first_seen[pair] = line
        qrels.setdefault(query_id, {})[doc_id] = score
    return qrels


def _check_qrels_header(path: Path, first_line: tuple[int, str] | None) -> None:
    """Raise a DataError unless ``first_line`` is the ``query-id<TAB>corpus-id<TAB>score`` header."""
    expected = "\t".join(QRELS_HEADER)
    if first_line is None:
        raise DataError(path, None, None, f"empty file, expected the header {expected!r}")
    line, text = first_line
    if tuple(text.split("\t")) != QRELS_HEADER:
        raise DataError(path, line, None, f"expected the header {expected!r}, got {text!r}")


def _parse_qrels_row(path: Path, line: int, text: str) -> tuple[str, str, int]:
    """Split one qrels row into (query id, document id, integer score)."""
    cells = text.split("\t")
    if len(cells) != len(QRELS_HEADER):
        raise DataError(path, line, None, f"expected {len(QRELS_HEADER)} tab-separated columns, got {len(cells)}")
    query_id, doc_id, score_text = cells
    if not _INTEGER.fullmatch(score_text):
        raise DataError(path, line, "score", f"expected an integer, got {score_text!r}")
    return query_id, doc_id, int(score_text)


def _check_split_name(split: str) -> None:
    """Raise ValueError unless ``split`` is a plain file-name stem such as ``train``."""
    if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
        raise ValueError(f"invalid split name {split!r}: use letters, digits, '_', '-' or '.'")


def _qrels_paths(folder: Path, splits: Iterable[str] | None) -> dict[str, Path]:
    """Map each split to load onto its qrels file: the requested ones, or every ``qrels/*.tsv`` present."""
    qrels_dir = folder / QRELS_DIR
    if splits is None:
        found = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        if not found:
            raise DataError(qrels_dir, None, None, "no qrels/<split>.tsv files found")
        return {path.stem: path for path in found}
    paths: dict[str, Path] = {}
    for split in splits:
        _check_split_name(split)
        path = qrels_dir / f"{split}.tsv"
        if not path.is_file():
            raise DataError(path, None, None, f"file not found (requested split {split!r})")
        paths[split] = path
    return paths


def load_beir(folder: str | Path, splits: Iterable[str] | None = None) -> RetrievalSet:
    """Read and validate a retrieval set stored in the BEIR layout.

    Args:
        folder: Folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        splits: Splits to read (e.g. ``["train", "test"]``); ``None`` reads every ``qrels/*.tsv`` present.

    Returns:
        The retrieval set, with ``source`` set to ``folder``.

    Raises:
        DataError: if the folder or a file is missing (including a requested split), no qrels file exists, or any
            record is invalid; see :func:`load_corpus`, :func:`load_queries` and :func:`load_qrels`.
        ValueError: if a requested split name is not a plain name such as ``train``.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(folder, None, None, "folder not found")
    if not folder.is_dir():
        raise DataError(folder, None, None, "not a folder")
    qrels_paths = _qrels_paths(folder, splits)
    corpus = load_corpus(folder / CORPUS_FILE)
    queries = load_queries(folder / QUERIES_FILE)
    qrels = {split: load_qrels(path, queries, corpus) for split, path in qrels_paths.items()}
    return RetrievalSet(corpus=corpus, queries=queries, qrels=qrels, source=folder)


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------


def _write_atomically(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (each ending in a newline) to a temp file next to ``path``, then rename it onto ``path``."""
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="\n", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _jsonl_line(record: dict[str, str]) -> str:
    """Serialise one record as a JSONL line."""
    return json.dumps(record) + "\n"


def _qrels_lines(qrels: Qrels) -> Iterator[str]:
    """Yield the header and rows of a qrels TSV file."""
    yield "\t".join(QRELS_HEADER) + "\n"
    for query_id, judgements in qrels.items():
        for doc_id, score in judgements.items():
            yield f"{query_id}\t{doc_id}\t{int(score)}\n"


def write_beir(retrieval_set: RetrievalSet, folder: str | Path) -> Path:
    """Write a retrieval set in the BEIR layout, each file atomically.

    Documents are written with an empty ``title`` and their full text as ``text``, so :func:`load_beir` reads back
    the same set.

    Args:
        retrieval_set: The set to write.
        folder: Destination folder; created if missing, refused if it exists and is not empty.

    Returns:
        The destination folder.

    Raises:
        FileExistsError: if ``folder`` exists and is not an empty folder.
        ValueError: if a split name is not a plain name such as ``train``.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder} exists and is not an empty folder; refusing to overwrite it")
    for split in retrieval_set.qrels:
        _check_split_name(split)
    qrels_dir = folder / QRELS_DIR
    qrels_dir.mkdir(parents=True, exist_ok=True)
    corpus = retrieval_set.corpus.items()
    _write_atomically(folder / CORPUS_FILE, (_jsonl_line({"_id": i, "title": "", "text": t}) for i, t in corpus))
    queries = retrieval_set.queries.items()
    _write_atomically(folder / QUERIES_FILE, (_jsonl_line({"_id": i, "text": t}) for i, t in queries))
    for split, qrels in retrieval_set.qrels.items():
        _write_atomically(qrels_dir / f"{split}.tsv", _qrels_lines(qrels))
    return folder


# --------------------------------------------------------------------------------------------------------------------
# Hashing, for recording which data a run used
# --------------------------------------------------------------------------------------------------------------------


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


def dataset_files(folder: str | Path) -> list[Path]:
    """List the files a BEIR folder consists of: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/*.tsv``.

    Args:
        folder: A BEIR folder.

    Returns:
        The files present among those, sorted by path.

    Raises:
        DataError: if ``folder`` is not an existing folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, None, None, "folder not found")
    candidates = [folder / CORPUS_FILE, folder / QUERIES_FILE, *(folder / QRELS_DIR).glob("*.tsv")]
    return sorted(path for path in candidates if path.is_file())
