"""InfoNCE with in-batch and weighted hard negatives, false-negative masking, a symmetric term and isotropy."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import cos_sim
from torch import Tensor, nn

from embedtune.losses.components import LossComponents
from embedtune.losses.false_negatives import FalseNegativeTable, passage_to_query_mask
from embedtune.losses.guide import GuideModel
from embedtune.losses.isotropy import alignment, mean_dimension_std, uniformity


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch and weighted hard negatives, with false-negative masking and an isotropy regulariser.

    For query ``q_i`` with positive ``p_i``, candidates are every positive in the batch and every hard negative in the
    batch; the loss is ``-log( exp(s(q_i,p_i)/t) / sum_c w_ic * exp(s(q_i,c)/t) )`` with ``t = 1/scale``. The weight
    ``w_ic`` of one of ``q_i``'s own hard negatives multiplies ``exp(sim)`` (it is added as ``log w`` to the logit,
    never multiplied onto the similarity); all other candidates have weight 1. A weight of 0 marks a padding slot
    (a query with fewer hard negatives than the batch's column count) and removes that column for every query.
    With ``symmetric=True`` the passage-to-query term ``-log softmax_j s(p_i, q_j)`` is added and the two are
    averaged, as in Jina Embeddings 2 (arXiv:2310.19923); hard negatives do not appear in that direction.

    False negatives leave the denominator (their weight becomes 0) in both directions: with a
    :class:`~embedtune.losses.false_negatives.FalseNegativeTable`, every candidate that is one of the query's
    positives (same text, or a document id the qrels mark relevant); with a
    :class:`~embedtune.losses.guide.GuideModel`, every candidate the guide scores above the positive minus a margin.
    A query's own positive is never masked.

    With ``isotropy_weight > 0`` the loss adds ``isotropy_weight * (uniformity(q) + uniformity(p)) / 2``, the
    uniformity of Wang & Isola (arXiv:2005.10242), which spreads embeddings over the sphere.

    Args:
        model: The SentenceTransformer being trained.
        scale: Inverse temperature; ``scale=20`` is temperature 0.05.
        symmetric: Also compute the passage-to-query direction (in-batch queries as negatives).
        similarity_fct: ``(a: (n, dim), b: (m, dim)) -> (n, m)`` similarity; cosine by default.
        false_negatives: Row table of the training dataset; masking by it needs row indices in the labels.
        guide: Frozen guide model for similarity-based masking, or ``None``.
        isotropy_weight: Weight of the uniformity term; 0 turns it off (it is still logged).

    References:
        - van den Oord et al., Representation Learning with Contrastive Predictive Coding, arXiv:1807.03748
        - Henderson et al., Efficient Natural Language Response Suggestion for Smart Reply, arXiv:1705.00652
        - Solatorio, GISTEmbed, arXiv:2402.16829; Moreira et al., NV-Retriever, arXiv:2407.15831
        - Wang & Isola, Understanding Contrastive Representation Learning through Alignment and Uniformity,
          arXiv:2005.10242

    Inputs:
        +--------------------------------------------------+-------------------------------------------------------+
        | Texts                                            | Labels                                                |
        +==================================================+=======================================================+
        | (query, positive) pairs                          | none, or ``(batch, 1)`` row indices                   |
        +--------------------------------------------------+-------------------------------------------------------+
        | (query, positive, negative_1, ..., negative_n)   | none (weights 1), or ``(batch, 1 + n)``:              |
        |                                                  | ``[row index, w_1, ..., w_n]`` (w = 0: padding slot)  |
        +--------------------------------------------------+-------------------------------------------------------+
    """

    def __init__(
        self,
        model: SentenceTransformer,
        scale: float = 20.0,
        symmetric: bool = False,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        false_negatives: FalseNegativeTable | None = None,
        guide: GuideModel | None = None,
        isotropy_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if not isotropy_weight >= 0:
            raise ValueError(f"isotropy_weight must be >= 0, got {isotropy_weight}")
        self.model = model
        self.scale = scale
        self.symmetric = symmetric
        self.similarity_fct = similarity_fct
        self.false_negatives = false_negatives
        self.guide = guide
        self.isotropy_weight = isotropy_weight
        self.components = LossComponents()

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed the columns and return the scalar loss; ``labels`` as in the Inputs table."""
        sentence_features = list(sentence_features)
        guide_embeddings = self.guide.embed(sentence_features) if self.guide is not None else None
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels, guide_embeddings)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None, guide_embeddings: list[Tensor] | None = None
    ) -> Tensor:
        """Compute the loss from column embeddings.

        Args:
            embeddings: ``[queries (batch, dim), positives (batch, dim), negative_1 (batch, dim), ...]``.
            labels: ``(batch, 1 + n)`` ``[row index, weights of the n hard negatives]`` or ``None``.
            guide_embeddings: The guide's embeddings of the same columns (each ``(batch, guide_dim)``), required when
                the loss has a guide.

        Returns:
            Scalar loss tensor.

        Raises:
            ValueError: if fewer than two columns are given, the labels do not match the negative columns, or the
                guide's embeddings are missing.
        """
        if len(embeddings) < 2:
            raise ValueError(f"InfoNCE needs at least (query, positive) columns, got {len(embeddings)}")
        queries, positives = embeddings[0], embeddings[1]  # (batch, dim) each
        batch_size, num_negatives = queries.size(0), len(embeddings) - 2
        rows, neg_weights = split_labels(labels, batch_size, num_negatives)
        candidates = torch.cat(embeddings[1:], dim=0)  # ((1 + n) * batch, dim), column-major
        logits = self.similarity_fct(queries, candidates) * self.scale  # (batch, (1 + n) * batch)
        if neg_weights is not None:
            logits = logits + hard_negative_log_weights(neg_weights).to(logits.dtype)
        query_mask, passage_mask = self._false_negative_masks(
            rows, guide_embeddings, batch_size, num_negatives, queries.device
        )
        self.components.add("masked_candidates", (query_mask & logits.isfinite()).sum())
        targets = torch.arange(batch_size, device=queries.device)
        query_loss = F.cross_entropy(logits.masked_fill(query_mask, float("-inf")), targets)
        self.components.add("infonce_query_to_doc", query_loss)
        loss = query_loss
        if self.symmetric:
            passage_logits = self.similarity_fct(positives, queries) * self.scale  # (batch, batch)
            passage_loss = F.cross_entropy(passage_logits.masked_fill(passage_mask, float("-inf")), targets)
            self.components.add("infonce_doc_to_query", passage_loss)
            loss = (query_loss + passage_loss) / 2
        return loss + self._isotropy(queries, positives)

    def _false_negative_masks(
        self,
        rows: Tensor | None,
        guide_embeddings: list[Tensor] | None,
        batch_size: int,
        num_negatives: int,
        device: torch.device,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(query mask (batch, (1 + n) * batch), passage mask (batch, batch))``, True = drop."""
        query_mask = torch.zeros(batch_size, (1 + num_negatives) * batch_size, dtype=torch.bool, device=device)
        passage_mask = torch.zeros(batch_size, batch_size, dtype=torch.bool, device=device)
        if self.false_negatives is not None and rows is not None:
            table_mask = self.false_negatives.query_to_candidates_mask(rows, 1 + num_negatives).to(device)
            query_mask |= table_mask
            passage_mask |= passage_to_query_mask(table_mask)
        if self.guide is not None:
            if guide_embeddings is None:
                raise ValueError("this loss has a guide model: pass the guide's embeddings")
            guide_query, guide_passage = self._guide_masks(guide_embeddings, device)
            targets = torch.arange(batch_size, device=device)
            guide_query[targets, targets] = False
            self.components.add("masked_by_guide", (guide_query & ~query_mask).sum())
            query_mask |= guide_query
            passage_mask |= guide_passage
        diagonal = torch.arange(batch_size, device=device)
        query_mask[diagonal, diagonal] = False  # the target is never masked
        passage_mask[diagonal, diagonal] = False
        return query_mask, passage_mask

    def _guide_masks(self, guide_embeddings: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
        assert self.guide is not None
        queries, positives = guide_embeddings[0].to(device), guide_embeddings[1].to(device)
        similarities = cos_sim(queries, torch.cat([e.to(device) for e in guide_embeddings[1:]]))
        positive_similarity = similarities[:, : queries.size(0)].diagonal()
        passage_similarities = cos_sim(positives, queries)  # (batch, batch)
        return (
            self.guide.mask(similarities, positive_similarity),
            self.guide.mask(passage_similarities, passage_similarities.diagonal()),
        )

    def _isotropy(self, queries: Tensor, positives: Tensor) -> Tensor:
        """Log alignment, uniformity and spread; return the weighted uniformity term (0 when its weight is 0)."""
        if queries.size(0) < 2:  # uniformity needs two embeddings a side
            return torch.zeros((), device=queries.device, dtype=queries.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.isotropy_weight > 0):
            uniform = (uniformity(queries.float()) + uniformity(positives.float())) / 2
        with torch.no_grad():
            self.components.add("alignment", alignment(queries.float(), positives.float()))
            self.components.add("uniformity", uniform)
            self.components.add("embedding_std", mean_dimension_std(torch.cat([queries, positives]).float()))
        if self.isotropy_weight == 0:
            return torch.zeros((), device=queries.device, dtype=queries.dtype)
        return self.isotropy_weight * uniform

    def get_config_dict(self) -> dict[str, Any]:
        """Return the settings recorded in the model card."""
        return {
            "scale": self.scale,
            "symmetric": self.symmetric,
            "similarity_fct": self.similarity_fct.__name__,
            "mask_false_negatives": self.false_negatives is not None,
            "guide": self.guide is not None,
            "isotropy_weight": self.isotropy_weight,
        }

    @property
    def temperature(self) -> float:
        """Softmax temperature, ``1 / scale``."""
        return 1.0 / self.scale


def split_labels(labels: Tensor | None, batch_size: int, num_negatives: int) -> tuple[Tensor | None, Tensor | None]:
    """Split the label tensor into row indices and hard-negative weights.

    Args:
        labels: ``(batch, 1 + n)`` ``[row index, w_1, ..., w_n]``, or ``None``.
        batch_size: Rows in the batch.
        num_negatives: ``n``, the hard-negative columns.

    Returns:
        ``(rows (batch,), weights (batch, n))``; ``(None, None)`` without labels (``None`` or 1-D); weights ``None``
        when ``n = 0``.

    Raises:
        ValueError: if the labels' shape is not ``(batch, 1 + n)``.
    """
    if labels is None or labels.dim() == 1:  # no label column: the trainer may pass a dummy 1-D tensor
        return None, None
    if labels.dim() != 2 or labels.shape != (batch_size, 1 + num_negatives):
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected ({batch_size}, {1 + num_negatives}): "
            "[row index, one weight per hard-negative column]"
        )
    return labels[:, 0], (labels[:, 1:] if num_negatives else None)


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
