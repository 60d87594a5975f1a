"""Encode texts for a vector index, and tell whether a model is the one a saved index was built with.

A saved index records its model's similarity, dimension, prompts and a *fingerprint*: the first
:data:`FINGERPRINT_DIMS` components of the unit-length embedding of :data:`FINGERPRINT_TEXT`, encoded without any
prompt. Two models whose fingerprints differ (cosine below :data:`FINGERPRINT_MIN_COSINE`) embed differently, whatever
their names or paths say, so searching one's index with the other would return meaningless neighbours.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from embedtune.models.prompts import DOCUMENT_PROMPT_NAMES, QUERY_PROMPT, document_prompt, query_prompt
from embedtune.search.retrieve import encode_documents, encode_queries
from embedtune.search.vectors import as_float32_matrix

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache
    from embedtune.search.index import IndexInfo

FINGERPRINT_TEXT = "embedtune index fingerprint: the quick brown fox jumps over the lazy dog by the river bank"
FINGERPRINT_DIMS = 32
"""Leading components of the fingerprint embedding kept in ``index.json``."""
FINGERPRINT_MIN_COSINE = 0.999
"""Fingerprints at least this close (cosine) count as the same model; float noise across devices stays far above."""


class ModelMismatchError(ValueError):
    """A model that differs from the one a saved index was built with (dimension, similarity, weights or prompts)."""


def model_similarity(model: SentenceTransformer) -> str:
    """Return the model's similarity function name (``cosine``, ``dot``, ``euclidean``...); ``cosine`` if unset."""
    name = getattr(model, "similarity_fn_name", None) or "cosine"
    return str(getattr(name, "value", name))


def model_prompts(model: SentenceTransformer) -> dict[str, str]:
    """Return what ``encode_query``/``encode_document`` prepend: ``{"query": str, "document": str}``, ``""`` = none."""
    return {"query": query_prompt(model), "document": document_prompt(model)}


def apply_prompts(model: SentenceTransformer, prompts: dict[str, str]) -> None:
    """Make ``encode_query``/``encode_document`` prepend exactly ``prompts["query"]``/``prompts["document"]``."""
    for name in DOCUMENT_PROMPT_NAMES:
        model.prompts.pop(name, None)
    model.prompts[QUERY_PROMPT] = prompts.get("query", "")
    model.prompts[DOCUMENT_PROMPT_NAMES[0]] = prompts.get("document", "")


