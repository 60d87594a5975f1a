"""Adding a training mode is this one module: a TrainingMode subclass and one register_mode entry naming it."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.config import ConfigError
from embedtune.config.modes import TRAIN_MODES, Mode, register_mode
from embedtune.training.mode import FullMode
from embedtune.training.modes import ModeSetup
from embedtune.training.pipeline import run_training
from tests.training.test_pipeline import tiny_config

PREPARED: list[ModeSetup] = []
TRAINED: list[dict[str, torch.Tensor]] = []


class LastLayerMode(FullMode):
    """Train the encoder's last transformer layer only; everything else is the full mode's."""

    def prepare(self, model: SentenceTransformer, config) -> ModeSetup:
        setup = super().prepare(model, config)
        last = max(
            int(name.split(".layer.")[1].split(".")[0]) for name, _ in model.named_parameters() if ".layer." in name
        )
        for name, parameter in model.named_parameters():
            parameter.requires_grad = f".layer.{last}." in name
        PREPARED.append(setup)
        return setup

    def train(self, *args, **kwargs):
        trainer = super().train(*args, **kwargs)
        TRAINED.append({name: value.detach().cpu().clone() for name, value in trainer.model.state_dict().items()})
        return trainer


@pytest.fixture
def registered():
    register_mode("last_layer", Mode(f"{__name__}:LastLayerMode", "test: the last layer only"))
    PREPARED.clear()
    TRAINED.clear()
    yield
    del TRAIN_MODES["last_layer"]


def test_a_registered_mode_trains_end_to_end_through_its_own_hooks(registered, tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(
        tiny_model_dir,
        tiny_beir,
        tmp_path / "runs",
        "train.mode=last_layer",
        "train.max_steps=3",
        "train.warmup_ratio=0",
    )
    result = run_training(config)
    assert len(PREPARED) == len(TRAINED) == 1 and (result.folder / "model").is_dir()
    base = SentenceTransformer(str(tiny_model_dir), device="cpu").state_dict()
    trained = TRAINED[0]  # the trained model, whatever dev selection then chose
    changed = {name for name, value in trained.items() if not torch.equal(value, base[name])}
    assert changed and all(".layer." in name for name in changed)
    assert len({name.split(".layer.")[1].split(".")[0] for name in changed}) == 1  # one layer only


def test_the_configuration_accepts_a_registered_mode_and_refuses_an_unknown_one(registered, tiny_beir):
    from embedtune.config import build_config

    assert build_config(None, [f"data.path={tiny_beir}", "train.mode=last_layer"]).train.mode == "last_layer"
    with pytest.raises(ConfigError, match="train.mode"):
        build_config(None, [f"data.path={tiny_beir}", "train.mode=other"])
    with pytest.raises(ValueError, match="already registered"):
        register_mode("full", TRAIN_MODES["full"])
