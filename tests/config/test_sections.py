"""ExperimentConfig: defaults, validation messages naming the setting, type coercion, files and overrides."""

from __future__ import annotations

import json

import pytest
import yaml

from embedtune.config import (
    ConfigError,
    ExperimentConfig,
    TrainConfig,
    apply_overrides,
    build_config,
    config_from_dict,
    load_config_file,
)
from embedtune.config.metric_names import DEFAULT_METRICS

DATA = {"data": {"path": "beir/scifact"}}


def make(**sections) -> ExperimentConfig:
    return config_from_dict({**DATA, **sections})


def test_defaults_are_valid_once_data_is_set():
    config = make()
    assert config.data.path == "beir/scifact"
    assert config.train == TrainConfig()
    assert config.eval.metrics == list(DEFAULT_METRICS)
    assert config.train.primary_metric in config.eval.metrics
    assert config.model.max_seq_length is None
    assert config_from_dict({"data": {"train_file": "train.jsonl"}}).data.train_file == "train.jsonl"


@pytest.mark.parametrize("data", [{}, {"data": {}}, {"data": {"path": None, "train_file": None}}])
def test_config_without_data_is_rejected(data):
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    assert str(error.value).startswith("data:")
    with pytest.raises(ConfigError):
        ExperimentConfig()


INVALID = [
    ({"model": {"name_or_path": ""}}, "model.name_or_path"),
    ({"model": {"max_seq_length": 0}}, "model.max_seq_length"),
    ({"data": {"path": "x", "dev_fraction": 0}}, "data.dev_fraction"),
    ({"data": {"path": "x", "dev_fraction": 1}}, "data.dev_fraction"),
    ({"data": {"path": "x", "max_hard_negatives": -1}}, "data.max_hard_negatives"),
    ({"data": {"path": "x", "dev_max_corpus": 0}}, "data.dev_max_corpus"),
    ({"loss": {"scale": 0}}, "loss.scale"),
    ({"loss": {"scale": -20}}, "loss.scale"),
    ({"loss": {"scale": "inf"}}, "loss.scale"),
    ({"loss": {"scale": "nan"}}, "loss.scale"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"max_steps": 0}}, "train.max_steps"),
    ({"train": {"max_steps": -2}}, "train.max_steps"),
    ({"train": {"batch_size": 1}}, "train.batch_size"),
    ({"train": {"learning_rate": -1e-5}}, "train.learning_rate"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate"),
    ({"train": {"weight_decay": -0.1}}, "train.weight_decay"),
    ({"train": {"warmup_ratio": 1.0}}, "train.warmup_ratio"),
    ({"train": {"warmup_ratio": -0.1}}, "train.warmup_ratio"),
    ({"train": {"lr_scheduler": "step"}}, "train.lr_scheduler"),
    ({"train": {"max_grad_norm": -1}}, "train.max_grad_norm"),
    ({"train": {"precision": "fp8"}}, "train.precision"),
    ({"train": {"eval_strategy": "never"}}, "train.eval_strategy"),
    ({"train": {"eval_strategy": "steps"}}, "train.eval_steps"),
    ({"train": {"eval_strategy": "steps", "eval_steps": 0}}, "train.eval_steps"),
    ({"train": {"primary_metric": "bleu@10"}}, "train.primary_metric"),
    ({"train": {"primary_metric": "ndcg@0"}}, "train.primary_metric"),
    ({"train": {"primary_metric": "precision@5"}}, "train.primary_metric"),  # valid metric, not in eval.metrics
    ({"train": {"logging_steps": 0}}, "train.logging_steps"),
    ({"eval": {"metrics": ["ndcg@10", "bleu"]}}, "eval.metrics"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size"),
    ({"name": ""}, "name"),
    ({"name": "a/b"}, "name"),
]


@pytest.mark.parametrize(("sections", "key"), INVALID, ids=[f"{key}-{i}" for i, (_, key) in enumerate(INVALID)])
def test_each_rule_names_its_setting(sections, key):
    with pytest.raises(ConfigError) as error:
        make(**sections)
    assert str(error.value).startswith(f"{key}:"), str(error.value)


@pytest.mark.parametrize(
    "sections",
    [
        {"train": {"epochs": 0, "max_steps": 10}},
        {"train": {"warmup_ratio": 0, "max_grad_norm": 0, "weight_decay": 0}},
        {"train": {"eval_strategy": "steps", "eval_steps": 5}},
        {"train": {"lr_scheduler": "cosine", "precision": "bf16", "batch_size": 2}},
        {"train": {"primary_metric": "NDCG@10"}},
        {"data": {"path": "x", "dev_fraction": 0.5, "max_hard_negatives": 0, "dev_max_corpus": None}},
    ],
)
def test_boundary_values_are_accepted(sections):
    config = make(**sections)
    for section, values in sections.items():
        for key, value in values.items():
            assert getattr(getattr(config, section), key) == value


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"trian": {"epochs": 1}}, "trian"),
        ({"train": {"learning_rat": 1e-5}}, "train.learning_rat"),
        ({"model": {"name": "x"}}, "model.name"),
    ],
)
def test_unknown_key_is_named(data, key):
    with pytest.raises(ConfigError) as error:
        config_from_dict({**DATA, **data})
    assert str(error.value).startswith(f"{key}:"), str(error.value)
    assert "unknown" in str(error.value)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("train", "batch_size", "many"),
        ("train", "batch_size", 8.5),
        ("train", "batch_size", True),
        ("train", "batch_size", None),
        ("train", "batch_size", [8]),
        ("train", "learning_rate", True),
        ("train", "learning_rate", "abc"),
        ("train", "learning_rate", {"value": 1}),
        ("loss", "symmetric", "maybe"),
        ("loss", "symmetric", 2),
        ("model", "query_prefix", None),
        ("model", "query_prefix", ["q"]),
        ("eval", "metrics", 10),
        ("eval", "metrics", None),
    ],
)
def test_wrong_types_are_rejected(section, key, value):
    with pytest.raises(ConfigError) as error:
        make(**{section: {key: value}})
    assert str(error.value).startswith(f"{section}.{key}:"), str(error.value)


