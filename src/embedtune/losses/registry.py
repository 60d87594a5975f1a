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

COMMON_SETTINGS = ("name", "matryoshka", "matryoshka_dims", "anchor_weight")
"""``loss.*`` settings read for every objective (:func:`~embedtune.losses.objectives.build_loss` wraps any loss in
MatryoshkaLoss and in L2-SP)."""


ROWS = "rows"
"""Data kind: (query, positive(s), optional hard negatives) rows, in-batch negatives from the other rows."""
LABELLED_PAIRS = "labelled_pairs"
"""Data kind: labelled pairs ``{"text1", "text2", "label"}``."""
DATA_KINDS = (ROWS, LABELLED_PAIRS)


@dataclass(frozen=True)
class Objective:
    """One training objective: everything the configuration checks and the training set-up ask about it.

    Attributes:
        builder: ``"module:function"`` of its builder ``(model, loss settings, LossContext) -> nn.Module``.
        settings: The ``loss.*`` settings it reads, besides :data:`COMMON_SETTINGS`; any other setting given a
            non-default value is an error naming it. Reading ``mini_batch_size`` means it has a cached (GradCache)
            variant; reading ``guide`` means it can use a guide model.
        summary: One line for ``loss.name``'s help.
        data: What it trains on: :data:`ROWS` or :data:`LABELLED_PAIRS`.
        pads_negatives: Whether rows with fewer hard negatives than the widest are padded and the padding masked
            through its weights (otherwise they are topped up with negatives of other rows).
        head_mode: Whether ``train.mode: head`` can train with it (from cached embeddings, without the encoder).
        teacher_scores: Whether it trains on teacher scores: each row's label is ``[s⁺, s⁻_1 … s⁻_n]`` from the
            records' ``pos_scores`` / ``neg_scores`` (every record needs them), and ``n`` is the most hard
            negatives any record has (capped), a record with fewer repeating its own (no padding, no borrowed
            negatives: those would have no teacher score).
    """

    builder: str
    settings: tuple[str, ...]
    summary: str
    data: str = ROWS
    pads_negatives: bool = False
    head_mode: bool = True
    teacher_scores: bool = False

    @property
    def pairs(self) -> bool:
        """Whether it trains on labelled pairs rather than (query, positive, negatives) rows."""
        return self.data == LABELLED_PAIRS


_GUIDE = ("guide", "guide_model", "guide_margin", "guide_margin_strategy")

OBJECTIVES: dict[str, Objective] = {
    "infonce": Objective(
        "embedtune.losses.objectives:info_nce",
        ("scale", "symmetric", "mask_false_negatives", *_GUIDE, "isotropy_weight", "mini_batch_size"),
        "weighted, masked, symmetric InfoNCE",
        pads_negatives=True,
    ),
    "mnrl": Objective(
        "embedtune.losses.objectives:mnrl",
        ("scale", "directions", "hardness_mode", "hardness_strength", "mini_batch_size"),
        "sentence-transformers' MultipleNegativesRankingLoss",
    ),
    "margin_mse": Objective(
        "embedtune.losses.objectives:margin_mse",
        ("scale", "teacher_scale"),
        "MarginMSE distillation from teacher scores (pos_scores/neg_scores)",
        teacher_scores=True,
    ),
    "distill_kl": Objective(
        "embedtune.losses.objectives:distill_kl",
        ("scale", "teacher_scale"),
        "KL-divergence distillation from teacher scores (pos_scores/neg_scores)",
        teacher_scores=True,
    ),
    "cosent": Objective(
        "embedtune.losses.objectives:cosent", ("scale",), "CoSENT on labelled pairs", LABELLED_PAIRS, head_mode=False
    ),
    "cosine_mse": Objective(
        "embedtune.losses.objectives:cosine_mse",
        (),
        "MSE of the cosine on labelled pairs",
        LABELLED_PAIRS,
        head_mode=False,
    ),
}
"""Loss name -> :class:`Objective`; every name is a valid ``loss.name``. Add one with :func:`register`."""

DEFAULT_OBJECTIVE = "infonce"
"""``loss.name`` when none is given."""


def register(name: str, objective: Objective) -> None:
    """Add an objective under ``name`` (the configuration accepts it from then on).

    Raises:
        ValueError: if ``name`` is taken or ``objective.data`` is not one of :data:`DATA_KINDS`.
    """
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered")
    if objective.data not in DATA_KINDS:
        raise ValueError(f"objective {name!r}: data must be one of {DATA_KINDS}, got {objective.data!r}")
    OBJECTIVES[name] = objective


def objective_of(config: LossConfig) -> Objective:
    """Return the objective ``config.name`` names.

    Raises:
        KeyError: for an unregistered name (the configuration refuses it before).
    """
    return OBJECTIVES[config.name]


def names(*, head_mode: bool = False) -> tuple[str, ...]:
    """Return the registered names, in registry order; with ``head_mode`` only those that can train a head."""
    return tuple(name for name, objective in OBJECTIVES.items() if objective.head_mode or not head_mode)


def describe() -> str:
    """Return ``'name' (summary), ...`` for every objective, for ``loss.name``'s help."""
    return ", ".join(f"'{name}' ({objective.summary})" for name, objective in OBJECTIVES.items())


def uses_guide(config: LossConfig) -> bool:
    """Whether the objective drops candidates by a guide model's scores (``loss.guide`` on and read)."""
    return reads(config, "guide") and config.guide


def uses_guide_model(config: LossConfig) -> bool:
    """Whether the objective uses a guide model of its own (:func:`uses_guide`, with ``loss.guide_model`` set)."""
    return uses_guide(config) and config.guide_model is not None


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
