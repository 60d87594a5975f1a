"""Training objectives, chosen by name (``loss.name``) from the registry, optionally wrapped in MatryoshkaLoss.

========== ======================================================================= ================================
name       objective                                                               data
========== ======================================================================= ================================
infonce    :class:`InfoNCELoss` (weighted hard negatives, false-negative masking,  (query, positive, negatives)
           guide, symmetric, isotropy); :class:`CachedInfoNCELoss` with
           ``mini_batch_size``
mnrl       sentence-transformers' ``MultipleNegativesRankingLoss`` (``directions``, (query, positive, negatives)
           ``hardness_mode``), its cached variant with ``mini_batch_size``; no
           false-negative masking, guide or isotropy, and one-directional unless
           ``directions`` says otherwise (``symmetric`` does not apply)
cosent     sentence-transformers' ``CoSENTLoss``                                   labelled pairs
cosine_mse sentence-transformers' ``CosineSimilarityLoss`` (MSE of the cosine)     labelled pairs
========== ======================================================================= ================================

The registry (:data:`~embedtune.losses.registry.OBJECTIVES`) names each objective's builder and the ``loss.*``
settings it reads; the configuration refuses any other setting set away from its default. Importing this package
imports no torch: :func:`build_loss`, :class:`LossContext` and :func:`builder_of` load
:mod:`embedtune.losses.objectives` on first use.
"""

from __future__ import annotations

from typing import Any

from embedtune.losses.registry import COMMON_SETTINGS, OBJECTIVES, Objective, ignored_settings, readers, reads

__all__ = [
    "COMMON_SETTINGS",
    "OBJECTIVES",
    "LossContext",
    "Objective",
    "build_loss",
    "builder_of",
    "ignored_settings",
    "matryoshka_dims",
    "readers",
    "reads",
]

_LAZY = ("LossContext", "build_loss", "builder_of")  # from embedtune.losses.objectives, which imports torch


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        # torch: only when a loss is built, so reading the registry stays light
        from embedtune.losses import objectives

        return getattr(objectives, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
