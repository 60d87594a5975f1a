"""What ``train.mode: head`` trains and evaluates on: each distinct text embedded once by the frozen encoder.

The encoder never changes in head mode, so its embedding of a text is a constant: every distinct query (with the
query prompt) and every distinct passage (with the document prompt) is encoded once, through the on-disk
:class:`~embedtune.cache.EmbeddingCache` when there is one (keyed by the encoder's fingerprint and the text's hash,
shared with the base model's evaluation and with later runs). Training batches are gathered from these tables by
row index, and dev evaluation ranks the dev pool with the head applied to the tables' rows.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import cos_sim
from torch import Tensor, nn

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.data.types import EvalSplit
from embedtune.evaluation.candidate_pool import hard_candidate_pool
from embedtune.evaluation.retrieval_evaluator import subsample_corpus
from embedtune.losses.false_negatives import FalseNegativeTable
from embedtune.losses.registry import uses_guide_model
from embedtune.models.batch_size import encode_in_batches
from embedtune.models.loading import load_model
from embedtune.models.precision import inference_autocast
from embedtune.search.encoding import apply_prompts, model_prompts
from embedtune.training.dataset import TrainDataset

logger = logging.getLogger(__name__)

PCA_MAX_ROWS = 50_000
"""Most embeddings the principal directions are computed from (a seeded sample beyond that)."""
APPLY_CHUNK = 8192
"""Embeddings the head maps at a time during dev evaluation."""


@dataclass
class EmbeddingTable:
    """The frozen encoder's embeddings of distinct texts of one role.

    Attributes:
        role: ``"query"`` or ``"document"``.
        rows: Text -> row of ``matrix``.
        matrix: ``(num_texts, dim)`` float32 CPU tensor.
        encoded: How many of the texts the encoder embedded (the others were read from the cache).
    """

    role: str
    rows: dict[str, int]
    matrix: torch.Tensor
    encoded: int

    def indices(self, texts: Sequence[str]) -> torch.Tensor:
        """Return the ``(len(texts),)`` int64 rows of ``texts``.

        Raises:
            KeyError: if a text is not in the table.
        """
        return torch.tensor([self.rows[text] for text in texts], dtype=torch.long)

    def lookup(self, texts: Sequence[str]) -> torch.Tensor:
        """Return the ``(len(texts), dim)`` embeddings of ``texts``.

        Raises:
            KeyError: if a text is not in the table.
        """
        return self.matrix[self.indices(texts)]


def encode_distinct(
    model: SentenceTransformer,
    texts: Iterable[str],
    role: str,
    batch_size: int | None = None,
    cache: EmbeddingCache | None = None,
    precision: str = "fp32",
) -> EmbeddingTable:
    """Embed each distinct text once with the frozen encoder, reading and filling the cache.

    Queries go through ``model.encode_query`` and documents through ``model.encode_document`` (the model's prompts
    are prepended), exactly as evaluation encodes them, so the cache entries are shared with it. sentence-transformers
    sorts each call's texts by length before batching them.

    Args:
        model: The frozen encoder.
        texts: Texts in any order, repeats allowed.
        role: ``"query"`` or ``"document"``.
        batch_size: Texts per forward pass; ``None`` sizes it for the device (:func:`encode_in_batches`).
        cache: On-disk cache; ``None`` (``eval.cache_max_gb: 0``) encodes every distinct text in memory.
        precision: Autocast precision of encoding, the evaluation's (``eval.precision``), so that the cache entries
            are the ones evaluation reads.

    Returns:
        The table of the distinct texts, in order of first appearance.

    Raises:
        ValueError: if ``role`` is neither ``"query"`` nor ``"document"``.
    """
    if role not in ("query", "document"):
        raise ValueError(f"role must be 'query' or 'document', got {role!r}")
    distinct = list(dict.fromkeys(texts))
    encode = model.encode_query if role == "query" else model.encode_document
    encoded = 0

    def encode_all(batch: list[str]) -> torch.Tensor:
        nonlocal encoded
        encoded += len(batch)

        def encode_at(size: int) -> torch.Tensor:
            show = sys.stderr.isatty() and len(batch) > size
            with torch.no_grad():
                return encode(batch, batch_size=size, convert_to_tensor=True, show_progress_bar=show).float().cpu()

        return encode_in_batches(model, batch_size, encode_at)

    with inference_autocast(precision, model.device):  # around the cache too: its fingerprint records autocast
        if not distinct:
            matrix = torch.empty(0, model.get_embedding_dimension() or 0)
        elif cache is None:
            matrix = encode_all(distinct).clone()  # a plain tensor, not an inference-mode one
        else:
            matrix = cache.get_or_encode(model, distinct, role, encode_all)
    return EmbeddingTable(role, {text: row for row, text in enumerate(distinct)}, matrix, encoded)


@dataclass
class HeadTrainRows:
    """The training rows of the full-mode dataset, as rows of the embedding tables.

    Attributes:
        built: The dataset the full mode trains on (its text columns drive the no-duplicates batch sampler) and its
            false-negative table.
        queries: ``(rows,)`` int64 rows of the query table (the ``anchor`` column).
        candidates: ``(rows, 1 + n)`` int64 rows of the document table (``positive``, ``negative_1`` ...).
        labels: ``(rows, 1 + n)`` float32 ``[row index, w_1, ..., w_n]``, as the InfoNCE loss reads them.
    """

    built: TrainDataset
    queries: torch.Tensor
    candidates: torch.Tensor
    labels: torch.Tensor

    @property
    def false_negatives(self) -> FalseNegativeTable:
        """The false-negative table of the rows."""
        return self.built.false_negatives

    def __len__(self) -> int:
        """Return the number of training rows."""
        return len(self.queries)


def candidate_columns(built: TrainDataset) -> list[str]:
    """Return the dataset's passage columns: ``["positive", "negative_1", ..., "negative_n"]``."""
    return ["positive"] + [f"negative_{j + 1}" for j in range(built.num_negatives)]


