"""Weight-space interpolation of a fine-tuned model with its base: WiSE-FT (Wortsman et al., arXiv:2109.01903).

The interpolated model is ``(1 − α)·base + α·fine-tuned``, tensor by tensor. Fine-tuning gains that only memorise the
training documents fade first as α falls, while the base model's general matching comes back; a dev evaluation
per α (see :mod:`embedtune.training.interpolation`) says where the balance lies for a data set.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

LORA_UP_PROJECTION = "lora_B"
"""Name part of a PEFT LoRA layer's up-projection ``B``; the adapter adds ``(lora_alpha / rank) · B A`` to a weight."""


def interpolate_weights(base: nn.Module, tuned: nn.Module, alpha: float) -> nn.Module:
    """Return a copy of ``tuned`` whose weights lie a share ``alpha`` of the way from ``base`` to ``tuned``.

    * A floating-point tensor of ``tuned`` with a tensor of the same name and shape in ``base`` becomes
      ``(1 − α)·base + α·tuned``.
    * A LoRA adapter's up-projection (``lora_B``) is scaled by ``α``, so the adapter adds ``α·ΔW``: after merging,
      exactly the interpolation of the merged weights (the adapted layers' own weights are frozen at the base's).
    * Anything else (an added projection head, integer buffers) is kept as trained: a head has no base counterpart.

    Args:
        base: The untouched base model (e.g. a ``SentenceTransformer``).
        tuned: The fine-tuned model with the same encoder architecture (possibly with a LoRA adapter or a head).
        alpha: Share of the fine-tuning kept, in ``[0, 1]``: 0 gives the base's encoder weights, 1 a copy of
            ``tuned``.

    Returns:
        A new module (``tuned`` and ``base`` are left unchanged), on ``tuned``'s device.

    Raises:
        ValueError: if ``alpha`` is outside ``[0, 1]``, or if no tensor of ``tuned`` matches ``base`` and it carries
            no LoRA adapter (the two models do not share an architecture).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base_tensors = base.state_dict()
    mixed = copy.deepcopy(tuned)
    interpolated = scaled = kept = 0
    with torch.no_grad():
        for name, tensor in mixed.state_dict(keep_vars=True).items():
            if not torch.is_floating_point(tensor):
                continue
            if LORA_UP_PROJECTION in name.split("."):
                tensor.mul_(alpha)
                scaled += 1
                continue
            other = base_tensors.get(name)
            if other is None or other.shape != tensor.shape:
                kept += 1
                continue
            tensor.lerp_(other.to(device=tensor.device, dtype=tensor.dtype), 1.0 - alpha)
            interpolated += 1
    if interpolated == 0 and scaled == 0:
        raise ValueError("no weight of the fine-tuned model matches the base model: they do not share an architecture")
    logger.debug(
        "WiSE-FT α=%g: %d tensors interpolated, %d LoRA up-projections scaled, %d kept",
        alpha,
        interpolated,
        scaled,
        kept,
    )
    return mixed
