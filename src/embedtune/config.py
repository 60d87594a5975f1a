"""The one validated configuration of a fine-tuning run: loadable from YAML/JSON, overridable from the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embedtune.evaluation.metrics import DEFAULT_METRICS, parse_metric


class ConfigError(ValueError):
    """An invalid setting: unknown key, wrong type or out-of-range value. The message names the setting."""


def _setting(default: Any, help: str, default_factory: Any = None) -> Any:
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelConfig:
    """Which model to fine-tune and how it reads text."""

    name_or_path: str = _setting("all-MiniLM-L6-v2", "Model folder or name (all-MiniLM-L6-v2 resolves offline).")
    query_prefix: str = _setting("", "Prepended to every query, e.g. 'query: ' for E5.")
    passage_prefix: str = _setting("", "Prepended to every passage, e.g. 'passage: ' for E5.")
    max_seq_length: int | None = _setting(None, "Truncation length in tokens; None keeps the model's setting.")

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path), "model.name_or_path", "must not be empty")
        _require(self.max_seq_length is None or self.max_seq_length > 0, "model.max_seq_length", "must be > 0")


@dataclass
class DataConfig:
    """Where the training and evaluation data come from."""

    path: str | None = _setting(None, "BEIR folder (corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv).")
    train_file: str | None = _setting(
        None, "JSONL training file {query, pos, neg, neg_weights}; replaces the BEIR train qrels as training data."
    )
    dev_fraction: float = _setting(0.1, "Share of train queries carved out as dev when there is no dev split.")
    split_seed: int = _setting(42, "Seed of the dev split.")
    eval_split: str = _setting("test", "Split reported at the end, base vs fine-tuned (never used for selection).")
    max_hard_negatives: int = _setting(3, "Hard negatives per query used in training (the first n of 'neg').")
    dev_max_corpus: int | None = _setting(
        2000,
        "Dev evaluation during training ranks the dev queries' relevant documents plus a seeded random sample of "
        "the rest, up to this many documents (speed); None uses the whole corpus. Test always uses the whole corpus.",
    )

    def __post_init__(self) -> None:
        _require(0 < self.dev_fraction < 1, "data.dev_fraction", f"must be in (0, 1), got {self.dev_fraction}")
        _require(self.max_hard_negatives >= 0, "data.max_hard_negatives", "must be >= 0")
        _require(self.dev_max_corpus is None or self.dev_max_corpus > 0, "data.dev_max_corpus", "must be > 0")


@dataclass
class LossConfig:
    """InfoNCE settings (see :class:`embedtune.losses.info_nce.InfoNCELoss`)."""

    scale: float = _setting(20.0, "Inverse temperature: 20 means temperature 0.05.")
    symmetric: bool = _setting(True, "Add the passage-to-query InfoNCE term.")

    def __post_init__(self) -> None:
        _require(self.scale > 0 and math.isfinite(self.scale), "loss.scale", "must be a positive number")


@dataclass
class TrainConfig:
    """Optimisation and checkpoint selection."""

    epochs: float = _setting(4.0, "Passes over the training pairs (ignored when max_steps > 0).")
    max_steps: int = _setting(-1, "Stop after this many optimiser steps; -1 uses epochs.")
    batch_size: int = _setting(32, "Pairs per batch; every other pair's passage is an in-batch negative.")
    learning_rate: float = _setting(2e-5, "Peak AdamW learning rate.")
    weight_decay: float = _setting(0.01, "AdamW decoupled weight decay.")
    warmup_ratio: float = _setting(0.1, "Share of steps with linear warm-up.")
    lr_scheduler: str = _setting("linear", "Decay after warm-up: 'linear' or 'cosine'.")
    max_grad_norm: float = _setting(1.0, "Gradient clipping norm; 0 disables clipping.")
    seed: int = _setting(42, "Seed of initialisation-free randomness: shuffling, dropout.")
    gradient_checkpointing: bool = _setting(False, "Recompute activations in backward to save memory.")
    precision: str = _setting("auto", "'auto' (bf16/fp16 autocast on CUDA, fp32 on CPU), 'fp32', 'fp16' or 'bf16'.")
    eval_strategy: str = _setting("epoch", "When to evaluate on dev: 'epoch' or 'steps'.")
    eval_steps: int | None = _setting(None, "Evaluate every this many steps when eval_strategy is 'steps'.")
    primary_metric: str = _setting("ndcg@10", "Dev metric that picks the best checkpoint.")
    logging_steps: int = _setting(5, "Log loss, learning rate and grad norm every this many steps.")

    def __post_init__(self) -> None:
        _require(self.epochs > 0 or self.max_steps > 0, "train.epochs", "must be > 0 (or set train.max_steps)")
        _require(self.max_steps == -1 or self.max_steps > 0, "train.max_steps", "must be -1 or > 0")
        _require(self.batch_size >= 2, "train.batch_size", "must be >= 2 for in-batch negatives")
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(0 <= self.warmup_ratio < 1, "train.warmup_ratio", "must be in [0, 1)")
        _require(self.lr_scheduler in ("linear", "cosine"), "train.lr_scheduler", "must be 'linear' or 'cosine'")
        _require(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0")
        _require(self.precision in ("auto", "fp32", "fp16", "bf16"), "train.precision", "auto, fp32, fp16 or bf16")
        _require(self.eval_strategy in ("epoch", "steps"), "train.eval_strategy", "must be 'epoch' or 'steps'")
        if self.eval_strategy == "steps":
            _require(bool(self.eval_steps) and self.eval_steps > 0, "train.eval_steps", "must be > 0 with 'steps'")
        try:
            parse_metric(self.primary_metric)
        except ValueError as error:
            raise ConfigError(f"train.primary_metric: {error}") from error
        _require(self.logging_steps > 0, "train.logging_steps", "must be > 0")


@dataclass
class EvalConfig:
    """Retrieval evaluation."""

    metrics: list[str] = _setting(
        None, "Metrics reported (nDCG@k, MAP@k, Recall@k, MRR@k).", default_factory=lambda: list(DEFAULT_METRICS)
    )
    batch_size: int = _setting(64, "Texts per forward pass when encoding.")

    def __post_init__(self) -> None:
        for name in self.metrics:
            try:
                parse_metric(name)
            except ValueError as error:
                raise ConfigError(f"eval.metrics: {error}") from error
        _require(self.batch_size > 0, "eval.batch_size", "must be > 0")


@dataclass
class ExperimentConfig:
    """Everything a run needs; saved resolved as ``training_config.json`` in the run folder."""

    name: str = _setting("run", "Run name; the folder is runs/<YYYYmmdd-HHMMSS>-<name>.")
    runs_dir: str = _setting("runs", "Folder holding the run folders.")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name, "name", "must be non-empty without '/'")
        _require(
            self.data.path is not None or self.data.train_file is not None, "data", "set data.path or data.train_file"
        )
        metric = self.train.primary_metric.lower()
        _require(
            metric in [m.lower() for m in self.eval.metrics],
            "train.primary_metric",
            f"'{metric}' must be one of eval.metrics {self.eval.metrics}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved settings as nested plain dicts (JSON-serialisable)."""
        return dataclasses.asdict(self)


