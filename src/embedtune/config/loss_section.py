"""The ``loss`` section: the objective and its settings, checked against the objective registry."""

from __future__ import annotations

from dataclasses import dataclass

from embedtune.config.data_section import _path
from embedtune.config.values import ConfigError, _check_fields, _require, _setting
from embedtune.errors import shorten
from embedtune.losses import registry as objectives
from embedtune.losses.registry import ignored_settings, readers

MARGIN_STRATEGIES = ("absolute", "relative")
MNRL_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
MNRL_HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")


@dataclass
class LossConfig:
    """Training objective (see :mod:`embedtune.losses`). Raises ConfigError (``loss.<key>: ...``) on a bad value."""

    name: str = _setting(
        objectives.DEFAULT_OBJECTIVE,
        f"Objective: {objectives.describe()}.",
    )
    scale: float = _setting(
        20.0, "Inverse temperature: 20 means temperature 0.05 (infonce, mnrl, cosent; the student in distillation)."
    )
    teacher_scale: float = _setting(
        20.0,
        "margin_mse, distill_kl: multiplier of the teacher's scores (20 for cosines, 1 for cross-encoder logits).",
    )
    symmetric: bool = _setting(
        True, "infonce: add the passage-to-query InfoNCE term (mnrl ignores it: its terms are loss.directions)."
    )
    mask_false_negatives: bool = _setting(
        True,
        "infonce: drop from the denominator every candidate that is one of the query's positives (same text, or a "
        "document the qrels mark relevant), wherever it sits in the batch (mnrl ignores it: it masks nothing).",
    )
    guide: bool = _setting(
        False,
        "infonce: also drop candidates the guide model scores above the positive minus guide_margin "
        "(GISTEmbed, arXiv:2402.16829; NV-Retriever, arXiv:2407.15831).",
    )
    guide_model: str | None = _setting(None, "Guide model folder or name; None uses a frozen copy of the base model.")
    guide_margin: float = _setting(0.0, "Margin below the positive's guide similarity above which candidates drop.")
    guide_margin_strategy: str = _setting(
        "absolute", "'absolute' (drop if sim >= pos - margin) or 'relative' (drop if sim >= pos - |pos| * margin)."
    )
    isotropy_weight: float = _setting(
        0.0, "infonce: weight of the uniformity regulariser (Wang & Isola, arXiv:2005.10242); 0 turns it off."
    )
    anchor_weight: float = _setting(
        0.0,
        "L2-SP (arXiv:1802.01483): add anchor_weight * sum ||w - w0||^2 over the encoder weights that train, pulling "
        "them towards the base model's; 0 turns it off (any objective).",
    )
    matryoshka: bool = _setting(False, "Wrap the objective in MatryoshkaLoss over matryoshka_dims (arXiv:2205.13147).")
    matryoshka_dims: list[int] = _setting(
        None,
        "Matryoshka dimensions, capped at the model's dimension (which is always included).",
        default_factory=lambda: [768, 512, 256, 128, 64],
    )
    mini_batch_size: int | None = _setting(
        None,
        "Gradient caching (GradCache, arXiv:2101.06983): embed the batch in mini-batches of this many texts, so a "
        "large batch fits the memory of a small one; None turns it off (infonce, mnrl).",
    )
    directions: list[str] = _setting(
        None,
        f"mnrl: directions of the loss, any of {', '.join(MNRL_DIRECTIONS)}.",
        default_factory=lambda: ["query_to_doc"],
    )
    hardness_mode: str | None = _setting(
        None, f"mnrl: up-weight hard negatives in {', '.join(MNRL_HARDNESS_MODES)}; None turns it off."
    )
    hardness_strength: float = _setting(0.0, "mnrl: strength of hardness_mode (0 = off).")

    def __post_init__(self) -> None:
        _check_fields(self, "loss.")
        known = objectives.names()
        _require(self.name in known, "loss.name", f"must be one of {known}, got {shorten(self.name)}")
        _require(self.scale > 0, "loss.scale", "must be a positive number")
        _require(self.teacher_scale > 0, "loss.teacher_scale", "must be a positive number")
        self.guide_model = None if self.guide_model is None else _path(self.guide_model, "loss.guide_model")
        _require(self.guide_margin >= 0, "loss.guide_margin", "must be >= 0")
        _require(
            self.guide_margin_strategy in MARGIN_STRATEGIES,
            "loss.guide_margin_strategy",
            f"must be one of {MARGIN_STRATEGIES}, got {shorten(self.guide_margin_strategy)}",
        )
        _require(self.isotropy_weight >= 0, "loss.isotropy_weight", "must be >= 0")
        _require(self.anchor_weight >= 0, "loss.anchor_weight", "must be >= 0")
        _require(bool(self.matryoshka_dims), "loss.matryoshka_dims", "must name at least one dimension")
        _require(all(dim > 0 for dim in self.matryoshka_dims), "loss.matryoshka_dims", "must all be > 0")
        _require(self.mini_batch_size is None or self.mini_batch_size > 0, "loss.mini_batch_size", "must be > 0")
        _require(bool(self.directions), "loss.directions", "must name at least one direction")
        for direction in self.directions:
            _require(direction in MNRL_DIRECTIONS, "loss.directions", f"unknown direction {shorten(direction)}")
        _require(
            self.hardness_mode is None or self.hardness_mode in MNRL_HARDNESS_MODES,
            "loss.hardness_mode",
            f"must be one of {MNRL_HARDNESS_MODES} or none, got {shorten(self.hardness_mode)}",
        )
        _require(self.hardness_strength >= 0, "loss.hardness_strength", "must be >= 0")
        _check_objective_reads(self)

    @property
    def uses_pairs(self) -> bool:
        """Whether the objective trains on labelled pairs rather than (query, positive, negatives) records."""
        return objectives.objective_of(self).pairs


def _check_objective_reads(loss: LossConfig) -> None:
    """Refuse a setting given a non-default value that the chosen objective does not read (see the registry)."""
    ignored = ignored_settings(loss)
    if ignored:
        key = ignored[0]
        read_by = ", ".join(readers(key)) or "no objective"
        also = f"; also ignored: {', '.join(f'loss.{k}' for k in ignored[1:])}" if ignored[1:] else ""
        raise ConfigError(
            f"loss.{key}: not used by loss.name {loss.name} (read by {read_by}); remove the setting or choose an "
            f"objective that reads it{also}"
        )
