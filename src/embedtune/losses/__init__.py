"""Training objectives, chosen by name (``loss.name``) from :data:`LOSSES`, optionally wrapped in MatryoshkaLoss.

========== ======================================================================= ================================
name       objective                                                               data
========== ======================================================================= ================================
infonce    :class:`InfoNCELoss` (weighted hard negatives, false-negative masking,  (query, positive, negatives)
           guide, symmetric, isotropy); :class:`CachedInfoNCELoss` with
           ``mini_batch_size``
mnrl       sentence-transformers' ``MultipleNegativesRankingLoss`` (``directions``, (query, positive, negatives)
           ``hardness_mode``), its cached variant with ``mini_batch_size``
cosent     sentence-transformers' ``CoSENTLoss``                                   labelled pairs
cosine_mse sentence-transformers' ``CosineSimilarityLoss`` (MSE of the cosine)     labelled pairs
========== ======================================================================= ================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sentence_transformers.sentence_transformer import losses as st_losses
from torch import nn

from embedtune.losses.cached_info_nce import CachedInfoNCELoss
from embedtune.losses.distributed import is_multi_process
from embedtune.losses.false_negatives import FalseNegativeTable
from embedtune.losses.guide import GuideModel
from embedtune.losses.info_nce import InfoNCELoss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedtune.config import LossConfig


@dataclass
class LossContext:
    """What a loss may need beyond the model and its settings.

    Attributes:
        false_negatives: The training rows' false-negative table (for ``loss.mask_false_negatives``).
        guide: The guide model for ``loss.guide``; ``None`` uses a frozen copy of the base model.
    """

    false_negatives: FalseNegativeTable | None = None
    guide: SentenceTransformer | None = None


def _info_nce(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    settings = {
        "scale": config.scale,
        "symmetric": config.symmetric,
        "false_negatives": context.false_negatives if config.mask_false_negatives else None,
        "guide": GuideModel(model, context.guide, config.guide_margin, config.guide_margin_strategy)
        if config.guide
        else None,
        "isotropy_weight": config.isotropy_weight,
    }
    if config.mini_batch_size:
        return CachedInfoNCELoss(model, mini_batch_size=config.mini_batch_size, **settings)
    return InfoNCELoss(model, **settings)


def _mnrl(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    # Several processes (torchrun, accelerate launch): in-batch negatives from every process's batch, as InfoNCELoss.
    settings = {
        "scale": config.scale,
        "directions": tuple(config.directions),
        "gather_across_devices": is_multi_process(),
    }
    if config.hardness_mode is not None:
        settings |= {"hardness_mode": config.hardness_mode, "hardness_strength": config.hardness_strength}
    if config.mini_batch_size:
        return st_losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **settings)
    return st_losses.MultipleNegativesRankingLoss(model, **settings)


def _cosent(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    return st_losses.CoSENTLoss(model, scale=config.scale)


def _cosine_mse(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    return st_losses.CosineSimilarityLoss(model)


LOSSES: dict[str, Callable[[SentenceTransformer, LossConfig, LossContext], nn.Module]] = {
    "infonce": _info_nce,
    "mnrl": _mnrl,
    "cosent": _cosent,
    "cosine_mse": _cosine_mse,
}
"""Loss name -> builder ``(model, loss settings, context) -> nn.Module``; every name is a valid ``loss.name``."""


def build_loss(model: SentenceTransformer, config: LossConfig, context: LossContext | None = None) -> nn.Module:
    """Build the objective named by ``config.name`` for ``model``, wrapped in MatryoshkaLoss when asked.

    Args:
        model: The model being trained.
        config: The loss settings.
        context: The false-negative table and guide model, when the settings use them.

    Returns:
        The loss module the trainer calls with ``(features, labels)``.

    Raises:
        ValueError: if the name is not registered in :data:`LOSSES`.
    """
    try:
        builder = LOSSES[config.name]
    except KeyError:
        raise ValueError(f"loss.name: unknown loss {config.name!r}; known: {', '.join(sorted(LOSSES))}") from None
    loss = builder(model, config, context or LossContext())
    if config.matryoshka:
        dims = matryoshka_dims(config.matryoshka_dims, model.get_embedding_dimension())
        loss = st_losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    return loss


def matryoshka_dims(requested: list[int], model_dim: int | None) -> list[int]:
    """Return the Matryoshka dimensions to train: ``requested`` capped at the model's dimension, always included.

    Args:
        requested: Dimensions from ``loss.matryoshka_dims`` (e.g. 768, 512, 256, 128, 64).
        model_dim: The model's embedding dimension, or ``None`` when unknown.

    Returns:
        Distinct dimensions, largest first; e.g. ``[384, 256, 128, 64]`` for a 384-d model.
    """
    if model_dim is None:
        return sorted(set(requested), reverse=True)
    return sorted({dim for dim in requested if dim < model_dim} | {model_dim}, reverse=True)
