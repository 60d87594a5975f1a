"""Semantic search with an embedding model: index a corpus (in memory or from a saved index) and ask it questions.

Example: ``Retriever("all-MiniLM-L6-v2").index({"d1": "The mango is sweet."}).search("sweet fruit", top_k=1)``
gives ``[SearchHit(id='d1', score=..., text='The mango is sweet.')]``; ``save(folder)`` writes the index to disk and
``Retriever.load(folder)`` opens it again with the model it was built with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

from embedtune.model_paths import ModelNotFoundError, model_source, resolve_model_path
from embedtune.models.loading import load_model
from embedtune.search.corpus import Corpus
from embedtune.search.encoding import apply_prompts, check_model_matches, encode_texts, model_similarity
from embedtune.search.index import SearchIndex, create_search_index, load_index, save_index


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document.

    Attributes:
        id: The document id.
        score: Similarity to the query under the model's similarity function (cosine for most models; minus the
            Euclidean distance for ``euclidean`` models); higher is more similar.
        text: The document text, as indexed (without the model's document prompt).
    """

    id: str
    score: float
    text: str


class Retriever:
    """Encode with a model's prompts and search a corpus with faiss.

    Args:
        model: A loaded model, or a model folder/name loaded with :func:`~embedtune.models.loading.load_model`.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        progress: Show progress bars while encoding; ``None`` shows them when stderr is a terminal.
        backend: How a model given by name or folder runs (:data:`~embedtune.models.loading.BACKENDS`): ``auto``
            runs an ONNX export folder with onnxruntime and anything else with PyTorch.

    Raises:
        ModelNotFoundError: if ``model`` is a name that resolves to no available model.
        ValueError: if ``batch_size < 1``, or ``backend`` does not fit the model.
    """

    def __init__(
        self,
        model: SentenceTransformer | str,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
        backend: str = "auto",
    ):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_reference: str | None = None
        self.model_path: str | None = None
        if isinstance(model, str):
            resolved = resolve_model_path(model)
            self.model_reference = model
            self.model_path = str(Path(resolved).resolve()) if Path(resolved).is_dir() else resolved
            model = load_model(model, backend=backend)
        self.model = model
        self.batch_size = batch_size
        self.progress = progress
        self._index: SearchIndex | None = None

    @property
    def similarity(self) -> str:
        """The model's similarity function name: ``cosine`` (embeddings are unit length), ``dot``, ``euclidean``."""
        return model_similarity(self.model)

    @property
    def search_index(self) -> SearchIndex | None:
        """The index searched (from :meth:`index` or :meth:`load`), or ``None`` before one exists."""
        return self._index

    def encode_queries(self, texts: str | Sequence[str]) -> np.ndarray:
        """Encode queries with the model's query prompt (``model.encode_query``).

        Args:
            texts: ``n`` query texts (a single string counts as one).

        Returns:
            ``(n, dim)`` float32; rows are unit length when the model's similarity is cosine.
        """
        return encode_texts(self.model, _as_list(texts), "query", self.batch_size, self.progress)

    def encode_passages(self, texts: str | Sequence[str]) -> np.ndarray:
        """Encode documents with the model's document prompt (``model.encode_document``).

        Args:
            texts: ``n`` document texts (a single string counts as one).

        Returns:
            ``(n, dim)`` float32; rows are unit length when the model's similarity is cosine.
        """
        return encode_texts(self.model, _as_list(texts), "document", self.batch_size, self.progress)

    def index(self, corpus: Corpus, kind: str = "auto", **index_settings: Any) -> Retriever:
        """Encode a corpus and index it in memory, replacing any previous index.

        Args:
            corpus: Document id -> text, or a list of texts (their ids are ``"0"``, ``"1"``, ...).
            kind: ``auto``, ``exact``, ``hnsw`` or ``ivf``; ``auto`` is exact up to
                :data:`~embedtune.search.vectors.EXACT_MAX_DOCS` documents and HNSW above.
            **index_settings: Passed to :func:`~embedtune.search.vectors.create_vector_index` (``hnsw_m``,
                ``ef_search``, ``nlist``, ``nprobe``...).

        Returns:
            This retriever, for chaining.

        Raises:
            ValueError: on an empty corpus, a non-string id or text, an unknown kind or an unsupported similarity.
        """
        self._index = create_search_index(
            self.model,
            corpus,
            kind,
            batch_size=self.batch_size,
            progress=self.progress,
            model_reference=self.model_reference,
            model_path=self.model_path,
            **index_settings,
        )
        return self

    def save(self, out_dir: str | Path) -> Path:
        """Save the current index as an index folder (see :func:`~embedtune.search.index.save_index`).

        Returns:
            The folder written.

        Raises:
            RuntimeError: if nothing has been indexed yet.
            FileExistsError: if ``out_dir`` exists.
        """
        return save_index(self._require_index(), out_dir)

    def search(self, query: str, top_k: int = 10) -> list[SearchHit]:
        """Return the ``top_k`` documents most similar to one query, best first.

        Args:
            query: The query text (the model's query prompt is prepended).
            top_k: Documents to return, ``>= 1``; fewer when the corpus is smaller.

        Returns:
            Up to ``top_k`` hits, scores decreasing.

        Raises:
            RuntimeError: if nothing has been indexed yet.
            ValueError: if the query is empty or ``top_k < 1``.
        """
        return self.batch_search([query], top_k)[0]

    def batch_search(self, queries: Sequence[str], top_k: int = 10) -> list[list[SearchHit]]:
        """Return the ``top_k`` most similar documents for each of ``m`` queries (encoded together).

        Args:
            queries: ``m`` query texts.
            top_k: Documents per query, ``>= 1``.

        Returns:
            ``m`` lists of up to ``top_k`` hits each, scores decreasing, in query order.

        Raises:
            RuntimeError: if nothing has been indexed yet.
            ValueError: if a query is empty or not a string, or ``top_k < 1``.
        """
        index = self._require_index()
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        texts = _as_list(queries)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"queries must be non-empty strings, got {text!r}")
        scores, positions = index.search(self.encode_queries(texts), top_k)  # (m, k) each
        return [
            [
                SearchHit(index.ids[position], float(score), index.texts[position])
                for score, position in zip(row_scores, row_positions, strict=True)
                if position >= 0
            ]
            for row_scores, row_positions in zip(scores, positions, strict=True)
        ]

    @classmethod
    def load(
        cls,
        index_dir: str | Path,
        model: SentenceTransformer | str | None = None,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
        model_label: str | None = None,
        backend: str = "auto",
    ) -> Retriever:
        """Open a saved index folder for searching.

        Args:
            index_dir: A folder written by :func:`~embedtune.search.index.build_index` or :meth:`save`.
            model: The model to encode queries with. ``None`` loads the model recorded in ``index.json`` (its
                resolved path when that still exists, else the name as given) with the recorded prompts and
                truncation length. A given model must be the one the index was built with.
            batch_size: Texts per forward pass; ``None`` sizes it for the device.
            progress: Show progress bars while encoding; ``None`` shows them when stderr is a terminal.
            model_label: How ``model`` is named in a mismatch error (e.g. the run name it came from); default: the
                string given, or the folder the loaded model came from.
            backend: How the model (given by name, or recorded) runs (see :class:`Retriever`).

        Returns:
            A retriever whose :meth:`search` searches the saved index.

        Raises:
            IndexFileError: naming the file, if the folder or one of its files is missing or corrupt.
            ModelMismatchError: naming both models, if the model's dimension, similarity, weights (fingerprint) or
                prompts differ from those recorded in ``index.json``.
            ModelNotFoundError: if the model (given or recorded) cannot be found.
        """
        search_index = load_index(index_dir)
        info = search_index.info
        if model is None:
            recorded = _load_recorded_model(index_dir, info.model_path, info.model_reference, backend)
            retriever = cls(recorded, batch_size)
            apply_prompts(retriever.model, info.prompts)
            if info.max_seq_length is not None:
                retriever.model.max_seq_length = info.max_seq_length
            retriever.model_reference, retriever.model_path = info.model_reference, info.model_path
            label = info.model_path or info.model_reference or ""
        else:
            retriever = cls(model, batch_size, backend=backend)
            label = model if isinstance(model, str) else model_source(model) or "the given model"
            label = model_label or label
        retriever.progress = progress
        check_model_matches(retriever.model, info, index_dir, label)
        retriever._index = search_index
        return retriever

    def _require_index(self) -> SearchIndex:
        if self._index is None:
            raise RuntimeError("nothing indexed yet: call Retriever.index(corpus) or use Retriever.load(index_dir)")
        return self._index


def _load_recorded_model(
    index_dir: str | Path, path: str | None, reference: str | None, backend: str = "auto"
) -> SentenceTransformer:
    """Load the model an index records: its resolved path when that folder exists, else the name as given."""
    candidates = [name for name in (path, reference) if name]
    if not candidates:
        raise ModelNotFoundError(f"{index_dir}: index.json records no model; pass the model to search with")
    source = path if path and Path(path).is_dir() else candidates[-1]
    try:
        return load_model(source, backend=backend)
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"{index_dir}: the index's model {source!r} is not available ({error}); pass the model to search with"
        ) from error


def _as_list(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)
