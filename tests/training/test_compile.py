"""``train.compile``: the trainer compiles the model with inductor (transformers' torch_compile), and the run ends."""

from __future__ import annotations

import torch

from embedtune.config import build_config
from embedtune.training.arguments import training_arguments
from embedtune.training.pipeline import run_training
from tests.training.test_pipeline import tiny_config


def test_train_compile_asks_the_trainer_for_inductor(tmp_path):
    plain = training_arguments(build_config(overrides=["data.path=unused"]), tmp_path, None)
    compiled = training_arguments(build_config(overrides=["data.path=unused", "train.compile=true"]), tmp_path, None)
    assert (plain.torch_compile, plain.torch_compile_backend) == (False, None)
    assert (compiled.torch_compile, compiled.torch_compile_backend) == (True, "inductor")


def test_a_compiled_run_compiles_graphs_and_finishes(tiny_model_dir, noise_beir, tmp_path):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        config = tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.compile=true", "train.max_steps=3")
        result = run_training(config)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    finally:
        torch._dynamo.reset()
    assert result.metrics.loss_history and result.folder.joinpath("model").is_dir()
