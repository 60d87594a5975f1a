"""Training objectives, chosen by name (``loss.name``) from :data:`LOSSES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from embedtune.losses.info_nce import InfoNCELoss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedtune.config import LossConfig


def _info_nce(model: SentenceTransformer, config: LossConfig) -> nn.Module:
    return InfoNCELoss(model, scale=config.scale, symmetric=config.symmetric)


LOSSES: dict[str, Callable[[SentenceTransformer, LossConfig], nn.Module]] = {"infonce": _info_nce}
"""Loss name -> builder ``(model, loss settings) -> nn.Module``; every name is a valid ``loss.name``."""


def build_loss(model: SentenceTransformer, config: LossConfig) -> nn.Module:
    """Build the objective named by ``config.name`` for ``model``.

    Raises:
        ValueError: if the name is not registered in :data:`LOSSES`.
    """
    try:
        builder = LOSSES[config.name]
    except KeyError:
        raise ValueError(f"loss.name: unknown loss {config.name!r}; known: {', '.join(sorted(LOSSES))}") from None
    return builder(model, config)