def encode_texts(
    model: SentenceTransformer,
    texts: list[str],
    role: Literal["query", "document"],
    batch_size: int | None = None,
    progress: bool | None = None,
    devices: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Encode texts as an index stores or searches them.

    Queries go through ``model.encode_query`` and documents through ``model.encode_document``, so the model's saved
    prompts are prepended. For a ``cosine`` model every row is scaled to unit length, so that the inner product of a
    query and a document row is their cosine similarity.

    Args:
        model: The embedding model.
        texts: ``n`` texts.
        role: ``"query"`` or ``"document"``.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        progress: Show a progress bar; ``None`` shows one when stderr is a terminal.
        devices: Encode in one process per device (:func:`encoding_devices`); ``None`` encodes in this process.
        cache: Reuse and store embeddings on disk (see :func:`~embedtune.search.retrieve.encode_documents`; a model
            ending in a head caches its encoder's); ``None`` encodes everything.
        precision: Autocast precision of encoding (:func:`~embedtune.models.precision.inference_dtype`).

    Returns:
        ``(n, dim)`` float32 matrix (``(0, dim)`` for no texts).

    Raises:
        ValueError: if ``batch_size < 1`` or ``role`` is neither ``"query"`` nor ``"document"``.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if role not in ("query", "document"):
        raise ValueError(f"role must be 'query' or 'document', got {role!r}")
    if not texts:
        return np.empty((0, model.get_embedding_dimension() or 0), np.float32)
    encode = encode_queries if role == "query" else encode_documents
    show = sys.stderr.isatty() if progress is None else progress
    embeddings = encode(model, list(texts), batch_size, show, cache, devices, precision)  # (n, dim) float32 CPU tensor
    if model_similarity(model) == "cosine":
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    return as_float32_matrix(embeddings.numpy())


def encoding_devices(processes: int | None = None) -> list[str] | None:
    """Choose the devices of multi-process encoding: one entry per process, or ``None`` for this process alone.

    Several processes go through sentence-transformers' multi-process pool (each loads its own copy of the model);
    they pay off for large corpora on several GPUs or many CPU cores, not for a few thousand texts.

    Args:
        processes: ``None``: one process per visible GPU when there are two or more, else this process. ``1``: this
            process. ``N > 1``: N processes, spread over the visible GPUs in turn, or N CPU processes without a GPU.

    Returns:
        Device names such as ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``, or ``None``.

    Raises:
        ValueError: if ``processes < 1``.
    """
    if processes is not None and processes < 1:
        raise ValueError(f"the number of encoding processes must be at least 1, got {processes}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if processes is None:
        processes = gpus if gpus > 1 else 1
    if processes == 1:
        return None
    return [f"cuda:{index % gpus}" if gpus else "cpu" for index in range(processes)]


def output_fingerprint(model: SentenceTransformer) -> tuple[int, list[float]]:
    """Encode a fixed probe text: tells an index's model apart by what it outputs, not by its bytes.

    Not the embedding cache's key (:func:`embedtune.cache.fingerprint.model_fingerprint`, a hash of the weights,
    tokenizer and encoding settings): a saved index must also accept the same model re-saved or re-loaded elsewhere.

    The probe is :data:`FINGERPRINT_TEXT`, encoded without any prompt.

    Returns:
        ``(dim, components)``: the embedding dimension and the first :data:`FINGERPRINT_DIMS` components of the
        unit-length embedding, rounded to 6 decimals.
    """
    vector = model.encode([FINGERPRINT_TEXT], prompt="", convert_to_numpy=True, show_progress_bar=False)[0]
    vector = np.asarray(vector, dtype=np.float64)
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return len(vector), [round(float(value), 6) for value in vector[:FINGERPRINT_DIMS]]


def check_model_matches(model: SentenceTransformer, info: IndexInfo, index_dir: str | Path, label: str) -> None:
    """Check that ``model`` is the model a saved index was built with, with the same prompts.

    Args:
        model: The model meant to encode queries for the index.
        info: The index's ``index.json`` record.
        index_dir: The index folder (named in the message).
        label: How the user named the model (named in the message).

    Raises:
        ModelMismatchError: naming both models, if the dimension, the similarity function, the fingerprint (the
            weights) or the query/document prompts differ.
    """
    built_with = f"index {index_dir} was built with model {info.model_reference or info.model_path!r}"
    dim, fingerprint = output_fingerprint(model)
    if dim != info.dimension:
        raise ModelMismatchError(
            f"{built_with} ({info.dimension}-dimensional embeddings) but model {label!r} gives {dim}-dimensional "
            "embeddings; rebuild the index with this model or search with the index's own model"
        )
    similarity = model_similarity(model)
    if similarity != info.similarity:
        raise ModelMismatchError(
            f"{built_with} (similarity {info.similarity}) but model {label!r} uses similarity {similarity}"
        )
    closeness = _cosine(fingerprint, list(info.fingerprint))
    if closeness < FINGERPRINT_MIN_COSINE:
        raise ModelMismatchError(
            f"{built_with} ({info.model_path}) but model {label!r} embeds text differently (fingerprint cosine "
            f"{closeness:.4f} < {FINGERPRINT_MIN_COSINE}); rebuild the index with this model or search with the "
            "index's own model"
        )
    prompts = model_prompts(model)
    if prompts != info.prompts:
        raise ModelMismatchError(
            f"{built_with} with prompts {info.prompts} but model {label!r} has prompts {prompts}; "
            "set the same prompts (embedtune.models.prompts.set_prompts) or load the index without a model"
        )


def _cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return 0.0
    left, right = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norm = float(np.linalg.norm(left) * np.linalg.norm(right))
    return float(left @ right / norm) if norm > 0 else 0.0
