"""Alignment and uniformity of embeddings (Wang & Isola, arXiv:2005.10242), and the batch's per-dimension spread."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def alignment(queries: Tensor, positives: Tensor, alpha: float = 2.0) -> Tensor:
    """Mean distance between matched pairs, ``E ||f(q) - f(p)||^alpha`` on L2-normalised embeddings.

    Args:
        queries: ``(batch, dim)``.
        positives: ``(batch, dim)``, row i matching query i.
        alpha: Power of the distance (2 in the paper).

    Returns:
        Scalar tensor in ``[0, 2**alpha]``; 0 when every pair coincides.
    """
    return (F.normalize(queries, dim=-1) - F.normalize(positives, dim=-1)).norm(dim=-1).pow(alpha).mean()


def uniformity(embeddings: Tensor, t: float = 2.0) -> Tensor:
    """Log of the mean Gaussian potential over distinct pairs, ``log E exp(-t ||f(x) - f(y)||^2)``.

    Lower is more uniform on the hypersphere; minimising it spreads the embeddings out (more isotropic).

    Args:
        embeddings: ``(n, dim)`` with ``n >= 2``; L2-normalised inside.
        t: Temperature of the potential (2 in the paper).

    Returns:
        Scalar tensor in ``[-4t, 0]``.

    Raises:
        ValueError: if fewer than two embeddings are given.
    """
    if embeddings.size(0) < 2:
        raise ValueError("uniformity needs at least two embeddings")
    squared_distances = torch.pdist(F.normalize(embeddings, dim=-1), p=2).pow(2)  # (n * (n - 1) / 2,)
    return squared_distances.mul(-t).exp().mean().log()


def mean_dimension_std(embeddings: Tensor) -> Tensor:
    """Mean over dimensions of the per-dimension standard deviation of L2-normalised embeddings.

    A collapsed batch (all vectors equal) gives 0; for isotropic unit vectors each dimension's std is about
    ``1 / sqrt(dim)``.

    Args:
        embeddings: ``(n, dim)`` with ``n >= 2``.

    Returns:
        Scalar tensor.
    """
    return F.normalize(embeddings, dim=-1).std(dim=0).mean()
