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
from embedtune.losses.distributed import GatheredBatch, gather_batch
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

    Across processes (DDP under ``torchrun`` or ``accelerate launch``), the batch is that of all processes: queries,
    positives, hard negatives, their weights, row indices and guide embeddings are gathered (embeddings with
    gradients), each process computes the terms of its own queries and passages against every candidate, scaled by
    ``world_size / global_batch``, and isotropy is the uniformity of the gathered batch. The mean over processes,
    which DDP's gradient averaging optimises, equals the loss of one process on the global batch. The logged
    ``masked_*`` counts and direction terms are this process's share.

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

        Under ``torch.distributed`` with several processes, the columns, labels and guide embeddings of every
        process are gathered (:func:`~embedtune.losses.distributed.gather_batch`) and this process's queries are
        scored against all candidates; the returned loss is this process's share, scaled so that the mean over
        processes (what DDP's gradient averaging optimises) is the loss of one process on the whole batch.

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
        if self.guide is not None and guide_embeddings is None:
            raise ValueError("this loss has a guide model: pass the guide's embeddings")
        rows, neg_weights = split_labels(labels, embeddings[0].size(0), len(embeddings) - 2)
        batch = gather_batch(embeddings, rows, neg_weights, guide_embeddings if self.guide is not None else None)
        queries, positives = batch.columns[0], batch.columns[1]  # (total, dim) each
        local_queries = queries[batch.local]  # (batch, dim)
        candidates = torch.cat(batch.columns[1:], dim=0)  # ((1 + n) * total, dim), column-major
        logits = self.similarity_fct(local_queries, candidates) * self.scale  # (batch, (1 + n) * total)
        if batch.neg_weights is not None:
            offsets = hard_negative_log_weights(batch.neg_weights, batch.offset, batch.local_size)
            logits = logits + offsets.to(logits.dtype)
        query_mask, passage_mask = self._false_negative_masks(batch, queries.device)
        self.components.add("masked_candidates", (query_mask & logits.isfinite()).sum())
        targets = batch.targets(queries.device)
        query_logits = logits.masked_fill(query_mask, float("-inf"))
        query_loss = F.cross_entropy(query_logits, targets, reduction="sum") * batch.loss_scale
        self.components.add("infonce_query_to_doc", query_loss)
        loss = query_loss
        if self.symmetric:
            passage_logits = self.similarity_fct(positives[batch.local], queries) * self.scale  # (batch, total)
            passage_logits = passage_logits.masked_fill(passage_mask, float("-inf"))
            passage_loss = F.cross_entropy(passage_logits, targets, reduction="sum") * batch.loss_scale
            self.components.add("infonce_doc_to_query", passage_loss)
            loss = (query_loss + passage_loss) / 2
        return loss + self._isotropy(queries, positives)

    def _false_negative_masks(self, batch: GatheredBatch, device: torch.device) -> tuple[Tensor, Tensor]:
        """Return ``(query mask (batch, (1 + n) * total), passage mask (batch, total))``, True = drop."""
        local, total, columns = batch.local_size, batch.total, len(batch.columns) - 1
        query_mask = torch.zeros(local, columns * total, dtype=torch.bool, device=device)
        passage_mask = torch.zeros(local, total, dtype=torch.bool, device=device)
        if self.false_negatives is not None and batch.rows is not None:
            table_mask = self.false_negatives.query_to_candidates_mask(batch.rows, columns).to(device)
            query_mask |= table_mask[batch.local]
            passage_mask |= passage_to_query_mask(table_mask)[batch.local]
        own = torch.arange(local, device=device), batch.targets(device)
        if self.guide is not None:
            assert batch.guide is not None  # checked by compute_loss_from_embeddings
            guide_query, guide_passage = self._guide_masks(batch.guide, batch, device)
            guide_query[own] = False
            self.components.add("masked_by_guide", (guide_query & ~query_mask).sum())
            query_mask |= guide_query
            passage_mask |= guide_passage
        query_mask[own] = False  # the target is never masked
        passage_mask[own] = False
        return query_mask, passage_mask

    def _guide_masks(
        self, guide_embeddings: list[Tensor], batch: GatheredBatch, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Return the guide's ``(query mask (batch, (1 + n) * total), passage mask (batch, total))``."""
        assert self.guide is not None
        columns = [embedding.to(device) for embedding in guide_embeddings]
        queries, positives = columns[0], columns[1]  # (total, guide_dim) each
        own = torch.arange(batch.local_size, device=device), batch.targets(device)
        similarities = cos_sim(queries[batch.local], torch.cat(columns[1:]))  # (batch, (1 + n) * total)
        passage_similarities = cos_sim(positives[batch.local], queries)  # (batch, total)
        return (
            self.guide.mask(similarities, similarities[own]),
            self.guide.mask(passage_similarities, passage_similarities[own]),
        )

    def _isotropy(self, queries: Tensor, positives: Tensor) -> Tensor:
        """Return the weighted uniformity term (0 when its weight is 0); log alignment, uniformity and spread.

        The diagnostics are computed only on the steps the trainer logs (``components.measuring``), and the
        uniformity term only when it is logged or weighted.
        """
        no_term = torch.zeros((), device=queries.device, dtype=queries.dtype)
        measuring = self.components.measuring
        if queries.size(0) < 2 or not (measuring or self.isotropy_weight > 0):  # uniformity needs two a side
            return no_term
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.isotropy_weight > 0):
            uniform = (uniformity(queries.float()) + uniformity(positives.float())) / 2
        if measuring:
            with torch.no_grad():
                self.components.add("alignment", alignment(queries.float(), positives.float()))
                self.components.add("uniformity", uniform)
                self.components.add("embedding_std", mean_dimension_std(torch.cat([queries, positives]).float()))
        return self.isotropy_weight * uniform if self.isotropy_weight > 0 else no_term

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


def hard_negative_log_weights(neg_weights: Tensor, offset: int = 0, num_queries: int | None = None) -> Tensor:
    """Turn per-query hard-negative weights into additive logit offsets.

    Args:
        neg_weights: ``(total, n)`` non-negative weights; entry ``[i, j]`` belongs to query i's j-th hard negative,
            which sits in candidate column ``(1 + j) * total + i``. 0 marks a padding slot.
        offset: First query to return offsets for (this process's first row of a gathered batch).
        num_queries: How many queries from ``offset`` on; ``None`` for all the rest.

    Returns:
        ``(num_queries, (1 + n) * total)`` offsets: ``log w`` on each query's own hard negatives, ``-inf`` on the
        whole column of a padding slot, 0 elsewhere (positives and other queries' negatives keep weight 1).
    """
    total, num_negatives = neg_weights.shape
    num_queries = total - offset if num_queries is None else num_queries
    device = neg_weights.device
    offsets = torch.zeros(num_queries, 1 + num_negatives, total, device=device)
    queries = torch.arange(num_queries, device=device)
    own_rows = queries + offset
    weights = neg_weights.float().T  # (n, total): column j's weight per row
    own_weights = weights[:, own_rows].T.clamp_min(torch.finfo(torch.float32).tiny)  # (num_queries, n)
    offsets[queries, 1:, own_rows] = torch.log(own_weights)
    offsets[:, 1:, :] = offsets[:, 1:, :].masked_fill(weights[None] <= 0, float("-inf"))  # padding slots, no sync
    return offsets.view(num_queries, (1 + num_negatives) * total)
