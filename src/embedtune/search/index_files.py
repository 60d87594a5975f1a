"""The files of a saved index folder: their names, the ``index.json`` record, and readers that check every file.

Every problem found while reading (a missing, unreadable or corrupt file, files that disagree with each other) is
one :class:`IndexFileError` whose message names the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.errors import DataError, reading, shorten
from embedtune.io import iter_jsonl_objects, json_type_name, parse_json, read_text
from embedtune.search.vectors import SIMILARITY_METRICS, import_faiss

INDEX_FILE, IDS_FILE, TEXTS_FILE, INFO_FILE = "index.faiss", "ids.json", "texts.jsonl", "index.json"
FORMAT_VERSION = 1
"""Version of the folder layout written; a folder with a higher version needs a newer embedtune."""
SAVED_KINDS = ("exact", "hnsw", "ivf")


class IndexFileError(DataError):
    """A saved index folder with a missing, unreadable or corrupt file, or files that disagree; names the file."""


@dataclass(frozen=True)
class IndexInfo:
    """What ``index.json`` records about a saved index.

    Attributes:
        model_reference: The model as the user named it (name, folder or run), or ``None`` if unknown.
        model_path: What it resolved to (an absolute folder, or a hub name), or ``None`` if unknown.
        dimension: Embedding dimension ``dim``.
        similarity: The model's similarity function: ``cosine`` (rows are unit length), ``dot`` or ``euclidean``.
        kind: ``exact``, ``hnsw`` or ``ivf``.
        count: Number of documents ``n``.
        prompts: ``{"query": str, "document": str}`` prepended when encoding (``""`` = none).
        parameters: The kind's settings (``m``, ``ef_construction``, ``ef_search``; or ``nlist``, ``nprobe``).
        fingerprint: Leading components of the model's fingerprint embedding (see :mod:`embedtune.search.encoding`).
        max_seq_length: The model's truncation length in tokens when the index was built, or ``None``.
        embedtune_version: Version of embedtune that built the index.
        created: ISO-8601 local time with UTC offset, to the second.
    """

    model_reference: str | None
    model_path: str | None
    dimension: int
    similarity: str
    kind: str
    count: int
    prompts: dict[str, str]
    parameters: dict[str, Any] = field(default_factory=dict)
    fingerprint: tuple[float, ...] = ()
    max_seq_length: int | None = None
    embedtune_version: str = ""
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the ``index.json`` object (keys as documented in the README's Search section)."""
        return {
            "format_version": FORMAT_VERSION,
            "model": {
                "reference": self.model_reference,
                "path": self.model_path,
                "max_seq_length": self.max_seq_length,
                "fingerprint": list(self.fingerprint),
            },
            "dimension": self.dimension,
            "similarity": self.similarity,
            "kind": self.kind,
            "parameters": self.parameters,
            "count": self.count,
            "prompts": self.prompts,
            "embedtune_version": self.embedtune_version,
            "created": self.created,
        }


def read_index_info(path: Path) -> IndexInfo:
    """Read and check ``index.json``.

    Raises:
        IndexFileError: naming the file (and the field), if it is missing, not JSON, off-schema or from a newer
            embedtune.
    """
    with _index_file(path):
        if not path.parent.is_dir():
            raise IndexFileError(path.parent, None, None, "index folder not found")
        data = _object(parse_json(read_text(path), path, None), path, None)
        version = _get(data, "format_version", int, path)
        if version > FORMAT_VERSION:
            raise IndexFileError(path, None, "format_version", f"format {version} needs a newer embedtune")
        model = _object(data.get("model"), path, "model")
        prompts = _object(data.get("prompts"), path, "prompts")
        fingerprint = _get(model, "fingerprint", list, path, "model.")
        if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in fingerprint):
            raise IndexFileError(path, None, "model.fingerprint", "expected an array of numbers")
        info = IndexInfo(
            model_reference=_get(model, "reference", (str, type(None)), path, "model."),
            model_path=_get(model, "path", (str, type(None)), path, "model."),
            dimension=_get(data, "dimension", int, path),
            similarity=_choice(data, "similarity", tuple(SIMILARITY_METRICS), path),
            kind=_choice(data, "kind", SAVED_KINDS, path),
            count=_get(data, "count", int, path),
            prompts={name: _get(prompts, name, str, path, "prompts.") for name in ("query", "document")},
            parameters=_object(data.get("parameters"), path, "parameters"),
            fingerprint=tuple(float(value) for value in fingerprint),
            max_seq_length=_get(model, "max_seq_length", (int, type(None)), path, "model."),
            embedtune_version=_get(data, "embedtune_version", str, path),
            created=_get(data, "created", str, path),
        )
        for name in ("dimension", "count"):
            if getattr(info, name) < 1:
                raise IndexFileError(path, None, name, f"expected a positive integer, got {getattr(info, name)}")
        return info


