"""``train.interpolation``: WiSE-FT's share of the fine-tuning kept (arXiv:2109.01903), parsed and checked."""

from __future__ import annotations

import math

from embedtune.config.values import _require
from embedtune.errors import shorten

INTERPOLATION_NONE, INTERPOLATION_AUTO = "none", "auto"
DEFAULT_INTERPOLATION_GRID = (0.25, 0.5, 0.75, 1.0)


def parse_interpolation(value: str, grid: list[float]) -> str:
    """Return ``train.interpolation`` normalised (``"none"``, ``"auto"`` or a share such as ``"0.5"``).

    Args:
        value: The setting as given.
        grid: ``train.interpolation_grid``, the shares ``auto`` tries.

    Raises:
        ConfigError: naming ``train.interpolation`` for anything but none, auto or a share in (0, 1], or
            ``train.interpolation_grid`` for an empty grid or a share outside (0, 1].
    """
    text = value.strip().lower()
    if text not in (INTERPOLATION_NONE, INTERPOLATION_AUTO):
        try:
            share = float(text)
        except ValueError:
            share = math.nan
        _require(
            0 < share <= 1, "train.interpolation", f"must be none, auto or a share in (0, 1], got {shorten(value)}"
        )
        text = f"{share:g}"
    _require(bool(grid), "train.interpolation_grid", "must hold at least one share")
    _require(all(0 < a <= 1 for a in grid), "train.interpolation_grid", f"shares must be in (0, 1], got {grid}")
    return text


def interpolation_alphas(value: str, grid: list[float]) -> list[float] | None:
    """Return the shares to try on dev: ``None`` for none, ``[a]`` for a fixed share, the sorted grid for auto."""
    if value == INTERPOLATION_NONE:
        return None
    if value == INTERPOLATION_AUTO:
        return sorted(set(grid))
    return [float(value)]
