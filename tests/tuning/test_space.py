"""Search spaces of `embedtune tune`: defaults per mode, the YAML file, the check before a study starts."""

from pathlib import Path

import optuna
import pytest

from embedtune.config import ConfigError, build_config
from embedtune.config.modes import TRAIN_MODES
from embedtune.tuning.space import (
    CATEGORICAL,
    DEFAULT_SPACES,
    FLOAT,
    INT,
    Param,
    check_space,
    default_space,
    format_value,
    load_space,
)

BASE = {"data": {"path": "/tmp/data"}}


@pytest.mark.parametrize("mode", sorted(DEFAULT_SPACES))
def test_every_value_of_each_default_space_is_a_valid_setting(mode: str):
    base = {**BASE, "train": {"mode": mode}}
    check_space(DEFAULT_SPACES[mode], base)
    assert default_space(build_config(overrides=["data.path=/tmp/data", f"train.mode={mode}"])) == DEFAULT_SPACES[mode]


def test_every_built_in_mode_has_a_default_space():
    assert set(DEFAULT_SPACES) == set(TRAIN_MODES)


def test_space_file_reads_ranges_log_int_and_choices(tmp_path: Path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "train.learning_rate: {low: 1e-5, high: 1.0e-3, log: true}\n"
        "train.epochs: {low: 1, high: 4}\n"
        "train.warmup_ratio: {low: 0, high: 0.2, type: float}\n"
        "lora.rank: {choices: [8, 16]}\n"
    )
    space = load_space(path)
    assert space == [
        Param("train.learning_rate", FLOAT, 1e-5, 1e-3, True),
        Param("train.epochs", INT, 1, 4),
        Param("train.warmup_ratio", FLOAT, 0, 0.2),
        Param("lora.rank", CATEGORICAL, choices=(8, 16)),
    ]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    values = {param.key: param.suggest(trial) for param in space}
    assert 1e-5 <= values["train.learning_rate"] <= 1e-3
    assert isinstance(values["train.epochs"], int) and 1 <= values["train.epochs"] <= 4
    assert values["lora.rank"] in (8, 16)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train.learning_rate: 0.1\n", "expected {low, high}"),
        ("train.learning_rate: {low: 0.1}\n", "needs low and high"),
        ("train.learning_rate: {low: 0.1, high: 0.01}\n", "needs low < high"),
        ("train.learning_rate: {low: 0, high: 0.01, log: true}\n", "low > 0 with log"),
        ("train.learning_rate: {low: 0.1, high: 1, step: 2}\n", "unknown field(s) step"),
        ("lora.rank: {choices: []}\n", "non-empty list"),
        ("train.epochs: {low: one, high: 2}\n", "must be numbers"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: [\n", "not a YAML file"),
    ],
)
def test_bad_space_file_is_one_error_naming_the_file_and_setting(tmp_path: Path, text: str, message: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_space(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (Param("train.learning_rat", FLOAT, 1e-5, 1e-3), "train.learning_rat"),
        (Param("lora.rank", INT, 0, 8), "lora.rank = 0"),
        (Param("train.mode", CATEGORICAL, choices=("full", "sideways")), "train.mode = 'sideways'"),
    ],
)
def test_check_space_refuses_a_value_no_run_could_take(param: Param, message: str):
    with pytest.raises(ConfigError, match="space.yaml") as error:
        check_space([param], BASE, "space.yaml")
    assert message in str(error.value)


def test_check_space_refuses_a_setting_twice():
    with pytest.raises(ConfigError, match="appears twice"):
        check_space([Param("lora.rank", INT, 4, 8), Param("lora.rank", INT, 8, 16)], BASE)


@pytest.mark.parametrize(("value", "text"), [(None, "null"), (True, "true"), (3, "3"), (2e-5, "2e-05"), ("a", "a")])
def test_format_value_writes_what_the_config_reads(value, text):
    assert format_value(value) == text