def read_ids(path: Path, count: int) -> list[str]:
    """Read ``ids.json``: a JSON array of ``count`` distinct non-empty strings, in row order.

    Raises:
        IndexFileError: naming the file, if it is missing, not such an array, or its length is not ``count``.
    """
    with _index_file(path):
        ids = parse_json(read_text(path), path, None)
        if not isinstance(ids, list) or not all(isinstance(doc_id, str) and doc_id for doc_id in ids):
            raise IndexFileError(path, None, None, "expected a JSON array of non-empty strings")
        if len(ids) != count:
            raise IndexFileError(path, None, None, f"holds {len(ids)} ids but {INFO_FILE} records {count} documents")
        if len(set(ids)) != len(ids):
            raise IndexFileError(path, None, None, "holds duplicate ids")
        return ids


def read_texts(path: Path, ids: list[str]) -> list[str]:
    """Read ``texts.jsonl``: one ``{"id", "text"}`` object per row, ids in the order of ``ids``.

    Raises:
        IndexFileError: naming file, line and field, if it is missing, malformed, or disagrees with ``ids``.
    """
    with _index_file(path):
        texts: list[str] = []
        for line, record in iter_jsonl_objects(path):
            row = len(texts)
            if row >= len(ids):
                raise IndexFileError(path, line, None, f"more rows than the {len(ids)} ids of {IDS_FILE}")
            if record.get("id") != ids[row]:
                expected = f"expected {shorten(ids[row])} (row {row} of {IDS_FILE})"
                raise IndexFileError(path, line, "id", f"{expected}, got {shorten(record.get('id'))}")
            text = record.get("text")
            if not isinstance(text, str):
                raise IndexFileError(path, line, "text", f"expected a string, got {json_type_name(text)}")
            texts.append(text)
        if len(texts) != len(ids):
            raise IndexFileError(path, None, None, f"holds {len(texts)} rows but {IDS_FILE} holds {len(ids)} ids")
        return texts


def read_vectors(path: Path, info: IndexInfo) -> Any:
    """Read ``index.faiss`` and check it holds ``info.count`` vectors of ``info.dimension`` with the right metric.

    Raises:
        IndexFileError: naming the file, if it is missing, not a faiss index, or disagrees with ``index.json``.
    """
    faiss = import_faiss()
    with _index_file(path):
        if not path.is_file():
            raise IndexFileError(path, None, None, "file not found")
        try:
            vectors = faiss.read_index(str(path))
        except RuntimeError as error:
            reason = re.sub(r"^Error in .*? at \S+: ", "", " ".join(str(error).split()))
            raise IndexFileError(path, None, None, f"not a readable faiss index ({shorten(reason, 160)})") from None
        metric = faiss.METRIC_INNER_PRODUCT if SIMILARITY_METRICS[info.similarity] == "inner_product" else None
        metric = faiss.METRIC_L2 if metric is None else metric
        problems = [
            f"{vectors.ntotal} vectors, {INFO_FILE} records {info.count}" if vectors.ntotal != info.count else "",
            f"dimension {vectors.d}, {INFO_FILE} records {info.dimension}" if vectors.d != info.dimension else "",
            f"metric {vectors.metric_type}, similarity {info.similarity} needs {metric}"
            if vectors.metric_type != metric
            else "",
        ]
        if any(problems):
            message = "disagrees with the index record: " + "; ".join(filter(None, problems))
            raise IndexFileError(path, None, None, message)
        return vectors


@contextmanager
def _index_file(path: Path) -> Iterator[None]:
    """Turn any error while reading ``path`` into an IndexFileError naming it."""
    try:
        with reading(path):
            yield
    except IndexFileError:
        raise
    except DataError as error:
        raise IndexFileError(error.path, error.line, error.field, error.message) from error.__cause__


def _object(value: Any, path: Path, name: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise IndexFileError(path, None, name, f"expected a JSON object, got {json_type_name(value)}")
    return value


def _get(record: dict[str, Any], name: str, kinds: type | tuple[type, ...], path: Path, prefix: str = "") -> Any:
    if name not in record:
        raise IndexFileError(path, None, prefix + name, "missing required field")
    value = record[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds in (int, (int, type(None)))):
        raise IndexFileError(path, None, prefix + name, f"unexpected {json_type_name(value)} {shorten(value)}")
    return value


def _choice(record: dict[str, Any], name: str, choices: tuple[str, ...], path: Path) -> str:
    value = _get(record, name, str, path)
    if value not in choices:
        raise IndexFileError(path, None, name, f"expected one of {', '.join(choices)}, got {shorten(value)}")
    return value