def config_from_dict(data: dict[str, Any], cls: type = ExperimentConfig, prefix: str = "") -> Any:
    """Build a config dataclass from nested dicts, checking keys and types.

    Args:
        data: Nested mapping, e.g. ``{"train": {"learning_rate": 3e-5}}``.
        cls: The dataclass to build.
        prefix: Dotted path of ``data`` inside the whole config (for messages).

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: for an unknown key, a value of the wrong type, or a value that fails validation.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
    values = {}
    for name, raw in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = config_from_dict(raw, hint, f"{prefix}{name}.")
        else:
            values[name] = _coerce(raw, hint, f"{prefix}{name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    args = typing.get_args(hint)
    is_optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    if is_optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(arg for arg in args if arg is not type(None))
    if typing.get_origin(hint) is list:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item, typing.get_args(hint)[0], key) for item in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = hint(value) if not isinstance(value, str) else hint(float(value)) if hint is float else int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into nested dicts (not yet validated).

    Raises:
        ConfigError: if the file is missing, does not parse, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot parse: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML scalars) to nested dicts, returning a copy.

    Raises:
        ConfigError: if an override has no ``=``.
    """
    result = json.loads(json.dumps(data))
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{override}': expected section.key=value")
        node = result
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{override}': '{parent}' is not a section")
        node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def build_config(config_file: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Resolve a config: defaults, then the file (if any), then the overrides.

    Raises:
        ConfigError: for any invalid setting.
    """
    data = load_config_file(config_file) if config_file else {}
    return config_from_dict(apply_overrides(data, overrides or []))