@pytest.mark.parametrize("section", ["train", "model"])
def test_section_must_be_a_mapping(section):
    with pytest.raises(ConfigError) as error:
        make(**{section: 5})
    assert str(error.value).startswith(f"{section}:")


def test_numeric_strings_are_coerced():
    config = make(train={"learning_rate": "3e-5", "batch_size": "16", "epochs": 2})
    assert config.train.learning_rate == pytest.approx(3e-5)
    assert isinstance(config.train.learning_rate, float)
    assert config.train.batch_size == 16 and isinstance(config.train.batch_size, int)
    assert isinstance(config.train.epochs, float) and config.train.epochs == 2.0
    assert make(train={"batch_size": 8.0}).train.batch_size == 8


@pytest.mark.parametrize("value", ["true", "True", "yes", "1", True])
def test_bool_strings_are_coerced(value):
    assert make(loss={"symmetric": value}).loss.symmetric is True
    assert make(loss={"symmetric": "false"}).loss.symmetric is False


@pytest.mark.parametrize("value", [None, "none", "None", "null"])
def test_optional_ints_accept_none(value):
    config = make(model={"max_seq_length": value}, data={"path": "x", "dev_max_corpus": value})
    assert config.model.max_seq_length is None
    assert config.data.dev_max_corpus is None
    assert make(model={"max_seq_length": "128"}).model.max_seq_length == 128


def test_metrics_from_comma_string():
    config = make(eval={"metrics": "ndcg@10, recall@100,mrr@10"})
    assert config.eval.metrics == ["ndcg@10", "recall@100", "mrr@10"]


def test_primary_metric_must_be_among_eval_metrics():
    with pytest.raises(ConfigError) as error:
        make(eval={"metrics": ["recall@10"]}, train={"primary_metric": "ndcg@10"})
    assert str(error.value).startswith("train.primary_metric:")
    config = make(eval={"metrics": ["recall@10", "MAP@100"]}, train={"primary_metric": "map@100"})
    assert config.train.primary_metric == "map@100"


@pytest.mark.parametrize(("mode", "rate"), [("full", 2e-5), ("lora", 2e-4), ("head", 2e-5)])
def test_learning_rate_defaults_to_the_modes_own(mode, rate):
    assert make(train={"mode": mode}).train.learning_rate == rate
    assert make(train={"mode": mode, "learning_rate": 3e-5}).train.learning_rate == 3e-5
    assert build_config(overrides=["data.path=d", f"train.mode={mode}"]).train.learning_rate == rate


