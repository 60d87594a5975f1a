"""The sections that pick how a run trains: LoRA adapters, a projection head, and a curriculum over phases."""

from __future__ import annotations

from dataclasses import dataclass

from embedtune.config.values import _check_fields, _require, _setting


@dataclass(frozen=True)
class Mode:
    """One value of ``train.mode``, declared without importing torch: what the configuration checks need.

    Attributes:
        trainer: ``"module:Class"`` of its :class:`embedtune.training.mode.TrainingMode`, imported when a run starts.
        summary: One line for ``train.mode``'s help.
        frozen_encoder: The encoder never trains (the model always ends in a head; ``train.freeze_encoder_epochs``
            and ``head.add`` mean nothing).
        cached_embeddings: It trains from cached encoder embeddings: only objectives that allow it, no Matryoshka
            loss, no curriculum.
        adapter: A run leaves ``adapter/`` beside ``model/``; exporting it needs ``--merge``.
        learning_rate: ``train.learning_rate`` when the configuration leaves it unset: the peak rate of what trains
            besides a head (the encoder, or its adapters).
    """

    trainer: str
    summary: str
    frozen_encoder: bool = False
    cached_embeddings: bool = False
    adapter: bool = False
    learning_rate: float = 2e-5


TRAIN_MODES: dict[str, Mode] = {
    "full": Mode("embedtune.training.mode:FullMode", "every encoder weight"),
    # LoRA's B matrices start at zero: at a full fine-tune's 2e-5 an adapter barely moves in a few hundred steps
    # (SciFact dev +0.0009 against +0.0088 at 2e-4, docs/benchmarks.md, issue 22).
    "lora": Mode("embedtune.training.mode:LoraMode", "LoRA adapters, see lora.*", adapter=True, learning_rate=2e-4),
    "head": Mode(
        "embedtune.training.mode:HeadMode",
        "a projection head on the frozen encoder, trained from cached embeddings, see head.*",
        frozen_encoder=True,
        cached_embeddings=True,
    ),
}
"""``train.mode`` name -> :class:`Mode`. Add one with :func:`register_mode`."""


def register_mode(name: str, mode: Mode) -> None:
    """Add a training mode under ``name`` (``train.mode`` accepts it from then on).

    Raises:
        ValueError: if ``name`` is taken.
    """
    if name in TRAIN_MODES:
        raise ValueError(f"training mode {name!r} is already registered")
    TRAIN_MODES[name] = mode


def describe_modes() -> str:
    """Return ``'name' (summary), ...`` for every mode, for ``train.mode``'s help."""
    return ", ".join(f"'{name}' ({mode.summary})" for name, mode in TRAIN_MODES.items())


HEAD_ACTIVATIONS = ("tanh", "relu", "gelu", "identity")
CURRICULUM_SOURCES = ("auto", "phase", "difficulty")


@dataclass
class LoraConfig:
    """LoRA adapters for ``train.mode: lora`` (Hu et al., arXiv:2106.09685). Raises ConfigError on a bad value."""

    rank: int = _setting(8, "LoRA rank r of the update B·A.")
    alpha: float = _setting(16.0, "LoRA alpha: the update is scaled by alpha / rank.")
    dropout: float = _setting(0.1, "Dropout on the LoRA branch's input.")
    target_modules: list[str] | None = _setting(
        None, "Module names that get adapters; None detects the attention projections of the architecture."
    )

    def __post_init__(self) -> None:
        _check_fields(self, "lora.")
        _require(self.rank > 0, "lora.rank", "must be > 0")
        _require(self.alpha > 0, "lora.alpha", "must be > 0")
        _require(0 <= self.dropout < 1, "lora.dropout", "must be in [0, 1)")
        _require(self.target_modules is None or len(self.target_modules) > 0, "lora.target_modules", "empty list")


@dataclass
class HeadConfig:
    """A projection head on the encoder's pooled output, saved as sentence-transformers Dense + Normalize modules."""

    dim: int = _setting(256, "Output dimension of the head.")
    layers: int = _setting(1, "1 = linear projection, 2 = MLP (hidden layer of the encoder's width + activation).")
    activation: str = _setting("tanh", "Activation of the MLP's hidden layer: tanh, relu, gelu or identity.")
    add: bool = _setting(
        False, "Add the head in train.mode full or lora too (train.mode head always has one, on a frozen encoder)."
    )

    def __post_init__(self) -> None:
        _check_fields(self, "head.")
        _require(self.dim > 0, "head.dim", "must be > 0")
        _require(self.layers in (1, 2), "head.layers", "must be 1 or 2")
        _require(self.activation in HEAD_ACTIVATIONS, "head.activation", f"must be one of {HEAD_ACTIVATIONS}")


@dataclass
class CurriculumConfig:
    """Training phase by phase, easy to hard. Raises ConfigError (``curriculum.<key>: ...``) on a bad value."""

    enabled: bool = _setting(False, "Train phase by phase in the order of curriculum.phases (train.epochs ignored).")
    source: str = _setting(
        "auto",
        "Where an example's phase comes from: 'phase' (the record's phase field), 'difficulty' (its mined scores: "
        "hardest negative minus best positive), or 'auto' (phase fields when every record has one).",
    )
    phases: list[str] = _setting(
        None, "Phase names in training order.", default_factory=lambda: ["easy", "medium", "hard"]
    )
    thresholds: list[float] | None = _setting(
        None, "Difficulty cut points between phases (one fewer than phases); None makes equal-size phases."
    )
    epochs_per_phase: float = _setting(1.0, "Passes over each phase's examples before the next phase starts.")

    def __post_init__(self) -> None:
        _check_fields(self, "curriculum.")
        _require(self.source in CURRICULUM_SOURCES, "curriculum.source", f"must be one of {CURRICULUM_SOURCES}")
        _require(len(self.phases) >= 1, "curriculum.phases", "must name at least one phase")
        _require(len(set(self.phases)) == len(self.phases), "curriculum.phases", "must not repeat a phase")
        if self.thresholds is not None:
            _require(
                len(self.thresholds) == len(self.phases) - 1,
                "curriculum.thresholds",
                f"needs {len(self.phases) - 1} values for {len(self.phases)} phases",
            )
            _require(self.thresholds == sorted(self.thresholds), "curriculum.thresholds", "must be increasing")
        _require(self.epochs_per_phase > 0, "curriculum.epochs_per_phase", "must be > 0")
