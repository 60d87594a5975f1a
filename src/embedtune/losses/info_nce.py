"""InfoNCE with in-batch negatives, optional weighted hard negatives and an optional symmetric term."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import cos_sim
from torch import Tensor, nn


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch negatives and per-query hard negatives, each hard negative with its own weight.

    For query ``q_i`` with positive ``p_i``, candidates are every positive in the batch and every hard negative in the
    batch; the loss is ``-log( exp(s(q_i,p_i)/t) / sum_c w_ic * exp(s(q_i,c)/t) )`` with ``t = 1/scale``. The weight
    ``w_ic`` of one of ``q_i``'s own hard negatives multiplies ``exp(sim)`` (it is added as ``log w`` to the logit,
    never multiplied onto the similarity); all other candidates have weight 1. A weight of 0 marks a padding slot
    (a query with fewer hard negatives than the batch's column count) and removes that column for every query.
    With ``symmetric=True`` the passage-to-query term ``-log softmax_j s(p_i, q_j)`` is added and the two are
    averaged, as in Jina Embeddings 2 (arXiv:2310.19923).

    Args:
        model: The SentenceTransformer being trained.
        scale: Inverse temperature; ``scale=20`` is temperature 0.05.
        symmetric: Also compute the passage-to-query direction (in-batch queries as negatives).
        similarity_fct: ``(a: (n, dim), b: (m, dim)) -> (n, m)`` similarity; cosine by default.

    References:
        - van den Oord et al., Representation Learning with Contrastive Predictive Coding, arXiv:1807.03748
        - Henderson et al., Efficient Natural Language Response Suggestion for Smart Reply, arXiv:1705.00652

    Inputs:
        +--------------------------------------------------+-----------------------------------------------+
        | Texts                                            | Labels                                        |
        +==================================================+===============================================+
        | (query, positive) pairs                          | none                                          |
        +--------------------------------------------------+-----------------------------------------------+
        | (query, positive, negative_1, ..., negative_n)   | none (all weights 1) or ``(batch, n)`` weights |
        +--------------------------------------------------+-----------------------------------------------+
    """

    def __init__(
        self,
        model: SentenceTransformer,
        scale: float = 20.0,
        symmetric: bool = False,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.model = model
        self.scale = scale
        self.symmetric = symmetric
        self.similarity_fct = similarity_fct

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed the columns and return the scalar loss; ``labels`` are the ``(batch, n)`` hard-negative weights."""
        embeddings = embed_columns(self.model, sentence_features)
        neg_weights = labels if labels is not None and labels.dim() == 2 else None
        return self.compute_loss_from_embeddings(embeddings, neg_weights)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], neg_weights: Tensor | None = None) -> Tensor:
        """Compute the loss from column embeddings.

        Args:
            embeddings: ``[queries (batch, dim), positives (batch, dim), negative_1 (batch, dim), ...]``.
            neg_weights: ``(batch, n)`` weights of each query's own n hard negatives (0 = padding), or ``None``.

        Returns:
            Scalar loss tensor.

        Raises:
            ValueError: if fewer than two columns are given or the weights do not match the negative columns.
        """
        if len(embeddings) < 2:
            raise ValueError(f"InfoNCE needs at least (query, positive) columns, got {len(embeddings)}")
        queries, positives = embeddings[0], embeddings[1]  # (batch, dim) each
        batch_size = queries.size(0)
        candidates = torch.cat(embeddings[1:], dim=0)  # ((1 + n) * batch, dim), column-major
        logits = self.similarity_fct(queries, candidates) * self.scale  # (batch, (1 + n) * batch)
        num_negatives = len(embeddings) - 2
        if neg_weights is not None:
            if neg_weights.shape != (batch_size, num_negatives):
                raise ValueError(
                    f"neg_weights has shape {tuple(neg_weights.shape)}, expected ({batch_size}, {num_negatives})"
                )
            logits = logits + hard_negative_log_weights(neg_weights).to(logits.dtype)
        targets = torch.arange(batch_size, device=queries.device)
        loss = F.cross_entropy(logits, targets)
        if self.symmetric:
            passage_logits = self.similarity_fct(positives, queries) * self.scale  # (batch, batch)
            loss = (loss + F.cross_entropy(passage_logits, targets)) / 2
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Return the settings recorded in the model card."""
        return {"scale": self.scale, "symmetric": self.symmetric, "similarity_fct": self.similarity_fct.__name__}

    @property
    def temperature(self) -> float:
        """Softmax temperature, ``1 / scale``."""
        return 1.0 / self.scale


def hard_negative_log_weights(neg_weights: Tensor) -> Tensor:
    """Turn per-query hard-negative weights into additive logit offsets.

    Args:
        neg_weights: ``(batch, n)`` non-negative weights; entry ``[i, j]`` belongs to query i's j-th hard negative,
            which sits in candidate column ``(1 + j) * batch + i``. 0 marks a padding slot.

    Returns:
        ``(batch, (1 + n) * batch)`` offsets: ``log w`` on each query's own hard negatives, ``-inf`` on the whole
        column of a padding slot, 0 elsewhere (positives and other queries' negatives keep weight 1).
    """
    batch_size, num_negatives = neg_weights.shape
    offsets = torch.zeros(batch_size, (1 + num_negatives) * batch_size, device=neg_weights.device)
    rows = torch.arange(batch_size, device=neg_weights.device)
    for j in range(num_negatives):
        columns = (1 + j) * batch_size + rows
        weights = neg_weights[:, j].float()
        padding = weights <= 0
        offsets[rows, columns] = torch.log(weights.clamp_min(torch.finfo(torch.float32).tiny))
        offsets[:, columns[padding]] = float("-inf")
    return offsets
