"""The sections of a run's configuration (model, data, loss, train, eval), each validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from embedtune.config.data_section import MAX_SEED, DataConfig, _path
from embedtune.config.interpolation import (
    DEFAULT_INTERPOLATION_GRID,
    INTERPOLATION_NONE,
    interpolation_alphas,
    parse_interpolation,
)
from embedtune.config.loss_section import LossConfig
from embedtune.config.metric_names import DEFAULT_METRICS, parse_metric
from embedtune.config.modes import TRAIN_MODES, CurriculumConfig, HeadConfig, LoraConfig, Mode, describe_modes
from embedtune.config.values import ConfigError, _check_fields, _require, _setting
from embedtune.errors import shorten
from embedtune.losses import registry as objectives

DEFAULT_MODE = "full"
REPORT_TARGETS = ("tensorboard", "mlflow")
"""What ``train.report_to`` may name."""
MAX_NAME_CHARS, MAX_NAME_BYTES = 100, 200  # the run folder <YYYYmmdd-HHMMSS>-<name> must fit the OS's 255 bytes


def _check_metric(name: str, key: str) -> None:
    try:
        parse_metric(name)
    except ValueError as error:
        raise ConfigError(f"{key}: {error if len(name) <= 80 else f'unsupported metric {shorten(name)}'}") from None


def _check_name(name: str, key: str = "name") -> None:
    _require(
        bool(name.strip()) and name not in (".", ".."), key, f"must not be empty, '.' or '..', got {shorten(name)}"
    )
    bad = any(char in "/\\" or ord(char) < 32 or 127 <= ord(char) < 160 for char in name)
    _require(not bad, key, f"must not contain '/', '\\' or control characters, got {shorten(name)}")
    _require(len(name) <= MAX_NAME_CHARS, key, f"must be at most {MAX_NAME_CHARS} characters, got {len(name)}")
    try:
        size = len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise ConfigError(f"{key}: must be valid Unicode text, got {shorten(name)}") from None
    _require(size <= MAX_NAME_BYTES, key, f"must be at most {MAX_NAME_BYTES} bytes in UTF-8, got {size}")


@dataclass
class ModelConfig:
    """Which model to fine-tune and how it reads text. Raises ConfigError (``model.<key>: ...``) on a bad value."""

    name_or_path: str = _setting("all-MiniLM-L6-v2", "Model folder or name (all-MiniLM-L6-v2 resolves offline).")
    query_prefix: str = _setting("", "Prepended to every query, e.g. 'query: ' for E5.")
    passage_prefix: str = _setting("", "Prepended to every passage, e.g. 'passage: ' for E5.")
    max_seq_length: int | None = _setting(None, "Truncation length in tokens; None keeps the model's setting.")

    def __post_init__(self) -> None:
        _check_fields(self, "model.")
        self.name_or_path = _path(self.name_or_path, "model.name_or_path")  # expands only a leading ~
        _require(self.max_seq_length is None or self.max_seq_length > 0, "model.max_seq_length", "must be > 0")


@dataclass
class TrainConfig:
    """Optimisation and checkpoint selection. Raises ConfigError (``train.<key>: ...``) on a bad value."""

    mode: str = _setting(DEFAULT_MODE, f"What trains: {describe_modes()}.")
    epochs: float = _setting(4.0, "Passes over the training pairs (ignored when max_steps > 0).")
    max_steps: int = _setting(-1, "Stop after this many optimiser steps; -1 uses epochs.")
    batch_size: int = _setting(32, "Pairs per batch; every other pair's passage is an in-batch negative.")
    learning_rate: float | None = _setting(
        None,
        "Peak AdamW learning rate of the encoder or its LoRA adapters; none: the mode's own (full and head 2e-5, "
        "lora 2e-4).",
    )
    head_learning_rate: float = _setting(
        1e-3, "Peak learning rate of a projection head (it starts near the encoder's ranking and needs far more)."
    )
    freeze_encoder_epochs: float = _setting(
        0.0, "With head.add: train the head alone for this many epochs, then the encoder (or LoRA) too."
    )
    weight_decay: float = _setting(0.01, "AdamW decoupled weight decay.")
    warmup_ratio: float = _setting(0.1, "Share of steps with linear warm-up.")
    lr_scheduler: str = _setting("linear", "Decay after warm-up: 'linear' or 'cosine'.")
    max_grad_norm: float = _setting(1.0, "Gradient clipping norm; 0 disables clipping.")
    seed: int = _setting(42, "Seed of initialisation-free randomness: shuffling, dropout.")
    dropout: float | None = _setting(
        0.0,
        "Dropout probability of every dropout layer of the encoder while it trains (attention and hidden alike; "
        "LoRA's own is lora.dropout); none keeps the model's own (0.1 for BERT-style models). 0 lets the CPU's "
        "fused attention kernel run: 1.65x faster training on a 2-core CPU, level on SciFact's dev over two seeds "
        "(docs/benchmarks.md). The saved config.json keeps the model's values.",
    )
    gradient_checkpointing: bool = _setting(False, "Recompute activations in backward to save memory.")
    precision: str = _setting(
        "auto",
        "'auto' (bf16/fp16 autocast on CUDA; bf16 autocast on CPUs with AVX512-BF16 or AMX, else fp32), 'fp32', "
        "'fp16' (CUDA only) or 'bf16'.",
    )
    group_by_length: bool = _setting(
        False,
        "Batch rows of similar length (sorted within shuffled windows of 32 batches), keeping the no-duplicates "
        "rule: less padding, so faster steps where text lengths vary; batches are less random.",
    )
    dataloader_workers: int | None = _setting(
        None,
        "Processes that tokenise the next batches while the model trains; none (auto): up to 4 with a CUDA GPU, 0 "
        "on a CPU, where the model's own threads need the cores (measured slower with workers on 2 cores).",
    )
    eval_strategy: str = _setting("epoch", "When to evaluate on dev: 'epoch' or 'steps'.")
    eval_steps: int | None = _setting(None, "Evaluate every this many steps when eval_strategy is 'steps'.")
    primary_metric: str = _setting("ndcg@10", "Dev metric that picks the best checkpoint.")
    selection_alpha: float | None = _setting(
        0.05,
        "The best checkpoint replaces the base model only if a paired randomisation test over the dev queries (on the "
        "whole dev corpus) finds it better at this level; none drops the test.",
    )
    selection_min_delta: float = _setting(
        0.0, "...and only if its mean dev gain of the primary metric is larger than this (0: any gain)."
    )
    interpolation: str = _setting(
        INTERPOLATION_NONE,
        "WiSE-FT (arXiv:2109.01903): ship (1 - a)*base + a*fine-tuned weights. 'none', a share a in (0, 1], or "
        "'auto': the a of interpolation_grid best on the whole dev corpus (ties to the smaller a); each a costs one "
        "dev evaluation, no training. A LoRA adapter is scaled by a; an added head is kept as trained.",
    )
    interpolation_grid: list[float] = _setting(
        None, "The shares train.interpolation=auto tries.", default_factory=lambda: list(DEFAULT_INTERPOLATION_GRID)
    )
    logging_steps: int = _setting(5, "Log loss, learning rate and grad norm every this many steps.")
    report_to: list[str] = _setting(
        None,
        "Where training logs go: 'tensorboard' (the run folder's tensorboard/) and/or 'mlflow' (transformers' "
        "MLflow callback; experiment: the study, else 'embedtune'; pip install 'embedtune[mlflow]').",
        default_factory=lambda: ["tensorboard"],
    )
    mlflow_tracking_uri: str | None = _setting(
        None,
        "MLflow tracking URI with report_to mlflow; none: $MLFLOW_TRACKING_URI, else sqlite:///<runs_dir>/mlflow.db.",
    )
    log_module_grad_norms: bool = _setting(
        False, "Also log each module's gradient norm to TensorBoard every logging_steps (opt-in)."
    )
    log_grad_histograms: bool = _setting(
        False, "Also log gradient histograms to TensorBoard every logging_steps (opt-in; slower)."
    )

    def __post_init__(self) -> None:
        _check_fields(self, "train.")
        _require(self.epochs > 0 or self.max_steps > 0, "train.epochs", "must be > 0 (or set train.max_steps)")
        _require(self.max_steps == -1 or self.max_steps > 0, "train.max_steps", "must be -1 or > 0")
        _require(self.batch_size >= 2, "train.batch_size", "must be >= 2 for in-batch negatives")
        _require(self.mode in TRAIN_MODES, "train.mode", f"must be one of {', '.join(TRAIN_MODES)}")
        if self.learning_rate is None:
            self.learning_rate = TRAIN_MODES[self.mode].learning_rate
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        _require(self.head_learning_rate > 0, "train.head_learning_rate", "must be > 0")
        _require(self.freeze_encoder_epochs >= 0, "train.freeze_encoder_epochs", "must be >= 0")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(0 <= self.warmup_ratio < 1, "train.warmup_ratio", "must be in [0, 1)")
        _require(self.lr_scheduler in ("linear", "cosine"), "train.lr_scheduler", "must be 'linear' or 'cosine'")
        _require(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0")
        _require(self.dropout is None or 0 <= self.dropout < 1, "train.dropout", "must be in [0, 1) or none")
        _require(0 <= self.seed <= MAX_SEED, "train.seed", f"must be an integer in [0, {MAX_SEED}]")
        _require(self.precision in ("auto", "fp32", "fp16", "bf16"), "train.precision", "auto, fp32, fp16 or bf16")
        _require(self.eval_strategy in ("epoch", "steps"), "train.eval_strategy", "must be 'epoch' or 'steps'")
        _require(self.eval_steps is None or self.eval_steps > 0, "train.eval_steps", "must be > 0")
        _require(
            self.dataloader_workers is None or self.dataloader_workers >= 0, "train.dataloader_workers", "must be >= 0"
        )
        _require(
            self.eval_strategy != "steps" or bool(self.eval_steps), "train.eval_steps", "must be set with 'steps'"
        )
        _check_metric(self.primary_metric, "train.primary_metric")
        alpha = self.selection_alpha
        _require(alpha is None or 0 < alpha < 1, "train.selection_alpha", "must be in (0, 1) or none")
        _require(self.selection_min_delta >= 0, "train.selection_min_delta", "must be >= 0")
        _require(self.logging_steps > 0, "train.logging_steps", "must be > 0")
        unknown = [name for name in self.report_to if name not in REPORT_TARGETS]
        choices = ", ".join(REPORT_TARGETS)
        _require(not unknown, "train.report_to", f"unknown {', '.join(unknown)}; choose from {choices}")
        _require(len(set(self.report_to)) == len(self.report_to), "train.report_to", "names a target twice")
        self.interpolation = parse_interpolation(self.interpolation, self.interpolation_grid)

    @property
    def interpolation_alphas(self) -> list[float] | None:
        """The WiSE-FT shares to try on dev: ``None`` (``none``), ``[a]`` (a fixed share) or the grid (``auto``)."""
        return interpolation_alphas(self.interpolation, self.interpolation_grid)


@dataclass
class EvalConfig:
    """Retrieval evaluation. Raises ConfigError (``eval.<key>: ...``) on a bad value."""

    metrics: list[str] = _setting(
        None, "Metrics reported (nDCG@k, MAP@k, Recall@k, MRR@k).", default_factory=lambda: list(DEFAULT_METRICS)
    )
    batch_size: int | None = _setting(
        None,
        "Texts per forward pass when encoding; none (auto): 64 on a CPU, on a GPU the largest power of two up to 512 "
        "whose activations fit a quarter of the free memory, halved on out-of-memory.",
    )
    precision: str = _setting(
        "auto",
        "Autocast precision of every evaluation encoding (base and fine-tuned alike): 'auto' (bf16 on CUDA, fp16 on "
        "GPUs without bf16, bf16 on CPUs with AVX512-BF16 or AMX, else fp32), 'fp32', 'bf16' or 'fp16'.",
    )
    extra_datasets: list[str] = _setting(
        None,
        "Out-of-domain BEIR folders (FOLDER or FOLDER:SPLIT, test by default) evaluated with the base and the "
        "fine-tuned model: the forgetting check.",
        default_factory=list,
    )
    forgetting_threshold: float = _setting(
        0.01, "Flag an extra dataset whose primary metric drops by more than this after fine-tuning."
    )
    cache_dir: str | None = _setting(
        None,
        "Embedding cache folder (embeddings of the unchanged base model are reused across runs); None uses "
        "$EMBEDTUNE_CACHE_DIR or ~/.cache/embedtune/embeddings.",
    )
    cache_max_gb: float = _setting(
        2.0, "Size cap of the embedding cache in GiB (least recently used embeddings are evicted); 0 disables it."
    )
    report_test: bool = _setting(
        True,
        "False: the run never evaluates the test split and reports dev, the selection split, labelled as such "
        "(`embedtune tune` trials; the study evaluates test once, for its best trial).",
    )

    def __post_init__(self) -> None:
        _check_fields(self, "eval.")
        self.extra_datasets = [_path(spec, "eval.extra_datasets") for spec in self.extra_datasets]
        if self.cache_dir is not None:
            self.cache_dir = _path(self.cache_dir, "eval.cache_dir")
        _require(self.cache_max_gb >= 0, "eval.cache_max_gb", "must be >= 0")
        _require(self.precision in ("auto", "fp32", "bf16", "fp16"), "eval.precision", "auto, fp32, bf16 or fp16")
        _require(self.forgetting_threshold >= 0, "eval.forgetting_threshold", "must be >= 0")
        _require(bool(self.metrics), "eval.metrics", "must name at least one metric")
        for name in self.metrics:
            _check_metric(name, "eval.metrics")
        _require(self.batch_size is None or self.batch_size > 0, "eval.batch_size", "must be > 0 or none")


@dataclass
class ExperimentConfig:
    """Everything a run needs; saved resolved as ``training_config.json`` in the run folder.

    Raises:
        ConfigError: naming the setting (``name: ...``, ``train.seed: ...``) when a value is invalid.
    """

    name: str = _setting("run", "Run name; the folder is runs/<YYYYmmdd-HHMMSS>-<name>.")
    runs_dir: str = _setting("runs", "Folder holding the run folders.")
    study: str | None = _setting(
        None, "The `embedtune tune` study this run is a trial of (set by tune; `runs list` groups its trials)."
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    def __post_init__(self) -> None:
        _check_fields(self, "")
        _check_name(self.name)
        if self.study is not None:
            _check_name(self.study, "study")
        self.runs_dir = _path(self.runs_dir, "runs_dir")
        _require(
            self.data.path is not None or self.data.train_file is not None, "data", "set data.path or data.train_file"
        )
        metric = self.train.primary_metric.lower()
        _require(
            metric in [m.lower() for m in self.eval.metrics],
            "train.primary_metric",
            f"{shorten(metric)} must be one of eval.metrics {shorten(self.eval.metrics)}",
        )
        self._check_modes()

    @property
    def has_head(self) -> bool:
        """Whether the trained model ends in a projection head (``train.mode: head``, or ``head.add``)."""
        return self.train_mode.frozen_encoder or self.head.add

    @property
    def train_mode(self) -> Mode:
        """The declaration of ``train.mode`` (:data:`~embedtune.config.modes.TRAIN_MODES`)."""
        return TRAIN_MODES[self.train.mode]

    def _check_modes(self) -> None:
        train = self.train
        mode = self.train_mode
        if train.freeze_encoder_epochs > 0:
            trainable = ", ".join(name for name, other in TRAIN_MODES.items() if not other.frozen_encoder)
            _require(
                self.head.add and not mode.frozen_encoder,
                "train.freeze_encoder_epochs",
                f"needs head.add=true in train.mode {trainable} (in mode {train.mode} the encoder is always frozen)"
                if mode.frozen_encoder
                else f"needs head.add=true in train.mode {trainable}",
            )
        if mode.cached_embeddings:
            _require(
                objectives.objective_of(self.loss).head_mode,
                "train.mode",
                f"{train.mode} trains from cached embeddings with loss.name one of "
                f"{', '.join(objectives.names(head_mode=True))}, not {self.loss.name}",
            )
            _require(not self.loss.matryoshka, "loss.matryoshka", f"is not supported with train.mode={train.mode}")
            _require(
                not self.curriculum.enabled, "curriculum.enabled", f"is not supported with train.mode={train.mode}"
            )
        frozen = f"which never train in train.mode={train.mode}"
        _require(
            not (mode.frozen_encoder and train.interpolation_alphas),
            "train.interpolation",
            f"interpolates the encoder's weights, {frozen}; set it to none",
        )
        _require(
            not (mode.frozen_encoder and self.loss.anchor_weight > 0),
            "loss.anchor_weight",
            f"anchors the encoder's weights, {frozen}; set it to 0",
        )
        self._check_mix()
        _require(
            not (train.group_by_length and self.curriculum.enabled),
            "train.group_by_length",
            "a curriculum orders its own batches: drop one of train.group_by_length and curriculum.enabled",
        )

    def _check_mix(self) -> None:
        if not self.data.mix:
            return
        conflicts = {
            "train.mode": self.train_mode.cached_embeddings,
            "curriculum.enabled": self.curriculum.enabled,
            "train.group_by_length": self.train.group_by_length,
            "loss.name": self.loss.uses_pairs,
        }
        for key, conflict in conflicts.items():
            _require(not conflict, key, "cannot be combined with data.mix (one dataset per source, one per batch)")

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved settings as nested plain dicts (JSON-serialisable).

        Returns:
            ``{"name": ..., "runs_dir": ..., "model": {...}, ...}``; :func:`config_from_dict` rebuilds an equal config.
        """
        return dataclasses.asdict(self)