def test_resolved_learning_rate_is_saved_and_kept_across_a_mode_change():
    saved = make(train={"mode": "lora"}).to_dict()
    assert saved["train"]["learning_rate"] == 2e-4
    assert config_from_dict({**saved, "train": {**saved["train"], "mode": "full"}}).train.learning_rate == 2e-4


def test_to_dict_round_trips():
    config = make(
        name="exp",
        model={"query_prefix": "query: ", "max_seq_length": 64},
        train={"learning_rate": 3e-5, "eval_strategy": "steps", "eval_steps": 10},
        eval={"metrics": "ndcg@10,recall@5"},
        loss={"symmetric": False, "scale": 50},
    )
    as_dict = config.to_dict()
    assert config_from_dict(as_dict) == config
    assert config_from_dict(json.loads(json.dumps(as_dict))) == config
    assert as_dict["train"]["eval_steps"] == 10 and as_dict["eval"]["metrics"] == ["ndcg@10", "recall@5"]


FILE_SETTINGS = {
    "name": "from-file",
    "data": {"path": "beir/nfcorpus"},
    "train": {"learning_rate": "1e-4", "batch_size": 16},
    "loss": {"scale": 30},
}


@pytest.fixture(params=["yaml", "json"])
def config_file(request, tmp_path):
    path = tmp_path / f"config.{request.param}"
    if request.param == "json":
        path.write_text(json.dumps(FILE_SETTINGS))
    else:
        path.write_text(yaml.safe_dump(FILE_SETTINGS))
    return path


def test_config_files_load(config_file):
    typed = {**FILE_SETTINGS, "train": {"learning_rate": 1e-4, "batch_size": 16}, "loss": {"scale": 30.0}}
    assert load_config_file(config_file) == typed
    config = build_config(config_file)
    assert config.name == "from-file"
    assert config.data.path == "beir/nfcorpus"
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert config.train.batch_size == 16
    assert config.loss.scale == 30.0
    assert config.train.epochs == TrainConfig().epochs  # untouched settings keep their defaults


def test_yaml_scientific_notation_without_dot_is_accepted(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  path: x\ntrain:\n  learning_rate: 3e-5\n")
    assert build_config(path).train.learning_rate == pytest.approx(3e-5)


def test_overrides_win_over_file(config_file):
    config = build_config(
        config_file,
        ["train.learning_rate=5e-5", "loss.scale=10", "eval.metrics=ndcg@10,recall@10", "model.max_seq_length=none"],
    )
    assert config.train.learning_rate == pytest.approx(5e-5)
    assert config.loss.scale == 10.0
    assert config.eval.metrics == ["ndcg@10", "recall@10"]
    assert config.train.batch_size == 16  # file value kept where not overridden
    assert config.model.max_seq_length is None


def test_overrides_without_file():
    config = build_config(None, ["data.path=beir/x", "train.max_steps=7", "loss.symmetric=false"])
    assert (config.data.path, config.train.max_steps, config.loss.symmetric) == ("beir/x", 7, False)
    with pytest.raises(ConfigError):
        build_config(None, [])


def test_apply_overrides_copies_and_checks_syntax():
    data = {"train": {"seed": 1}}
    result = apply_overrides(data, ["train.seed=2", "data.path=x"])
    assert result == {"train": {"seed": "2"}, "data": {"path": "x"}}  # raw text, parsed later by the setting's type
    assert data == {"train": {"seed": 1}}
    for bad in ["train.seed", "=3"]:
        with pytest.raises(ConfigError):
            apply_overrides(data, [bad])
    with pytest.raises(ConfigError):
        apply_overrides({"train": 5}, ["train.seed=2"])


def test_override_with_bad_value_names_the_setting(config_file):
    with pytest.raises(ConfigError) as error:
        build_config(config_file, ["train.learning_rate=abc"])
    assert str(error.value).startswith("train.learning_rate:")
    with pytest.raises(ConfigError) as error:
        build_config(config_file, ["train.lerning_rate=1e-5"])
    assert str(error.value).startswith("train.lerning_rate:")


def test_bad_config_files_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="parse"):
        load_config_file(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(listing)


def test_example_config_in_the_repository_is_valid():
    from pathlib import Path

    from embedtune.config import build_config

    example = Path(__file__).resolve().parents[2] / "examples" / "scifact.yaml"
    config = build_config(example)
    assert config.data.path == "../shared/datasets/scifact"
    assert config.train.learning_rate == 2e-5 and config.loss.symmetric is True
