"""``train.freeze_encoder_epochs``: train a newly added head alone for a while before the encoder joins in."""

from __future__ import annotations

import logging
from typing import Any

from sentence_transformers import SentenceTransformer
from torch import nn
from transformers import TrainerCallback

from embedtune.models.head import is_head_parameter

logger = logging.getLogger("embedtune.training")

EPOCH_TOLERANCE = 1e-9
"""Slack on the epoch comparison: ``state.epoch`` is a float sum of step fractions."""


class FreezeEncoderCallback(TrainerCallback):
    """Keep the encoder (or its LoRA adapter) frozen for the first ``epochs`` epochs, so only the head learns.

    When training begins (after the optimiser is built, so every parameter keeps its place in its parameter group),
    every parameter before the head that would train gets ``requires_grad=False``: it then receives no gradient, and
    AdamW skips a parameter without a gradient entirely (no update, no weight decay, no moment change), so those
    weights stay bit-identical. The first optimiser step that begins at or after epoch ``epochs`` (``state.epoch``,
    fractional within an epoch) turns them back on. Training that ends while they are frozen turns them back on too,
    leaving the model as it was given.

    Args:
        model: The model being trained: encoder modules, then the head from index ``head_start``.
        head_start: Index of the head's first module in ``model``.
        epochs: How many epochs (may be fractional) the encoder stays frozen; 0 never freezes it.
    """

    def __init__(self, model: SentenceTransformer, head_start: int, epochs: float) -> None:
        self.model = model
        self.head_start = head_start
        self.epochs = epochs
        self._frozen: list[nn.Parameter] = []

    @property
    def frozen(self) -> bool:
        """Whether the encoder is frozen now."""
        return bool(self._frozen)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Freeze every trainable parameter before the head."""
        if self.epochs <= 0:
            return
        self._frozen = [
            parameter
            for name, parameter in self.model.named_parameters()
            if parameter.requires_grad and not is_head_parameter(name, self.model, self.head_start)
        ]
        for parameter in self._frozen:
            parameter.requires_grad_(False)
        count = sum(parameter.numel() for parameter in self._frozen)
        logger.info(
            "Encoder frozen for the first %g epoch(s): %d parameters wait, only the head learns", self.epochs, count
        )
        if state.num_train_epochs and self.epochs >= state.num_train_epochs:
            logger.warning(
                "train.freeze_encoder_epochs=%g covers the whole run (%d epoch(s)): the encoder never trains",
                self.epochs,
                state.num_train_epochs,
            )

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Unfreeze once ``epochs`` epochs have passed."""
        if self._frozen and (state.epoch or 0.0) >= self.epochs - EPOCH_TOLERANCE:
            self._unfreeze()
            logger.info(
                "step %d, epoch %.2f: encoder unfrozen, it trains with the head from now on",
                state.global_step,
                state.epoch,
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Give back the ``requires_grad`` flags taken at the start, if still frozen."""
        self._unfreeze()

    def _unfreeze(self) -> None:
        for parameter in self._frozen:
            parameter.requires_grad_(True)
        self._frozen = []
