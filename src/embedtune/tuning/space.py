"""What ``embedtune tune`` searches: a :class:`Param` per setting, a default space per training mode, a YAML file.

A space maps a setting (``train.learning_rate``, ``lora.rank``...) to the values a trial may give it. The default
space of a mode holds what the hand-set recipes most often got wrong; a space file replaces it:

.. code-block:: yaml

    train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
    train.epochs: {low: 1, high: 4, type: int}
    lora.rank: {choices: [8, 16, 32]}

Every value a space can give is checked against the configuration before the study starts, so a bad key or an
out-of-range bound stops ``embedtune tune`` with one line naming the file and the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from embedtune.config import ConfigError, ExperimentConfig, config_from_dict
from embedtune.config.files import apply_overrides

FLOAT, INT, CATEGORICAL = "float", "int", "categorical"
FEATURE_PREFIX = "feature_weights."
"""Keys ``feature_weights.<feature>`` set a negative feature's weight (:mod:`embedtune.tuning.feature_space`)."""


@dataclass(frozen=True)
class Param:
    """The values one setting may take in a trial.

    Attributes:
        key: The setting, dotted (``train.learning_rate``).
        kind: ``"float"``, ``"int"`` or ``"categorical"``.
        low: Lowest value (float / int).
        high: Highest value, included (float / int).
        log: Sample on a log scale (float / int, ``low > 0``).
        choices: The values of a categorical setting (numbers, strings, booleans or ``None``).
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this setting's value from an Optuna ``trial``."""
        if self.kind == CATEGORICAL:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == INT:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def extremes(self) -> list[Any]:
        """Return the values that bound this parameter (every choice, or low and high), checked before a study."""
        if self.kind == CATEGORICAL:
            return list(self.choices)
        cast = int if self.kind == INT else float
        return [cast(self.low), cast(self.high)]

    def to_dict(self) -> dict[str, Any]:
        """Return the parameter as written in a space file."""
        if self.kind == CATEGORICAL:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "type": self.kind, "log": self.log}


def _float(key: str, low: float, high: float, log: bool = False) -> Param:
    return Param(key, FLOAT, low, high, log)


def _int(key: str, low: int, high: int) -> Param:
    return Param(key, INT, low, high)


def _choice(key: str, *choices: Any) -> Param:
    return Param(key, CATEGORICAL, choices=choices)


DEFAULT_SPACES: dict[str, list[Param]] = {
    "full": [
        _float("train.learning_rate", 5e-6, 2e-4, log=True),
        _int("train.epochs", 1, 5),
        _float("train.warmup_ratio", 0.0, 0.2),
        _float("loss.scale", 10.0, 50.0),
        _int("data.max_hard_negatives", 0, 5),
        _choice("train.batch_size", 16, 32, 64),
        _choice("loss.anchor_weight", 0.0, 0.5, 2.0),
        _choice("train.interpolation", "none", "auto"),
        _choice("train.dropout", 0.0, "none"),
    ],
    "lora": [
        _float("train.learning_rate", 1e-4, 3e-3, log=True),
        _choice("lora.rank", 4, 8, 16, 32),
        _choice("lora.alpha", 8.0, 16.0, 32.0, 64.0),
        _float("lora.dropout", 0.0, 0.2),
        _int("train.epochs", 1, 5),
        _choice("train.interpolation", "none", "auto"),
        _choice("train.dropout", 0.0, "none"),
    ],
    "head": [
        _float("train.head_learning_rate", 1e-4, 1e-2, log=True),
        _choice("head.dim", 128, 256, 384, 512),
        _int("head.layers", 1, 2),
        _int("train.epochs", 2, 20),
        _float("loss.scale", 10.0, 50.0),
        _int("data.max_hard_negatives", 0, 5),
    ],
}
"""``train.mode`` -> its default search space. A mode without one needs ``--space``."""


def default_space(config: ExperimentConfig) -> list[Param]:
    """Return the default search space of ``config``'s training mode.

    Raises:
        ConfigError: if the mode has no default space (a registered mode of a plug-in): give ``--space FILE``.
    """
    if config.train.mode not in DEFAULT_SPACES:
        raise ConfigError(f"train.mode: {config.train.mode} has no default search space; give one with --space FILE")
    return list(DEFAULT_SPACES[config.train.mode])


def load_space(path: str | Path) -> list[Param]:
    """Read a YAML (or JSON) space file: ``setting: {low, high[, type: int|float][, log]}`` or ``{choices: [...]}``.

    Returns:
        The parameters, in file order.

    Raises:
        ConfigError: naming the file and the setting, for anything but a mapping of settings to such entries.
        OSError: if the file cannot be read.
    """
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a YAML file: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of settings to {{low, high}} or {{choices}}, got {data!r}")
    return [_param(f"{path}: {key}", str(key), entry) for key, entry in data.items()]


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` (no dot) as text: take such text as the number it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _param(where: str, key: str, entry: Any) -> Param:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected {{low, high}} or {{choices: [...]}}, got {entry!r}")
    unknown = set(entry) - {"low", "high", "type", "log", "choices"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (low, high, type, log, choices)")
    if "choices" in entry:
        choices = entry["choices"]
        if set(entry) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, alone")
        return Param(key, CATEGORICAL, choices=tuple(choices))
    if not {"low", "high"} <= set(entry):
        raise ConfigError(f"{where}: needs low and high (or choices)")
    low, high, log = _number(entry["low"]), _number(entry["high"]), entry.get("log", False)
    kind = entry.get("type", INT if isinstance(low, int) and isinstance(high, int) else FLOAT)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if kind not in (INT, FLOAT) or not numbers or not isinstance(log, bool):
        raise ConfigError(f"{where}: low/high must be numbers, type int or float, log true or false")
    if not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: needs low < high (and low > 0 with log), got low {low}, high {high}")
    return Param(key, kind, low, high, log)


def check_space(space: list[Param], base: dict[str, Any], where: str = "search space") -> None:
    """Check that every value ``space`` can give makes a valid configuration with ``base``.

    Each bound (or choice) is applied alone to ``base`` (the nested settings of the study's configuration) and the
    result validated like a run's configuration, so a trial can never fail on a bad setting. Feature weights
    (``feature_weights.*``) are checked by :func:`embedtune.tuning.feature_space.check_feature_params`.

    Raises:
        ConfigError: ``<where>: <key> = <value>: <why>`` for the first value that is not a valid setting.
    """
    seen = set()
    for param in space:
        if param.key in seen:
            raise ConfigError(f"{where}: {param.key} appears twice")
        seen.add(param.key)
        if param.key.startswith(FEATURE_PREFIX):
            continue
        for value in param.extremes():
            try:
                config_from_dict(apply_overrides(base, [f"{param.key}={format_value(value)}"]))
            except ConfigError as error:
                raise ConfigError(f"{where}: {param.key} = {value!r}: {error}") from None


def format_value(value: Any) -> str:
    """Write a sampled value as a ``--set`` override value (``None`` as ``null``, booleans lower case)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
