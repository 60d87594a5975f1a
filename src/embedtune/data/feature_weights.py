"""Feature-weight configs: turn a training record's ``neg_features`` into ``neg_weights``.

A config maps feature names (what makes a hard negative wrong: ``location``, ``price``...) to weights and says how
the weights of several features combine::

    {"features": {"location": 2.5, "price": 2.0, "amenities": 1.5}, "default": 1.0, "combine": "max"}

A negative whose features are ``["location", "price"]`` then weighs ``max(2.5, 2.0) = 2.5``: it counts 2.5 times as
much as a plain negative in the InfoNCE denominator. ``default`` (1.0 unless set) is the weight of a negative with
no feature; ``combine`` (``max`` unless set) is ``max``, ``sum`` or ``product``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embedtune.data.training_file import float32_weight
from embedtune.errors import MAX_QUOTED_CHARS, DataError, reading, shorten
from embedtune.io import json_type_name, read_text

COMBINERS: dict[str, Callable[[list[float]], float]] = {"max": max, "sum": math.fsum, "product": math.prod}
"""How the weights of a negative's features combine into its weight, by ``combine`` name."""
MAX_LISTED_FEATURES = 20
"""Most feature names listed in an 'unknown feature' message; the rest are counted."""

_KEYS = ("features", "default", "combine")
_JSON_SUFFIXES = (".json",)
_YAML_SUFFIXES = (".yaml", ".yml")
_YAML_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_YAML_SPECIAL = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}


@dataclass(frozen=True)
class FeatureWeights:
    """Weights of named negative features and how they combine into one negative's weight.

    Attributes:
        features: Feature name -> weight (finite, > 0, a normal float32).
        default: Weight of a negative with no feature (an empty list).
        combine: ``"max"``, ``"sum"`` or ``"product"`` of the named features' weights.
        source: File the config was read from (``None`` when built in memory); not compared by ``==``.

    Raises:
        ValueError: on construction, for a ``combine`` other than ``max``, ``sum`` or ``product``.
    """

    features: dict[str, float]
    default: float = 1.0
    combine: str = "max"
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.combine not in COMBINERS:
            raise ValueError(f"unknown combine {shorten(self.combine)}; expected one of {', '.join(COMBINERS)}")

    def weight(self, features: Sequence[str]) -> float:
        """Return the weight of a negative with these features.

        Args:
            features: Feature names, each a key of :attr:`features` (``[]`` for a negative with no feature).

        Returns:
            :attr:`default` for an empty list, else the :attr:`combine` of the features' weights.

        Raises:
            KeyError: for a name that is not a key of :attr:`features` (the name is the error's argument).
            ValueError: when the combined weight is not a normal float32 (e.g. a ``sum`` or ``product`` above the
                float32 maximum).
        """
        if not features:
            return self.default
        combined = COMBINERS[self.combine]([self.features[name] for name in features])
        try:
            return float32_weight(combined)
        except ValueError as error:
            raise ValueError(f"combined weight ({self.combine} of {', '.join(features)}): {error}") from None

    def known_features(self) -> str:
        """Return the feature names, sorted and comma-separated (cut after :data:`MAX_LISTED_FEATURES`)."""
        names = sorted(self.features)
        listed = ", ".join(names[:MAX_LISTED_FEATURES])
        return listed if len(names) <= MAX_LISTED_FEATURES else f"{listed}, ... ({len(names)} in all)"


def load_feature_weights(path: str | Path) -> FeatureWeights:
    """Read a feature-weight config from a JSON (``.json``) or YAML (``.yaml``, ``.yml``) file.

    The file holds ``{"features": {name: weight, ...}, "default": weight, "combine": "max" | "sum" | "product"}``;
    ``default`` (1.0) and ``combine`` (``max``) are optional. YAML is read with every scalar as text, and weights
    are parsed as decimal numbers (``2``, ``2.5``, ``1e-3``; ``.inf`` and ``.nan`` are refused as not finite).

    Args:
        path: The config file; its suffix (any case) picks the format.

    Returns:
        The config, with ``source`` set to ``path``.

    Raises:
        DataError: naming the file (and the field, such as ``features.price``, ``default`` or ``combine``) for an
            unknown suffix, a missing or unreadable file, malformed JSON or YAML, a top level that is not a mapping,
            an unknown top-level key, a missing, empty or non-mapping ``features``, an empty feature name, a weight
            that is not a finite number > 0 representable as a normal float32, or an unknown ``combine``; any
            other failure while reading also becomes a DataError naming the file.
    """
    path = Path(path)
    with reading(path):
        is_yaml = _is_yaml(path)
        data = _parse(read_text(path).removeprefix("\ufeff"), path, is_yaml)
        return _build(data, path, is_yaml)


