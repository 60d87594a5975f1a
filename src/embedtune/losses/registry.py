"""The registry of training objectives: each name with its builder, the ``loss.*`` settings it reads and its data.

Reading the registry imports no torch: the configuration checks against it (a setting the chosen objective does not
read is refused when set away from its default, :func:`ignored_settings`), and the builder is imported only when a
loss is built (:func:`embedtune.losses.objectives.build_loss`). Adding an objective is one module with its builder
plus one entry in :data:`OBJECTIVES`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedtune.config import LossConfig

COMMON_SETTINGS = ("name", "matryoshka", "matryoshka_dims")
"""``loss.*`` settings read for every objective (:func:`~embedtune.losses.objectives.build_loss` wraps any loss)."""


@dataclass(frozen=True)
class Objective:
    """One training objective.

    Attributes:
        builder: ``"module:function"`` of its builder ``(model, loss settings, LossContext) -> nn.Module``.
        settings: The ``loss.*`` settings it reads, besides :data:`COMMON_SETTINGS`; any other setting given a
            non-default value is an error naming it.
        pairs: Whether it trains on labelled pairs ``{"text1", "text2", "label"}`` rather than (query, positive,
            negatives) rows.
    """

    builder: str
    settings: tuple[str, ...]
    pairs: bool = False


_GUIDE = ("guide", "guide_model", "guide_margin", "guide_margin_strategy")

OBJECTIVES: dict[str, Objective] = {
    "infonce": Objective(
        "embedtune.losses.objectives:info_nce",
        ("scale", "symmetric", "mask_false_negatives", *_GUIDE, "isotropy_weight", "mini_batch_size"),
    ),
    "mnrl": Objective(
        "embedtune.losses.objectives:mnrl",
        ("scale", "directions", "hardness_mode", "hardness_strength", "mini_batch_size"),
    ),
    "cosent": Objective("embedtune.losses.objectives:cosent", ("scale",), pairs=True),
    "cosine_mse": Objective("embedtune.losses.objectives:cosine_mse", (), pairs=True),
}
"""Loss name -> :class:`Objective`; every name is a valid ``loss.name``."""


def reads(config: LossConfig, setting: str) -> bool:
    """Whether the objective ``config.name`` reads ``loss.<setting>`` (``False`` for an unknown objective)."""
    objective = OBJECTIVES.get(config.name)
    return objective is not None and (setting in COMMON_SETTINGS or setting in objective.settings)


def readers(setting: str) -> list[str]:
    """Return the objectives that read ``loss.<setting>``, in registry order."""
    return [name for name, objective in OBJECTIVES.items() if setting in objective.settings]


def ignored_settings(config: LossConfig) -> list[str]:
    """Return the settings given a non-default value that the objective ``config.name`` does not read.

    A default that does not apply is not listed (e.g. ``loss.symmetric``, on by default, under ``mnrl``).

    Returns:
        Setting names (without ``loss.``), in the order of the settings; empty for an unknown objective.
    """
    if config.name not in OBJECTIVES:
        return []
    return [
        field.name
        for field in dataclasses.fields(config)
        if not reads(config, field.name) and getattr(config, field.name) != _default(field)
    ]


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default
