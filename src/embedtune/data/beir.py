"""Read, validate and write retrieval sets in the BEIR folder layout.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and one
``qrels/<split>.tsv`` per split (header ``query-id<TAB>corpus-id<TAB>score``). Every problem found while reading is
raised as a :class:`~embedtune.errors.DataError` that names the file, the 1-based line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import Any

from embedtune.data.types import Qrels, RetrievalSet, TrainingExample
from embedtune.errors import DataError, check_unicode, reading, shorten
from embedtune.io import iter_jsonl_objects, iter_text_lines, json_type_name, jsonl_line, write_lines_atomic

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")
MIN_SCORE = -(2**31)
MAX_SCORE = 2**31 - 1
"""Qrels scores must fit trec_eval's C ``int`` (32 bits)."""

_INTEGER = re.compile(r"-?[0-9]+")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def required_string(record: dict[str, Any], field: str, path: Path, line: int) -> str:
    """Return ``record[field]``, which must be present and a string (possibly empty) of valid Unicode.

    Raises:
        DataError: naming file, line and field when the field is missing, not a string, or holds a lone surrogate.
    """
    if field not in record:
        raise DataError(path, line, field, "missing required field")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string, got {json_type_name(value)}")
    return check_unicode(value, path, line, field)


def record_id(record: dict[str, Any], path: Path, line: int, first_seen: dict[str, int], field: str = "_id") -> str:
    """Return the record's id (``record[field]``), a non-empty string not seen before in the file.

    Args:
        record: One decoded JSONL record.
        path: Its file (named in errors).
        line: Its line number.
        first_seen: Id -> line of the ids read so far; updated.
        field: The id field, ``"_id"`` in BEIR files.

    Raises:
        DataError: naming file, line and field for a missing, non-string, empty or duplicate id.
    """
    record_id = required_string(record, field, path, line)
    if not record_id.strip():
        raise DataError(path, line, field, "empty id")
    if record_id in first_seen:
        message = f"duplicate id {shorten(record_id)} (first seen on line {first_seen[record_id]})"
        raise DataError(path, line, field, message)
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
            non-string ``title``, a lone surrogate in any of them (invalid Unicode), a document whose text and title
            are both empty, a duplicate ``_id``, or a file with no documents.
    """
    with reading(path):
        corpus: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        for line, record in iter_jsonl_objects(path):
            doc_id = record_id(record, path, line, first_seen)
            text = required_string(record, "text", path, line)
            title = record.get("title", "")
            if not isinstance(title, str):
                raise DataError(path, line, "title", f"expected a string, got {json_type_name(title)}")
            check_unicode(title, path, line, "title")
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
        DataError: on a missing file, malformed JSON, a non-object line, a missing or non-string ``_id``/``text``, a
            lone surrogate in either (invalid Unicode), an empty or whitespace-only ``text``, a duplicate ``_id``, or a
            file with no queries.
    """
    with reading(path):
        queries: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        for line, record in iter_jsonl_objects(path):
            query_id = record_id(record, path, line, first_seen)
            text = required_string(record, "text", path, line)
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
    with reading(path):
        qrels: Qrels = {}
        first_seen: dict[tuple[str, str], int] = {}
        lines = iter_text_lines(path)
        _check_qrels_header(path, next(lines, None))
        for line, text in lines:
            query_id, doc_id, score = _parse_qrels_row(path, line, text)
            _check_judgement(path, line, (query_id, doc_id), known_queries, known_docs, first_seen)
            qrels.setdefault(query_id, {})[doc_id] = score
        return qrels


def _check_judgement(
    path: Path,
    line: int,
    pair: tuple[str, str],
    known_queries: Container[str],
    known_docs: Container[str],
    first_seen: dict[tuple[str, str], int],
) -> None:
    """Check that a (query id, document id) pair names known records and was not judged before in the file."""
    query_id, doc_id = pair
    if query_id not in known_queries:
        raise DataError(path, line, "query-id", f"unknown query id {shorten(query_id)} (not in {QUERIES_FILE})")
    if doc_id not in known_docs:
        raise DataError(path, line, "corpus-id", f"unknown document id {shorten(doc_id)} (not in {CORPUS_FILE})")
    if pair in first_seen:
        message = f"duplicate judgement for ({shorten(query_id)}, {shorten(doc_id)})"
        raise DataError(path, line, None, f"{message} (first seen on line {first_seen[pair]})")
    first_seen[pair] = line


def _check_qrels_header(path: Path, first_line: tuple[int, str] | None) -> None:
    """Raise a DataError unless ``first_line`` is the ``query-id<TAB>corpus-id<TAB>score`` header."""
    expected = "\t".join(QRELS_HEADER)
    if first_line is None:
        raise DataError(path, None, None, f"empty file, expected the header {expected!r}")
    line, text = first_line
    if tuple(text.split("\t")) != QRELS_HEADER:
        raise DataError(path, line, None, f"expected the header {expected!r}, got {shorten(text)}")


