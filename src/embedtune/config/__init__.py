"""The one validated configuration of a fine-tuning run: loadable from YAML/JSON, overridable from the CLI.

Settings resolve as defaults < config file < overrides ``section.key=value``. Values from files and overrides are
parsed by the type of their setting, never re-read as YAML (see :func:`config_from_dict`). The sections live in
``sections.py`` (the data section in ``data_section.py``), value parsing in ``values.py``, file reading and overrides
in ``files.py``.
"""

from embedtune.config.files import MAX_CONFIG_BYTES, apply_overrides, build_config, config_from_dict, load_config_file
from embedtune.config.modes import TRAIN_MODES, CurriculumConfig, HeadConfig, LoraConfig
from embedtune.config.sections import (
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    MAX_SEED,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)
from embedtune.config.values import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_NAME_BYTES",
    "MAX_NAME_CHARS",
    "MAX_SEED",
    "TRAIN_MODES",
    "ConfigError",
    "CurriculumConfig",
    "HeadConfig",
    "LoraConfig",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "build_config",
    "config_from_dict",
    "load_config_file",
]
