"""The builders of the objectives in :data:`embedtune.losses.registry.OBJECTIVES`, and :func:`build_loss`.

:func:`build_loss` picks the builder by ``loss.name`` and wraps the loss in MatryoshkaLoss when asked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sentence_transformers.sentence_transformer import losses as st_losses
from torch import nn

from embedtune.losses import matryoshka_dims
from embedtune.losses.anchor import L2SPLoss
from embedtune.losses.cached_info_nce import CachedInfoNCELoss
from embedtune.losses.distillation import MarginMSE, distill_kl_div
from embedtune.losses.distributed import is_multi_process
from embedtune.losses.false_negatives import FalseNegativeTable
from embedtune.losses.guide import GuideModel
from embedtune.losses.info_nce import InfoNCELoss
from embedtune.losses.registry import OBJECTIVES

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


Builder = Callable[["SentenceTransformer", "LossConfig", LossContext], nn.Module]


def info_nce(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    """:class:`InfoNCELoss`, or :class:`CachedInfoNCELoss` with ``loss.mini_batch_size``."""
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


def mnrl(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    """sentence-transformers' MultipleNegativesRankingLoss (its cached variant with ``loss.mini_batch_size``)."""
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


def cosent(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    """sentence-transformers' CoSENTLoss."""
    return st_losses.CoSENTLoss(model, scale=config.scale)


def cosine_mse(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    """sentence-transformers' CosineSimilarityLoss (MSE of the cosine)."""
    return st_losses.CosineSimilarityLoss(model)


def margin_mse(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    """MarginMSE on teacher scores (:class:`~embedtune.losses.distillation.MarginMSE`, arXiv:2010.02666)."""
    return MarginMSE(model, scale=config.scale, teacher_scale=config.teacher_scale)


def distill_kl(model: SentenceTransformer, config: LossConfig, context: LossContext) -> nn.Module:
    """KL divergence to the teacher's softmax (:func:`~embedtune.losses.distillation.distill_kl_div`)."""
    return distill_kl_div(model, scale=config.scale, teacher_scale=config.teacher_scale)


def builder_of(name: str) -> Builder:
    """Return the builder ``(model, loss settings, context) -> nn.Module`` of the registered objective ``name``.

    Raises:
        ValueError: if the name is not registered in :data:`~embedtune.losses.registry.OBJECTIVES`.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"loss.name: unknown loss {name!r}; known: {', '.join(sorted(OBJECTIVES))}")
    module, function = OBJECTIVES[name].builder.split(":")
    return getattr(importlib.import_module(module), function)


def build_loss(model: SentenceTransformer, config: LossConfig, context: LossContext | None = None) -> nn.Module:
    """Build the objective named by ``config.name`` for ``model``, wrapped in MatryoshkaLoss and L2-SP when asked.

    Args:
        model: The model being trained.
        config: The loss settings.
        context: The false-negative table and guide model, when the settings use them.

    Returns:
        The loss module the trainer calls with ``(features, labels)``.

    Raises:
        ValueError: if the name is not registered in :data:`~embedtune.losses.registry.OBJECTIVES`.
    """
    loss = builder_of(config.name)(model, config, context or LossContext())
    if config.matryoshka:
        dims = matryoshka_dims(config.matryoshka_dims, model.get_embedding_dimension())
        loss = st_losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    if config.anchor_weight > 0:
        loss = L2SPLoss(model, loss, config.anchor_weight)
    return loss
