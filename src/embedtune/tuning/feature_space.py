"""Negative feature weights in a search space: ``feature_weights.<feature>`` sets one weight of the data's config.

When the training data gives ``neg_features`` and the configuration names a weight config (``data.feature_weights``),
a space may search each feature's weight:

.. code-block:: yaml

    feature_weights.dense: {low: 0.5, high: 4.0, log: true}
    feature_weights.bm25: {choices: [1.0, 2.0]}

A trial writes the weight config with its values (the rest of the file kept: ``default``, ``combine``, the features
not searched) to ``<study folder>/feature-weights/t<n>.json`` and trains with it, so the trial's run folder and the
study's ``best.yaml`` name the file that reproduces it. In head mode (:data:`WEIGHTED_MODES`) the default space
searches every feature of the config.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from embedtune.config import ConfigError, ExperimentConfig
from embedtune.data.feature_weights import load_feature_weights
from embedtune.errors import DataError
from embedtune.io import write_json_atomic
from embedtune.tuning.space import FEATURE_PREFIX, FLOAT, Param

WEIGHTED_MODES = frozenset({"head"})
"""Training modes whose default space also searches the feature weights (a trial costs seconds there)."""
WEIGHT_RANGE = (0.5, 4.0)
"""Bounds of a feature's weight in the default space, sampled on a log scale (1.0: a plain negative)."""
WEIGHTS_DIR = "feature-weights"


def default_feature_params(config: ExperimentConfig) -> list[Param]:
    """Return a weight parameter per feature of ``config``'s weight config, in :data:`WEIGHTED_MODES`; else ``[]``.

    Raises:
        DataError: if the weight config cannot be read.
    """
    if config.train.mode not in WEIGHTED_MODES or config.data.feature_weights is None:
        return []
    features = load_feature_weights(config.data.feature_weights).features
    return [Param(f"{FEATURE_PREFIX}{name}", FLOAT, *WEIGHT_RANGE, log=True) for name in features]


def check_feature_params(space: list[Param], config: ExperimentConfig, where: str) -> None:
    """Check the ``feature_weights.*`` parameters of ``space`` against ``config``'s weight config.

    Raises:
        ConfigError: ``<where>: <key>: <why>`` when the configuration names no weight config, the feature is not
            one of it, or a bound or choice is not a finite number > 0; before the study starts.
    """
    params = [param for param in space if param.key.startswith(FEATURE_PREFIX)]
    if not params:
        return
    if config.data.feature_weights is None:
        raise ConfigError(f"{where}: {params[0].key}: needs data.feature_weights (the weight config a trial changes)")
    try:
        known = load_feature_weights(config.data.feature_weights)
    except DataError as error:
        raise ConfigError(f"{where}: {params[0].key}: {error}") from None
    for param in params:
        name = param.key.removeprefix(FEATURE_PREFIX)
        if name not in known.features:
            raise ConfigError(f"{where}: {param.key}: no feature {name!r} in {known.source}: {known.known_features()}")
        for value in param.extremes():
            if not _positive_number(value):
                raise ConfigError(f"{where}: {param.key} = {value!r}: a weight must be a finite number > 0")


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def split_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Split a trial's values into settings (``--set`` keys) and feature weights (feature name -> weight)."""
    settings = {key: value for key, value in values.items() if not key.startswith(FEATURE_PREFIX)}
    weights = {key.removeprefix(FEATURE_PREFIX): float(value) for key, value in values.items() if key not in settings}
    return settings, weights


def write_trial_weights(source: str | Path, weights: dict[str, float], study_folder: Path, number: int) -> Path:
    """Write ``source``'s weight config with ``weights`` replacing its features' weights, for trial ``number``.

    Returns:
        The file written (atomically): ``<study_folder>/feature-weights/t<number>.json``.

    Raises:
        DataError: if ``source`` cannot be read.
    """
    config = load_feature_weights(source)
    config = replace(config, features={**config.features, **weights})
    path = study_folder / WEIGHTS_DIR / f"t{number}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"features": config.features, "default": config.default, "combine": config.combine})
    return path
