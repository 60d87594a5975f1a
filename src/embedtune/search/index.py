"""Build, save and load search indexes: a corpus's embeddings in faiss, with the ids, texts and the model's record.

A saved index is a folder holding ``index.faiss`` (the faiss index, row ``i`` = document ``i``), ``ids.json`` (the
document ids in row order), ``texts.jsonl`` (one ``{"id", "text"}`` per row) and ``index.json`` (see
:class:`IndexInfo`). It is written into a staging folder next to the destination and renamed into place at the end,
so a crash never leaves a half-written index under the destination's name; an existing destination is never
overwritten.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sentence_transformers import SentenceTransformer

from embedtune.io import jsonl_line, write_json_atomic, write_lines_atomic
from embedtune.model_paths import model_source, resolve_model_path
from embedtune.models.loading import load_model
from embedtune.search import index_files
from embedtune.search.corpus import Corpus, corpus_columns, load_search_corpus
from embedtune.search.encoding import encode_texts, model_prompts, model_similarity, output_fingerprint
from embedtune.search.index_files import IDS_FILE, INDEX_FILE, INFO_FILE, TEXTS_FILE, IndexFileError, IndexInfo
from embedtune.search.vectors import EXACT_MAX_DOCS, create_vector_index, import_faiss, search_vectors
from embedtune.versions import EMBEDTUNE_VERSION

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache

logger = logging.getLogger(__name__)

__all__ = ["EXACT_MAX_DOCS", "IndexFileError", "IndexInfo", "SearchIndex", "build_index", "load_index", "save_index"]


@dataclass
class SearchIndex:
    """A corpus's embeddings in a faiss index, with the ids and texts of its rows.

    Attributes:
        vectors: The faiss index; row ``i`` holds the embedding of ``ids[i]``.
        ids: ``n`` document ids, row order.
        texts: ``n`` document texts, row order.
        info: What was recorded about the model and the index.
    """

    vectors: Any
    ids: list[str]
    texts: list[str]
    info: IndexInfo

    def search(self, query_embeddings: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query; see :func:`embedtune.search.vectors.search_vectors`.

        Args:
            query_embeddings: ``(m, dim)`` float32, encoded like the documents (unit length for cosine).
            top_k: Results per query, ``>= 1``.

        Returns:
            ``(scores, positions)``, both ``(m, min(top_k, n))``; position ``-1`` marks a missing result.
        """
        return search_vectors(self.vectors, query_embeddings, top_k)