def _parse_qrels_row(path: Path, line: int, text: str) -> tuple[str, str, int]:
    """Split one qrels row into (query id, document id, integer score)."""
    cells = text.split("\t")
    if len(cells) != len(QRELS_HEADER):
        raise DataError(path, line, None, f"expected {len(QRELS_HEADER)} tab-separated columns, got {len(cells)}")
    query_id, doc_id, score_text = cells
    return query_id, doc_id, _parse_score(score_text, path, line)


def _parse_score(text: str, path: Path, line: int) -> int:
    """Return a qrels score: an integer literal whose value fits trec_eval's 32-bit C ``int``."""
    if not _INTEGER.fullmatch(text):
        raise DataError(path, line, "score", f"expected an integer, got {shorten(text)}")
    significant_digits = text.removeprefix("-").lstrip("0")
    # Checked before int(): Python refuses literals of more than 4300 digits with a plain ValueError.
    if len(significant_digits) > len(str(MAX_SCORE)) or not MIN_SCORE <= int(text) <= MAX_SCORE:
        message = f"score {shorten(text)} does not fit a 32-bit int ({MIN_SCORE} to {MAX_SCORE}) as trec_eval needs"
        raise DataError(path, line, "score", message)
    return int(text)


def check_split_name(split: str) -> None:
    """Check that ``split`` is a plain file-name stem such as ``train``, usable as ``qrels/<split>.tsv``.

    Args:
        split: The split name.

    Raises:
        ValueError: if it is not a string of letters, digits, ``_``, ``-`` or ``.`` (not starting with ``-``/``.``).
    """
    if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
        raise ValueError(f"invalid split name {shorten(split)}: use letters, digits, '_', '-' or '.'")


def _qrels_paths(folder: Path, splits: Iterable[str] | None) -> dict[str, Path]:
    """Map each split to load onto its qrels file: the requested ones (names already checked) or every one present."""
    qrels_dir = folder / QRELS_DIR
    if splits is None:
        found = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        if not found:
            raise DataError(qrels_dir, None, None, "no qrels/<split>.tsv files found")
        return {path.stem: path for path in found}
    paths: dict[str, Path] = {}
    for split in splits:
        path = qrels_dir / f"{split}.tsv"
        if not path.is_file():
            raise DataError(path, None, None, f"file not found (requested split {shorten(split)})")
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
    requested = None if splits is None else list(splits)
    for split in requested or ():
        check_split_name(split)
    with reading(folder):
        if not folder.exists():
            raise DataError(folder, None, None, "folder not found")
        if not folder.is_dir():
            raise DataError(folder, None, None, "not a folder")
    with reading(folder / QRELS_DIR):  # an unreadable qrels/ is named as such, not as the dataset folder
        qrels_paths = _qrels_paths(folder, requested)
    corpus = load_corpus(folder / CORPUS_FILE)
    queries = load_queries(folder / QUERIES_FILE)
    qrels = {split: load_qrels(path, queries, corpus) for split, path in qrels_paths.items()}
    return RetrievalSet(corpus=corpus, queries=queries, qrels=qrels, source=folder)


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------


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
        check_split_name(split)
    qrels_dir = folder / QRELS_DIR
    qrels_dir.mkdir(parents=True, exist_ok=True)
    corpus = retrieval_set.corpus.items()
    write_lines_atomic(folder / CORPUS_FILE, (jsonl_line({"_id": i, "title": "", "text": t}) for i, t in corpus))
    queries = retrieval_set.queries.items()
    write_lines_atomic(folder / QUERIES_FILE, (jsonl_line({"_id": i, "text": t}) for i, t in queries))
    for split, qrels in retrieval_set.qrels.items():
        write_lines_atomic(qrels_dir / f"{split}.tsv", _qrels_lines(qrels))
    return folder


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
    with reading(folder):
        if not folder.is_dir():
            raise DataError(folder, None, None, "folder not found")
        candidates = [folder / CORPUS_FILE, folder / QUERIES_FILE, *(folder / QRELS_DIR).glob("*.tsv")]
        return sorted(path for path in candidates if path.is_file())


def examples_from_qrels(retrieval_set: RetrievalSet, split: str) -> list[TrainingExample]:
    """One example per judged query of ``split``: its relevant documents (relevance > 0) as positives.

    Args:
        retrieval_set: Corpus, queries and qrels.
        split: The qrels split to turn into examples, normally ``"train"``.

    Returns:
        The examples in qrels order; queries without a relevant document give none.

    Raises:
        KeyError: if ``split`` is not in ``retrieval_set.qrels``.
    """
    examples = []
    for query_id, judgements in retrieval_set.qrels[split].items():
        doc_ids = tuple(doc_id for doc_id, relevance in judgements.items() if relevance > 0)
        if doc_ids:
            positives = tuple(retrieval_set.corpus[doc_id] for doc_id in doc_ids)
            examples.append(TrainingExample(query=retrieval_set.queries[query_id], pos=positives, pos_ids=doc_ids))
    return examples
