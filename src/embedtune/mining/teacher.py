"""Teacher scores for distillation (``embedtune mine --teacher MODEL``): each (query, passage) pair scored again.

The teacher is a stronger model: a bi-encoder (cosine) or a sentence-transformers ``CrossEncoder`` (raw logits).

The mined negatives stay those the retriever chose (its scores decide the margin filters); only ``pos_scores`` and
``neg_scores`` are replaced, so ``loss.name: margin_mse | distill_kl`` learns the teacher's preferences.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder

from embedtune.cache import EmbeddingCache
from embedtune.data.types import TrainingExample
from embedtune.model_paths import check_model_available
from embedtune.models.batch_size import encode_in_batches
from embedtune.models.loading import load_model
from embedtune.search.retrieve import encode_documents, encode_queries

logger = logging.getLogger(__name__)

BI_ENCODER, CROSS_ENCODER = "bi-encoder", "cross-encoder"
TEACHER_KINDS = ("auto", BI_ENCODER, CROSS_ENCODER)
SCORE_DECIMALS = 6


def teacher_kind(path: str | Path) -> str:
    """Tell a cross-encoder folder from a bi-encoder one without loading it.

    A folder whose ``config_sentence_transformers.json`` says ``"model_type": "CrossEncoder"``, or a plain
    transformers folder (no ``modules.json``) of a ``…ForSequenceClassification`` model, is a cross-encoder;
    anything else is a bi-encoder.

    Returns:
        :data:`CROSS_ENCODER` or :data:`BI_ENCODER`.
    """
    folder = Path(path)
    settings = _json(folder / "config_sentence_transformers.json")
    if settings.get("model_type") == "CrossEncoder":
        return CROSS_ENCODER
    architectures = _json(folder / "config.json").get("architectures") or []
    plain = not (folder / "modules.json").exists()
    if plain and any(str(name).endswith("ForSequenceClassification") for name in architectures):
        return CROSS_ENCODER
    return BI_ENCODER


@dataclass
class Teacher:
    """A loaded teacher and how it scores.

    Attributes:
        model: A ``SentenceTransformer`` (cosine of query and passage embeddings) or a ``CrossEncoder`` (its raw
            logit, no activation: margins and softmaxes keep their spread).
        kind: :data:`BI_ENCODER` or :data:`CROSS_ENCODER`.
        batch_size: Texts (or pairs) per forward pass; ``None`` sizes it for the device.
        cache: Embedding cache of a bi-encoder teacher, or ``None``.
        precision: Autocast precision of a bi-encoder teacher's encoding.
    """

    model: Any
    kind: str
    batch_size: int | None = None
    cache: EmbeddingCache | None = None
    precision: str = "fp32"

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Score ``(query, passage)`` pairs: ``(len(pairs),)`` float64 (cosines in [-1, 1] or logits)."""
        if not pairs:
            return np.zeros(0)
        if self.kind == CROSS_ENCODER:
            options = {"activation_fn": torch.nn.Identity(), "show_progress_bar": False}
            scores = encode_in_batches(
                self.model, self.batch_size, lambda size: self.model.predict(pairs, batch_size=size, **options)
            )
            return np.asarray(scores, dtype=np.float64).reshape(len(pairs))
        queries, passages = sorted({q for q, _ in pairs}), sorted({p for _, p in pairs})
        options = (self.batch_size, False, self.cache, None, self.precision)
        query_vectors = _unit(encode_queries(self.model, queries, *options))
        passage_vectors = _unit(encode_documents(self.model, passages, *options))
        query_row = {text: row for row, text in enumerate(queries)}
        passage_row = {text: row for row, text in enumerate(passages)}
        rows_q = torch.tensor([query_row[q] for q, _ in pairs])
        rows_p = torch.tensor([passage_row[p] for _, p in pairs])
        return (query_vectors[rows_q] * passage_vectors[rows_p]).sum(dim=1).double().numpy()


def load_teacher(
    path: str, kind: str = "auto", max_seq_length: int | None = None, device: str | None = None, **options: Any
) -> Teacher:
    """Load the teacher at ``path`` as ``kind`` (``auto``: :func:`teacher_kind`).

    Args:
        path: A model folder (a run's ``model/`` too) or a name that resolves offline.
        kind: ``auto``, :data:`BI_ENCODER` or :data:`CROSS_ENCODER`.
        max_seq_length: Truncation length in tokens; ``None`` keeps the model's.
        device: ``cpu``, ``cuda``…; ``None`` lets sentence-transformers choose.
        **options: ``batch_size``, ``cache``, ``precision`` of :class:`Teacher`.

    Raises:
        ValueError: for an unknown ``kind``.
        embedtune.model_paths.ModelNotFoundError: if the model cannot be found.
    """
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind must be one of {', '.join(TEACHER_KINDS)}, got {kind!r}")
    resolved = check_model_available(path)
    kind = teacher_kind(resolved) if kind == "auto" else kind
    if kind == CROSS_ENCODER:
        model = CrossEncoder(resolved, device=device, max_length=max_seq_length)
    else:
        model = load_model(resolved, max_seq_length, device)
    logger.info("Teacher %s loaded as a %s", path, kind)
    return Teacher(model, kind, **options)


def rescore(examples: list[TrainingExample], teacher: Teacher) -> list[TrainingExample]:
    """Replace every record's ``pos_scores`` and ``neg_scores`` by the teacher's scores (rounded to 6 decimals).

    Args:
        examples: Training records (mined or given).
        teacher: From :func:`load_teacher`.

    Returns:
        New records, in order; texts, ids, weights and sources unchanged.
    """
    pairs = [(e.query, text) for e in examples for text in (*e.pos, *e.neg)]
    scores = iter(np.round(teacher.score(pairs), SCORE_DECIMALS).tolist())
    rescored = []
    for example in examples:
        pos_scores = tuple(next(scores) for _ in example.pos)
        neg_scores = tuple(next(scores) for _ in example.neg)
        rescored.append(replace(example, pos_scores=pos_scores, neg_scores=neg_scores))
    return rescored


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors.float().cpu(), dim=1)


def _json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