def create_search_index(
    model: SentenceTransformer,
    corpus: Corpus,
    kind: str = "auto",
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
    model_reference: str | None = None,
    model_path: str | None = None,
    devices: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    precision: str = "fp32",
    **index_settings: Any,
) -> SearchIndex:
    """Encode a corpus with the model's document prompt and index it in memory.

    Args:
        model: The embedding model.
        corpus: Document id -> text, or a list of texts (ids ``"0"``, ``"1"``, ...).
        kind: ``auto``, ``exact``, ``hnsw`` or ``ivf`` (``auto``: exact up to :data:`EXACT_MAX_DOCS` documents).
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        progress: Show a progress bar; ``None`` shows one when stderr is a terminal.
        model_reference: How the model is named in ``index.json``; ``None`` guesses from the loaded model.
        model_path: What that name resolved to; ``None`` guesses from the loaded model.
        devices: Encode in one process per device (:func:`~embedtune.search.encoding.encoding_devices`); ``None``
            encodes in this process.
        cache: Embedding cache the documents are encoded through (a model ending in a head caches its encoder's
            embeddings), or ``None``.
        precision: Autocast precision of encoding (:func:`~embedtune.models.precision.inference_dtype`).
        **index_settings: Passed to :func:`~embedtune.search.vectors.create_vector_index` (``hnsw_m``,
            ``ef_search``, ``nlist``, ``nprobe``...).

    Returns:
        The in-memory index.

    Raises:
        ValueError: on an empty or invalid corpus, an unknown kind, or a model whose similarity is not supported.
    """
    ids, texts = corpus_columns(corpus)
    similarity = model_similarity(model)
    logger.info("encoding %d documents", len(texts))
    embeddings = encode_texts(model, texts, "document", batch_size, progress, devices, cache, precision)  # (n, dim)
    vectors, parameters = create_vector_index(embeddings, kind, similarity, **index_settings)
    _, fingerprint = output_fingerprint(model)
    source = model_source(model)

    info = IndexInfo(
        model_reference=model_reference if model_reference is not None else source,
        model_path=model_path if model_path is not None else source,
        dimension=int(embeddings.shape[1]),
        similarity=similarity,
        kind=parameters.pop("kind"),
        count=len(ids),
        prompts=model_prompts(model),
        parameters=parameters,
        fingerprint=tuple(fingerprint),
        max_seq_length=getattr(model, "max_seq_length", None),
        embedtune_version=EMBEDTUNE_VERSION,
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    return SearchIndex(vectors, ids, texts, info)


def build_index(
    model: SentenceTransformer | str,
    corpus: Corpus | str | Path,
    out_dir: str | Path,
    kind: str = "auto",
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
    model_reference: str | None = None,
    model_path: str | None = None,
    devices: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    precision: str = "fp32",
    **index_settings: Any,
) -> SearchIndex:
    """Encode a corpus, index it and save the index folder ``out_dir``.

    Args:
        model: A loaded model, or a model folder/name loaded with :func:`~embedtune.models.loading.load_model`.
        corpus: Document id -> text, a list of texts, or a corpus file/BEIR folder (see
            :func:`~embedtune.search.corpus.load_search_corpus`), read and validated before the model loads.
        out_dir: The index folder to create; must not exist.
        kind: ``auto``, ``exact``, ``hnsw`` or ``ivf`` (``auto``: exact up to :data:`EXACT_MAX_DOCS` documents).
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        progress: Show a progress bar; ``None`` shows one when stderr is a terminal.
        model_reference: The model's name recorded in ``index.json`` (e.g. a run name); defaults to ``model`` when
            it is a string.
        model_path: What the model's name resolved to, recorded in ``index.json`` and loaded by
            :meth:`~embedtune.search.retriever.Retriever.load`; computed when ``model`` is a string, else guessed from
            the loaded model.
        devices: One encoding process per device (see :func:`create_search_index`); ``None``: this process.
        cache: Embedding cache the documents are encoded through, or ``None``.
        precision: Autocast precision of encoding (see :func:`create_search_index`).
        **index_settings: Passed to :func:`~embedtune.search.vectors.create_vector_index`.

    Returns:
        The index, as saved.

    Raises:
        FileExistsError: if ``out_dir`` exists (checked before anything is encoded).
        DataError: on a bad corpus file.
        ModelNotFoundError: if ``model`` names no available model.
        ValueError: on an empty or invalid corpus, an unknown kind or an unsupported similarity.
    """
    out = Path(out_dir).expanduser()
    ensure_absent(out)
    if isinstance(corpus, (str, Path)):
        corpus = load_search_corpus(corpus)
    corpus_columns(corpus)  # validate before loading a model
    if isinstance(model, str):
        model_reference = model if model_reference is None else model_reference
        resolved = resolve_model_path(model)
        model_path = str(Path(resolved).resolve()) if Path(resolved).is_dir() else resolved
        model = load_model(model)
    index = create_search_index(
        model,
        corpus,
        kind,
        batch_size=batch_size,
        progress=progress,
        model_reference=model_reference,
        model_path=model_path,
        devices=devices,
        cache=cache,
        precision=precision,
        **index_settings,
    )
    save_index(index, out)
    return index


def save_index(index: SearchIndex, out_dir: str | Path) -> Path:
    """Write an index folder atomically: into a staging folder beside ``out_dir``, then renamed to it.

    Args:
        index: The index to save.
        out_dir: The folder to create (its parents are created); must not exist.

    Returns:
        The index folder.

    Raises:
        FileExistsError: if ``out_dir`` exists.
        OSError: if a file cannot be written (nothing is left behind then).
    """
    faiss = import_faiss()
    out = Path(out_dir).expanduser()
    ensure_absent(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{secrets.token_hex(4)}.staging"
    staging.mkdir()
    try:
        try:
            faiss.write_index(index.vectors, str(staging / INDEX_FILE))
        except RuntimeError as error:  # faiss reports I/O failures (disk full...) as RuntimeError
            raise OSError(errno.EIO, f"cannot write the faiss index: {error}", str(staging / INDEX_FILE)) from None
        _fsync(staging / INDEX_FILE)
        write_json_atomic(staging / IDS_FILE, index.ids)
        rows = zip(index.ids, index.texts, strict=True)
        write_lines_atomic(staging / TEXTS_FILE, (jsonl_line({"id": i, "text": t}) for i, t in rows))
        write_lines_atomic(staging / INFO_FILE, [_info_text(index.info)])
        _fsync(staging)
        ensure_absent(out)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync(out.parent)
    logger.info("saved the index (%s, %d documents) to %s", index.info.kind, index.info.count, out)
    return out


def load_index(index_dir: str | Path) -> SearchIndex:
    """Read a saved index folder and check its files agree with each other.

    Args:
        index_dir: A folder written by :func:`build_index` or :func:`save_index`.

    Returns:
        The index (its faiss index in memory).

    Raises:
        IndexFileError: naming the file, when the folder or a file is missing, unreadable or corrupt, or the files
            disagree (counts, ids, dimension, metric).
    """
    folder = Path(index_dir).expanduser()
    info = index_files.read_index_info(folder / INFO_FILE)
    ids = index_files.read_ids(folder / IDS_FILE, info.count)
    texts = index_files.read_texts(folder / TEXTS_FILE, ids)
    vectors = index_files.read_vectors(folder / INDEX_FILE, info)
    return SearchIndex(vectors, ids, texts, info)


def ensure_absent(out_dir: str | Path) -> None:
    """Check that an index folder can be created: nothing (file, folder or link) exists at ``out_dir``.

    Raises:
        FileExistsError: naming ``out_dir``, if it exists.
    """
    if os.path.lexists(out_dir):
        raise FileExistsError(
            errno.EEXIST, "already exists; refusing to overwrite it (choose a new index folder)", str(out_dir)
        )


def _info_text(info: IndexInfo) -> str:
    """``index.json`` as indented JSON, the fingerprint kept on one line."""
    record = info.to_json()
    fingerprint = record["model"]["fingerprint"]
    placeholder = f"@fingerprint-{secrets.token_hex(8)}@"
    record["model"]["fingerprint"] = placeholder
    text = json.dumps(record, indent=2, ensure_ascii=False)
    return text.replace(json.dumps(placeholder), json.dumps(fingerprint), 1) + "\n"


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (best effort: some file systems refuse folders)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
