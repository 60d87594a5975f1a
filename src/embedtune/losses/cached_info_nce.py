"""InfoNCE with gradient caching (GradCache): a large batch in the memory of a mini-batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor

from embedtune.losses.info_nce import InfoNCELoss


class CachedInfoNCELoss(CachedLossMixin, InfoNCELoss):
    """:class:`~embedtune.losses.info_nce.InfoNCELoss` (weighted, masked, symmetric, isotropy) computed with GradCache.

    The batch is embedded in mini-batches without a graph, the loss over the whole batch is back-propagated to the
    embeddings, and each mini-batch is embedded again with a graph to carry those cached gradients into the model
    (sentence-transformers' ``CachedLossMixin`` does the three steps and replays dropout). Loss and gradients equal
    the uncached loss; peak memory is that of one mini-batch plus the batch's embeddings. Across processes (DDP) the
    loss gathers every process's embeddings as the uncached one does, and the gradients the gathered loss sends back
    to this process's embeddings are the ones cached.

    Args:
        model: The SentenceTransformer being trained.
        mini_batch_size: Texts embedded at a time; it bounds memory, not the number of in-batch negatives.
        **kwargs: The settings of :class:`~embedtune.losses.info_nce.InfoNCELoss`.

    References:
        - Gao et al., Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup, arXiv:2101.06983

    Inputs:
        As :class:`~embedtune.losses.info_nce.InfoNCELoss`.
    """

    def __init__(self, model: Any, mini_batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.mini_batch_size = mini_batch_size
        self._guide_embeddings: list[Tensor] | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Run the cached forward pass; the returned loss back-propagates through every mini-batch."""
        sentence_features = list(sentence_features)
        if self.guide is not None:
            self._guide_embeddings = self.guide.embed(sentence_features, self.mini_batch_size)
        return self.forward_cached(sentence_features, labels)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """Loss over the whole batch from the per-mini-batch embeddings ``reps[column][mini_batch]``.

        Args:
            reps: Per column, the ``(mini_batch, dim)`` embeddings of its mini-batches in order.
            labels: As in :meth:`InfoNCELoss.compute_loss_from_embeddings`.
            with_backward: Back-propagate to ``reps`` and return the detached loss.

        Returns:
            Scalar loss tensor.
        """
        embeddings = [torch.cat(column) for column in reps]  # each (batch, dim)
        loss = self.compute_loss_from_embeddings(embeddings, labels, self._guide_embeddings)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Return the settings recorded in the model card."""
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}
