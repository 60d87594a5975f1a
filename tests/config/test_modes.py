"""The training-mode sections (lora, head, curriculum) and the train settings that go with them."""

from __future__ import annotations

import pytest

from embedtune.config import ConfigError, build_config, config_from_dict

DATA = ["data.path=beir/scifact"]


def build(*overrides: str):
    return build_config(None, [*DATA, *overrides])


def test_defaults_train_the_full_model_without_head_or_curriculum():
    config = build()
    assert config.train.mode == "full"
    assert not config.has_head
    assert (config.lora.rank, config.lora.alpha, config.lora.target_modules) == (8, 16.0, None)
    assert (config.head.dim, config.head.layers) == (256, 1)
    assert not config.curriculum.enabled
    assert config.curriculum.phases == ["easy", "medium", "hard"]


def test_head_mode_and_head_add_both_mean_a_head():
    assert build("train.mode=head").has_head
    assert build("head.add=true").has_head


def test_settings_round_trip_through_to_dict():
    overrides = ["train.mode=lora", "lora.target_modules=q,v", "curriculum.enabled=true", "curriculum.thresholds=-1,0"]
    config = build(*overrides)
    again = config_from_dict(config.to_dict())
    assert again == config
    assert again.lora.target_modules == ["q", "v"]
    assert again.curriculum.thresholds == [-1.0, 0.0]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.mode=adapter", "train.mode"),
        ("lora.rank=0", "lora.rank"),
        ("lora.alpha=-1", "lora.alpha"),
        ("lora.dropout=1", "lora.dropout"),
        ("head.dim=0", "head.dim"),
        ("head.layers=3", "head.layers"),
        ("head.activation=swish", "head.activation"),
        ("train.head_learning_rate=0", "train.head_learning_rate"),
        ("train.freeze_encoder_epochs=-1", "train.freeze_encoder_epochs"),
        ("curriculum.source=random", "curriculum.source"),
        ("curriculum.phases=easy,easy", "curriculum.phases"),
        ("curriculum.thresholds=0.1", "curriculum.thresholds"),
        ("curriculum.epochs_per_phase=0", "curriculum.epochs_per_phase"),
    ],
)
def test_bad_values_name_the_setting(override, key):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        build(override)


def test_thresholds_must_increase():
    with pytest.raises(ConfigError, match="^curriculum.thresholds: must be increasing"):
        build("curriculum.thresholds=0.2,0.1")


def test_freezing_the_encoder_needs_a_head_on_a_trainable_encoder():
    with pytest.raises(ConfigError, match="^train.freeze_encoder_epochs:"):
        build("train.freeze_encoder_epochs=1")
    with pytest.raises(ConfigError, match="^train.freeze_encoder_epochs:"):
        build("train.freeze_encoder_epochs=1", "train.mode=head", "head.add=true")
    assert build("train.freeze_encoder_epochs=1", "head.add=true").train.freeze_encoder_epochs == 1.0


def test_head_mode_refuses_pair_objectives():
    with pytest.raises(ConfigError, match="^train.mode: head trains from cached embeddings"):
        build("train.mode=head", "loss.name=cosent")


@pytest.mark.parametrize(
    ("override", "key"),
    [("loss.matryoshka=true", "loss.matryoshka"), ("curriculum.enabled=true", "curriculum.enabled")],
)
def test_head_mode_refuses_what_it_cannot_train(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: is not supported with train.mode=head"):
        build("train.mode=head", override)