def head_train_rows(built: TrainDataset, queries: EmbeddingTable, documents: EmbeddingTable) -> HeadTrainRows:
    """Map every training row's texts to their rows in the embedding tables.

    Raises:
        KeyError: if a text of the dataset is missing from its table.
    """
    dataset = built.dataset
    candidates = torch.stack([documents.indices(dataset[column]) for column in candidate_columns(built)], dim=1)
    labels = torch.tensor(dataset["label"], dtype=torch.float32).reshape(len(dataset), -1)
    return HeadTrainRows(built, queries.indices(dataset["anchor"]), candidates, labels)


class CachedBatchCollator:
    """Turn a batch of training row indices into the loss's inputs, gathered from the embedding tables.

    Args:
        rows: The training rows.
        queries: ``(num_queries, dim)`` query embeddings.
        documents: ``(num_documents, dim)`` document embeddings.
        guide: ``(queries, documents)`` embeddings of the same texts by a separate guide model, or ``None``.
    """

    def __init__(
        self,
        rows: HeadTrainRows,
        queries: torch.Tensor,
        documents: torch.Tensor,
        guide: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.rows = rows
        self.queries = queries
        self.documents = documents
        self.guide = guide

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Gather a batch.

        Args:
            indices: ``batch`` training row indices.

        Returns:
            ``{"embeddings": (batch, 2 + n, dim)`` encoder embeddings of ``[query, positive, negative_1, ...]``,
            ``"label": (batch, 1 + n)}``, plus ``"guide": (batch, 2 + n, guide_dim)`` with a separate guide.
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {"embeddings": self._gather(self.queries, self.documents, index), "label": self.rows.labels[index]}
        if self.guide is not None:
            batch["guide"] = self._gather(*self.guide, index)
        return batch

    def _gather(self, queries: torch.Tensor, documents: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        query = queries[self.rows.queries[index]].unsqueeze(1)  # (batch, 1, dim)
        passages = documents[self.rows.candidates[index]]  # (batch, 1 + n, dim)
        return torch.cat([query, passages], dim=1)


def principal_directions(features: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """Return ``count`` orthonormal directions that best preserve the inner products of ``features``.

    These are the top eigenvectors of the *uncentred* second-moment matrix ``X^T X`` (the right singular vectors of
    the truncated SVD of ``X``): projecting onto them is the rank-``count`` map that best keeps every dot product, so
    for ``count >= dim`` the projection is a rotation that keeps every cosine similarity, and for a smaller ``count``
    it keeps as much of them as a linear map can. (Centring first, as textbook PCA does, would drop the shared mean
    direction that the encoder's cosines depend on.) Each direction's sign is fixed so that its largest-magnitude
    component is positive, and directions beyond ``dim`` are small seeded random rows (so that they still learn).

    Args:
        features: ``(n, dim)`` embeddings; a seeded sample of :data:`PCA_MAX_ROWS` is used beyond that.
        count: Directions wanted (the head's output dimension).
        seed: Seed of the sample and of any extra rows.

    Returns:
        ``(count, dim)`` float32 weight, strongest direction first.

    Raises:
        ValueError: if ``features`` is not a non-empty 2-D tensor or ``count < 1``.
    """
    if features.dim() != 2 or features.size(0) == 0 or count < 1:
        raise ValueError(f"need a non-empty (n, dim) matrix and count >= 1, got {tuple(features.shape)}, {count}")
    generator = torch.Generator().manual_seed(seed)
    if features.size(0) > PCA_MAX_ROWS:
        features = features[torch.randperm(features.size(0), generator=generator)[:PCA_MAX_ROWS]]
    x = features.double()
    _, vectors = torch.linalg.eigh(x.T @ x)  # ascending eigenvalues
    directions = vectors.flip(1).T[:count]  # (min(count, dim), dim), strongest first
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    directions = directions * signs
    dim = features.size(1)
    if count > dim:
        extra = torch.randn(count - dim, dim, generator=generator, dtype=torch.float64) * (0.01 / dim**0.5)
        directions = torch.cat([directions, extra])
    return directions.float()


def guide_tables(
    config: ExperimentConfig,
    model: SentenceTransformer,
    queries: EmbeddingTable,
    documents: EmbeddingTable,
    cache: EmbeddingCache | None,
) -> tuple[Tensor, Tensor] | None:
    """Embed the tables' texts with ``loss.guide_model`` (once, through the cache), for the InfoNCE guide.

    The guide reads the texts with the trained model's prompts, as it does in the other modes.

    Args:
        config: The run settings.
        model: The frozen encoder (its prompts are given to the guide).
        queries: The query table; the guide's rows come in the same order.
        documents: The document table; likewise.
        cache: The embedding cache, or ``None``.

    Returns:
        ``(queries (num_queries, guide_dim), documents (num_documents, guide_dim))``; ``None`` when no guide is used
        or the guide is the frozen encoder itself (its embeddings are then the tables').

    Raises:
        embedtune.model_paths.ModelNotFoundError: if the guide model cannot be loaded.
    """
    if not uses_guide_model(config.loss):
        return None
    guide = load_model(config.loss.guide_model, config.model.max_seq_length)
    apply_prompts(guide, model_prompts(model))
    batch_size = config.eval.batch_size
    precision = config.eval.precision
    guide_queries = encode_distinct(guide, list(queries.rows), "query", batch_size, cache, precision)
    guide_documents = encode_distinct(guide, list(documents.rows), "document", batch_size, cache, precision)
    return guide_queries.matrix, guide_documents.matrix


class HeadOnCachedEmbeddings:
    """What :class:`RetrievalEvaluator` needs of a model, answered from cached encoder embeddings and the head.

    Args:
        head: The head being trained, ``(n, in_dim)`` to unit ``(n, dim)``; ``None`` answers with the encoder's own
            embeddings (the untouched model).
        queries: Encoder embeddings of the dev queries (and possibly more).
        documents: Encoder embeddings of the dev pool's documents (and possibly more).
        similarity: ``(a (n, d), b (m, d)) -> (n, m)`` scores: cosine for the head's unit vectors, the encoder's own
            similarity function without a head.

    Raises:
        KeyError: from ``encode_*`` for a text that is not in its table.
    """

    def __init__(
        self,
        head: nn.Module | None,
        queries: EmbeddingTable,
        documents: EmbeddingTable,
        similarity: Callable[[Tensor, Tensor], Tensor] = cos_sim,
    ) -> None:
        self.head = head
        self.queries = queries
        self.documents = documents
        self.similarity = similarity

    def encode_query(self, texts: list[str], **kwargs: Any) -> Tensor:
        """Return the ``(len(texts), dim)`` head outputs of the queries' cached embeddings (``kwargs`` ignored)."""
        return self._apply(self.queries.lookup(texts))

    def encode_document(self, texts: list[str], **kwargs: Any) -> Tensor:
        """Return the ``(len(texts), dim)`` head outputs of the documents' cached embeddings (``kwargs`` ignored)."""
        return self._apply(self.documents.lookup(texts))

    def _apply(self, embeddings: Tensor) -> Tensor:
        if self.head is None:
            return embeddings
        device = next(self.head.parameters()).device
        was_training = self.head.training
        self.head.eval()
        with torch.no_grad(), torch.autocast(device.type, enabled=False):  # as apply_head scores the shipped head
            parts = [self.head(part.to(device)).float().cpu() for part in embeddings.split(APPLY_CHUNK)]
        self.head.train(was_training)
        return torch.cat(parts) if parts else embeddings.new_empty(0, 0)


def dev_documents(config: ExperimentConfig, split: EvalSplit) -> tuple[dict[str, str], bool]:
    """Return the dev documents to encode and whether the pool is then picked from the encoder's ranking.

    The same choice as :func:`embedtune.evaluation.candidate_pool.dev_candidate_pool` makes, but the ranking is done
    by :func:`hard_dev_pool` from the embedding tables, so no dev text is encoded twice.

    Returns:
        ``(documents, rank)``: the whole dev corpus and ``True`` when the pool is the encoder's top candidates
        (``data.dev_candidates: base_top_k`` with a corpus larger than ``data.dev_max_corpus``); else the final pool
        (judged documents plus a seeded random sample) and ``False``.
    """
    max_docs, strategy = config.data.dev_max_corpus, config.data.dev_candidates
    if max_docs is None or max_docs >= len(split.corpus) or strategy == "random":
        return subsample_corpus(split.corpus, split.qrels, max_docs, seed=config.data.split_seed), False
    return split.corpus, True


def hard_dev_pool(
    config: ExperimentConfig, split: EvalSplit, queries: EmbeddingTable, documents: EmbeddingTable
) -> dict[str, str]:
    """Pick the dev pool from the frozen encoder's ranking (:func:`hard_candidate_pool`), read from the tables.

    Raises:
        KeyError: if a dev query or document is not in its table.
    """
    query_ids, doc_ids = list(split.queries), list(split.corpus)
    query_embeddings = queries.lookup([split.queries[q] for q in query_ids])
    doc_embeddings = documents.lookup([split.corpus[d] for d in doc_ids])
    max_docs = config.data.dev_max_corpus or len(doc_ids)
    seed = config.data.split_seed
    return hard_candidate_pool(
        split.corpus, split.qrels, query_ids, query_embeddings, doc_ids, doc_embeddings, max_docs, seed=seed
    )
