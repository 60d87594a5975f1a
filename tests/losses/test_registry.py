import dataclasses
import subprocess
import sys

import pytest

from embedtune.cli import main
from embedtune.config import ConfigError, LossConfig
from embedtune.data.prepare import prepare_data
from embedtune.losses import COMMON_SETTINGS, OBJECTIVES, build_loss, builder_of, ignored_settings
from embedtune.losses.info_nce import InfoNCELoss
from embedtune.losses.registry import names
from embedtune.training import fine_tune, pipeline, preflight
from embedtune.training.pipeline import run_training
from tests.training.test_pipeline import tiny_config
from tests.training.test_resume import child_env


def test_every_configurable_loss_name_is_registered_and_back():
    assert names() == tuple(OBJECTIVES) and all(callable(builder_of(name)) for name in names())


def test_build_loss_passes_the_settings(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    loss = build_loss(model, LossConfig(name="infonce", scale=30.0, symmetric=False))
    assert isinstance(loss, InfoNCELoss) and loss.scale == 30.0 and loss.symmetric is False


def test_unknown_loss_name_is_rejected():
    config = LossConfig()
    config.name = "nope"
    with pytest.raises(ValueError, match="loss.name"):
        build_loss(None, config)


# ------------------------------------------------------------- each objective declares the settings it reads


def test_every_setting_is_read_by_some_objective_and_every_builder_resolves():
    declared = {setting for objective in OBJECTIVES.values() for setting in objective.settings}
    fields = {field.name for field in dataclasses.fields(LossConfig)}
    assert declared | set(COMMON_SETTINGS) == fields  # no setting that nothing reads, no typo in the registry
    assert {name for name, objective in OBJECTIVES.items() if objective.pairs} == {"cosent", "cosine_mse"}


def test_reading_the_registry_and_the_settings_imports_no_torch():
    code = "import sys, embedtune.config, embedtune.losses; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env())


def test_defaults_an_objective_ignores_are_no_error():
    config = LossConfig(name="mnrl")  # loss.symmetric and loss.mask_false_negatives are on by default
    assert config.symmetric and config.mask_false_negatives and ignored_settings(config) == []
    assert ignored_settings(LossConfig(name="cosine_mse")) == []
    assert ignored_settings(LossConfig(name="mnrl", directions=["query_to_doc"])) == []  # the default, given


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"name": "mnrl", "isotropy_weight": 0.1}, "isotropy_weight"),
        ({"name": "mnrl", "guide": True}, "guide"),
        ({"name": "mnrl", "guide_model": "some/model"}, "guide_model"),
        ({"name": "mnrl", "symmetric": False}, "symmetric"),
        ({"name": "mnrl", "mask_false_negatives": False}, "mask_false_negatives"),
        ({"name": "infonce", "directions": ["doc_to_query"]}, "directions"),
        ({"name": "infonce", "hardness_mode": "hard_negatives"}, "hardness_mode"),
        ({"name": "cosine_mse", "scale": 10.0}, "scale"),
    ],
)
def test_a_setting_the_objective_does_not_read_is_an_error_naming_both(settings, key):
    with pytest.raises(ConfigError) as error:
        LossConfig(**settings)
    message = str(error.value)
    assert message.startswith(f"loss.{key}: not used by loss.name {settings['name']} ") and "\n" not in message


@pytest.mark.parametrize("setting", ["loss.isotropy_weight=0.1", "loss.guide=true"])
def test_cli_refuses_mnrl_with_an_infonce_setting_before_any_model_loads(
    tiny_model_dir, tiny_beir, tmp_path, capsys, monkeypatch, setting
):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(pipeline, "load_base_model", no_loading)
    monkeypatch.setattr(preflight, "check_model_available", no_loading)
    runs_dir = tmp_path / "runs"
    argv = ["train", "--data", str(tiny_beir), "--model", str(tiny_model_dir), "--runs-dir", str(runs_dir)]
    key = setting.split("=")[0]
    guide = ["--set", f"loss.guide_model={tiny_model_dir}"] if key == "loss.guide" else []  # a guide it could load
    assert main([*argv, "--set", "loss.name=mnrl", "--set", setting, *guide]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}: not used by loss.name mnrl") and err.count("\n") == 1
    assert not runs_dir.exists()


def test_mnrl_with_defaults_trains_and_loads_no_guide(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    loaded = []
    load_model = fine_tune.load_model
    monkeypatch.setattr(fine_tune, "load_model", lambda *a, **k: loaded.append(a) or load_model(*a, **k))
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "loss.name=mnrl", "train.max_steps=2")
    result = run_training(config)
    assert result.metrics.loss_history and loaded == []

    config.loss.guide, config.loss.guide_model = True, str(tiny_model_dir)  # past the checks: still nothing loads
    data = prepare_data(config.data)
    _, context = fine_tune.training_data(config, data)
    assert context.guide is None and loaded == []
    config.loss.name = "infonce"  # the objective that reads the guide does load it
    assert fine_tune.training_data(config, data)[1].guide is not None and len(loaded) == 1
