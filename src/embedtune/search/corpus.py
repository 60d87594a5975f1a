"""Documents to index: an in-memory corpus, or a file (BEIR ``corpus.jsonl``, ``{"id","text"}`` JSONL, BEIR folder).

Files are read and validated completely before any model is loaded; every problem is a
:class:`~embedtune.errors.DataError` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from embedtune.data.beir import CORPUS_FILE, load_corpus, record_id, required_string
from embedtune.errors import DataError, reading, shorten
from embedtune.io import iter_jsonl_objects

Corpus = Mapping[str, str] | Sequence[str]
"""Document id -> text, or a list of texts (ids are then the positions ``"0"``, ``"1"``, ...)."""


def corpus_columns(corpus: Corpus) -> tuple[list[str], list[str]]:
    """Split an in-memory corpus into parallel id and text lists.

    Args:
        corpus: Document id -> text, or a list of texts whose ids become ``"0"``, ``"1"``, ...

    Returns:
        ``(ids, texts)``, ``n`` each, in the corpus's order.

    Raises:
        ValueError: if the corpus is empty, an id is not a non-empty string, or a text is not a string.
        TypeError: if ``corpus`` is a single string rather than a collection of texts.
    """
    if isinstance(corpus, (str, bytes)):
        raise TypeError("corpus must be a dict of id -> text or a list of texts, not a single string")
    if isinstance(corpus, Mapping):
        ids, texts = list(corpus.keys()), list(corpus.values())
    else:
        texts = list(corpus)
        ids = [str(position) for position in range(len(texts))]
    if not ids:
        raise ValueError("the corpus is empty: nothing to index")
    for doc_id, text in zip(ids, texts, strict=True):
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise ValueError(f"document ids must be non-empty strings, got {shorten(doc_id)}")
        if not isinstance(text, str):
            raise ValueError(f"document {shorten(doc_id)}: text must be a string, got {type(text).__name__}")
    return ids, texts


def load_search_corpus(path: str | Path) -> dict[str, str]:
    """Read the documents to index from a file or a BEIR folder.

    Accepted: a BEIR folder (its ``corpus.jsonl`` is read); a BEIR ``corpus.jsonl`` (``_id``, ``text``, optional
    ``title``; the text indexed is ``"title text"``); or a JSONL file of ``{"id": ..., "text": ...}`` objects. The
    format of a file is chosen by its first record: ``_id`` means BEIR, ``id`` the plain form.

    Args:
        path: The corpus file or BEIR folder.

    Returns:
        Document id -> text, in file order.

    Raises:
        DataError: naming file, line and field, on a missing file or folder, a folder without ``corpus.jsonl``,
            malformed JSON, a record without an id or text, a non-string or empty id, an empty text, a duplicate id,
            or a file with no documents.
    """
    path = Path(path).expanduser()
    with reading(path):
        if not path.exists():
            raise DataError(path, None, None, "file or folder not found")
        if path.is_dir():
            if not (path / CORPUS_FILE).is_file():
                raise DataError(path, None, None, f"folder has no {CORPUS_FILE} (expected a BEIR folder)")
            path = path / CORPUS_FILE
        first = next(iter_jsonl_objects(path), None)
    if first is None:
        raise DataError(path, None, None, "no documents")
    line, record = first
    if "_id" in record:
        return load_corpus(path)
    if "id" not in record:
        raise DataError(path, line, "id", 'missing required field (expected {"id", "text"} or BEIR {"_id", "text"})')
    return _load_id_text_jsonl(path)


def _load_id_text_jsonl(path: Path) -> dict[str, str]:
    """Read a JSONL file of ``{"id": str, "text": str}`` records (other fields are ignored)."""
    with reading(path):
        corpus: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        for line, record in iter_jsonl_objects(path):
            doc_id = record_id(record, path, line, first_seen, field="id")
            text = required_string(record, "text", path, line)
            if not text.strip():
                raise DataError(path, line, "text", "empty text")
            corpus[doc_id] = text
        if not corpus:
            raise DataError(path, None, None, "no documents")
        return corpus
