"""L2-SP: anchor the encoder's weights to where fine-tuning started (Li, Grandvalet & Davoine, arXiv:1802.01483).

Weight decay pulls every weight towards 0, which for a pre-trained encoder means away from what it knows. L2-SP pulls
towards the starting point instead: the objective gains ``anchor_weight · Σ ‖w − w₀‖²`` over the encoder weights
that train, so fine-tuning moves the encoder only as far as the task pays for, keeping more of the base model's
general matching for documents and queries unlike the training ones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from embedtune.losses.components import LossComponents


class L2SPLoss(nn.Module):
    """Add ``anchor_weight · Σ ‖w − w₀‖²`` over the trainable encoder weights to an objective.

    Args:
        model: The model being trained; ``model[0]`` is its encoder. Its parameters that require gradients when the
            loss is built (all of them in full fine-tuning, the adapter's with LoRA) are anchored to their current
            values; an added projection head is not (it has no starting point worth keeping).
        loss: The objective, called as ``loss(features, labels)``.
        anchor_weight: Strength ``> 0`` of the pull (per squared unit of weight change).

    Inputs:
        Whatever ``loss`` takes; the penalty needs no data.

    Logged parts (:attr:`components`, shared with ``loss`` when it has them): ``anchor_penalty`` (the added term) and
    ``anchor_drift`` (``sqrt(Σ ‖w − w₀‖²)``, the encoder's distance from its start).

    Raises:
        ValueError: if ``anchor_weight`` is not positive or the encoder has no trainable weight.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, anchor_weight: float) -> None:
        super().__init__()
        if anchor_weight <= 0:
            raise ValueError(f"anchor_weight must be > 0, got {anchor_weight}")
        self.loss = loss
        self.model = model
        self.anchor_weight = anchor_weight
        encoder = model[0] if isinstance(model, nn.Sequential) else model
        self._anchored = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
        if not self._anchored:
            raise ValueError("L2-SP needs encoder weights that train; this model's encoder is frozen")
        self._start = [parameter.detach().clone() for parameter in self._anchored]
        self.components = getattr(loss, "components", None) or LossComponents()

    def squared_drift(self) -> Tensor:
        """Return ``Σ ‖w − w₀‖²`` over the anchored weights: a scalar tensor on the weights' device."""
        if self._start[0].device != self._anchored[0].device:  # the trainer moved the model after the loss was built
            self._start = [start.to(parameter.device) for parameter, start in self._pairs()]
        terms = [(parameter - start).pow(2).sum() for parameter, start in self._pairs()]
        return torch.stack(terms).sum()

    def forward(self, sentence_features: Any, labels: Tensor) -> Tensor:
        """Return the objective's scalar loss plus the anchor term."""
        squared = self.squared_drift()
        penalty = self.anchor_weight * squared
        self.components.add("anchor_penalty", penalty)
        if self.components.measuring:
            self.components.add("anchor_drift", squared.detach().sqrt())
        return self.loss(sentence_features, labels) + penalty

    def _pairs(self) -> list[tuple[Tensor, Tensor]]:
        return list(zip(self._anchored, self._start, strict=True))