def _is_yaml(path: Path) -> bool:
    """Say whether the file's suffix names YAML (else JSON); raise a DataError for any other suffix."""
    suffix = path.suffix.lower()
    if suffix not in _JSON_SUFFIXES + _YAML_SUFFIXES:
        raise DataError(path, None, None, f"expected a .json, .yaml or .yml file, got suffix {shorten(suffix)}")
    return suffix in _YAML_SUFFIXES


def _parse(text: str, path: Path, is_yaml: bool) -> Any:
    """Decode the file's text as YAML (every scalar a string) or JSON; syntax errors name their line."""
    try:
        return yaml.load(text, Loader=yaml.BaseLoader) if is_yaml else json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, error.lineno, None, f"malformed JSON: {error.msg} (column {error.colno})") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = str(error.problem or error.context)[:200]
        raise DataError(path, mark.line + 1 if mark else None, None, f"malformed YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise DataError(path, None, None, f"malformed YAML: {' '.join(str(error).split())[:200]}") from None


def _build(data: Any, path: Path, is_yaml: bool) -> FeatureWeights:
    """Check the decoded top level and its keys, and build the config."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else json_type_name(data)
        raise DataError(path, None, None, f"expected a mapping with 'features' at the top level, got {got}")
    for key in data:
        if key not in _KEYS:
            raise DataError(path, None, _field_name(str(key)), f"unknown key; expected one of {', '.join(_KEYS)}")
    features = _features(data, path, is_yaml)
    default = _weight(data["default"], "default", path, is_yaml) if "default" in data else 1.0
    return FeatureWeights(features, default, _combine(data, path), source=path)


def _features(data: dict[str, Any], path: Path, is_yaml: bool) -> dict[str, float]:
    """Return the ``features`` mapping, every name non-empty and every weight checked."""
    if "features" not in data:
        raise DataError(path, None, "features", "missing required field")
    features = data["features"]
    if not isinstance(features, dict):
        message = f"expected a mapping of feature names to weights, got {json_type_name(features)}"
        raise DataError(path, None, "features", message)
    if not features:
        raise DataError(path, None, "features", "expected at least one feature, got an empty mapping")
    for name in features:
        if not str(name).strip():
            raise DataError(path, None, "features", f"empty feature name {shorten(name)}")
    return {name: _weight(value, f"features.{_field_name(name)}", path, is_yaml) for name, value in features.items()}


def _combine(data: dict[str, Any], path: Path) -> str:
    """Return ``combine`` (``max`` when absent), one of :data:`COMBINERS`."""
    combine = data.get("combine", "max")
    if not isinstance(combine, str) or combine not in COMBINERS:
        message = f"unknown combine {shorten(combine)}; expected one of {', '.join(COMBINERS)}"
        raise DataError(path, None, "combine", message)
    return combine


def _weight(value: Any, field_name: str, path: Path, is_yaml: bool) -> float:
    """Return one weight of the file, checked like a training file's ``neg_weights`` (YAML text parsed first)."""
    try:
        return float32_weight(_yaml_number(value) if is_yaml else value)
    except ValueError as error:
        raise DataError(path, None, field_name, str(error)) from None


def _yaml_number(value: Any) -> Any:
    """Parse a YAML scalar (always text with BaseLoader) as a decimal number, or ``.inf``/``.nan``.

    Raises:
        ValueError: for text that is not a number (``"abc"``, ``"true"``, an empty value) or a non-scalar.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a number, got {json_type_name(value)}")
    special = _YAML_SPECIAL.get(value.lower())
    if special is not None:
        return special
    if not _YAML_DECIMAL.fullmatch(value):
        raise ValueError(f"expected a number, got {shorten(value)}")
    return float(value)


def _field_name(name: str) -> str:
    """Return a feature name or key as shown in a field: as is, or shortened when absurdly long."""
    return name if len(name) <= MAX_QUOTED_CHARS else shorten(name)
