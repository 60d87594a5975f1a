"""Training modes full and lora: an added head, per-group learning rates, the encoder freeze, LoRA runs end to end."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from transformers import TrainerCallback

from embedtune import runs
from embedtune.config import build_config
from embedtune.models.head import is_head_parameter
from embedtune.runs import RunMetrics, format_run_show
from embedtune.runs.outputs import save_model_atomic
from embedtune.training.arguments import training_arguments
from embedtune.training.mode import prepare_model_for_mode
from embedtune.training.modes import ModeSetup, encoder_view, head_learning_rate_mapping, mode_callbacks
from embedtune.training.pipeline import run_training
from tests.models.test_lora import TEXTS, encode
from tests.runs.factories import make_metrics
from tests.training.test_pipeline import assert_corpus_cached, tiny_config


def mode_config(tmp_path: Path, *overrides: str):
    return build_config(overrides=[f"data.path={tmp_path / 'data'}", f"runs_dir={tmp_path / 'runs'}", *overrides])


def load(path: Path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu")


def cosine(embeddings: torch.Tensor) -> torch.Tensor:
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    return unit @ unit.T


# --- the added head ----------------------------------------------------------------------------------------------


def test_model_with_added_head_saves_and_loads_as_unit_vectors_of_head_dim(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    setup = prepare_model_for_mode(model, mode_config(tmp_path, "head.add=true", "head.dim=16"))
    assert setup.head_start == 2 and setup.trainable == setup.total  # full mode: everything trains

    save_model_atomic(model, tmp_path / "model")
    loaded = load(tmp_path / "model")
    embeddings = loaded.encode(TEXTS, convert_to_tensor=True)
    assert embeddings.shape == (len(TEXTS), 16)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert torch.allclose(embeddings, encode(model), atol=1e-6)


@pytest.mark.parametrize("layers", [1, 2])
def test_two_layer_head_loads_too(tiny_model_dir, tmp_path, layers):
    model = load(tiny_model_dir)
    prepare_model_for_mode(model, mode_config(tmp_path, "head.add=true", "head.dim=8", f"head.layers={layers}"))
    save_model_atomic(model, tmp_path / "model")
    assert load(tmp_path / "model").encode(TEXTS).shape == (len(TEXTS), 8)


def test_a_wide_head_starts_ranking_exactly_like_the_encoder(tiny_model_dir, tmp_path):
    base = load(tiny_model_dir)
    model = load(tiny_model_dir)
    setup = prepare_model_for_mode(model, mode_config(tmp_path, "head.add=true", "head.dim=48"))  # width 32 < 48
    assert torch.allclose(cosine(encode(model)), cosine(encode(base)), atol=1e-5)
    assert torch.equal(encode(encoder_view(model, setup)), encode(base))  # the base figures use the encoder alone
    assert len(model) == 4 and len(encoder_view(model, setup)) == 2


def test_head_init_is_seeded(tiny_model_dir, tmp_path):
    embeddings = []
    for _ in range(2):
        model = load(tiny_model_dir)
        prepare_model_for_mode(model, mode_config(tmp_path, "head.add=true", "head.dim=8", "train.seed=3"))
        embeddings.append(encode(model))
    assert torch.equal(*embeddings)


def test_mode_head_changes_nothing(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    setup = prepare_model_for_mode(model, mode_config(tmp_path, "train.mode=head", "head.add=true"))
    assert setup == ModeSetup("head") and setup.record() is None
    assert len(model) == 2 and all(p.requires_grad for p in model.parameters())
    assert encoder_view(model, setup) is model


def test_lora_with_head_trains_adapter_and_head(tiny_model_dir, tmp_path, caplog):
    model = load(tiny_model_dir)
    with caplog.at_level(logging.INFO, logger="embedtune.training.modes"):
        setup = prepare_model_for_mode(model, mode_config(tmp_path, "train.mode=lora", "lora.rank=4", "head.add=true"))

    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    head = [name for name in trainable if is_head_parameter(name, model, setup.head_start)]
    assert head == ["2.linear.weight", "2.linear.bias"]
    assert all("lora_" in name for name in trainable if name not in head)
    assert setup.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert setup.record() == {
        "trainable": setup.trainable,
        "total": setup.total,
        "mode": "lora",
        "head": True,
        "lora_targets": ["query", "key", "value"],
    }
    share = 100 * setup.trainable / setup.total
    assert f"trainable parameters: {setup.trainable:,} of {setup.total:,} ({share:.2f} %)" in caplog.text


# --- learning rates and the encoder freeze -----------------------------------------------------------------------


def no_eval_arguments(config, tmp_path: Path, mapping: dict[str, float] | None, **changes):
    """The run's training arguments without dev evaluation or checkpoints (these tests have no evaluator)."""
    arguments = training_arguments(config, tmp_path / "checkpoints", None, mapping)
    return dataclasses.replace(
        arguments, eval_strategy="no", save_strategy="no", eval_on_start=False, load_best_model_at_end=False, **changes
    )


def pairs_dataset() -> Dataset:
    return Dataset.from_dict({"anchor": TEXTS * 2, "positive": list(reversed(TEXTS)) * 2})


def test_head_gets_its_own_learning_rate(tiny_model_dir, tmp_path):
    config = mode_config(tmp_path, "head.add=true", "train.learning_rate=1e-4", "train.head_learning_rate=1e-2")
    model = load(tiny_model_dir)
    setup = prepare_model_for_mode(model, config)
    loss = MultipleNegativesRankingLoss(model)
    mapping = head_learning_rate_mapping(loss, model, setup, config)
    assert list(mapping.values()) == [1e-2]
    args = no_eval_arguments(config, tmp_path, mapping)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs_dataset(), loss=loss)

    optimizer = trainer.create_optimizer()
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        expected = 1e-2 if is_head_parameter(name, model, setup.head_start) else 1e-4
        assert rate[id(parameter)] == expected, name
    assert {group["lr"] for group in optimizer.param_groups} == {1e-4, 1e-2}


def test_head_learning_rate_has_its_own_default_and_needs_a_head(tiny_model_dir, tmp_path):
    config = mode_config(tmp_path, "head.add=true", "train.learning_rate=3e-4")
    model = load(tiny_model_dir)
    setup = prepare_model_for_mode(model, config)
    mapping = head_learning_rate_mapping(MultipleNegativesRankingLoss(model), model, setup, config)
    assert list(mapping.values()) == [config.train.head_learning_rate] != [3e-4]
    plain = load(tiny_model_dir)
    no_head = prepare_model_for_mode(plain, mode_config(tmp_path))
    assert head_learning_rate_mapping(MultipleNegativesRankingLoss(plain), plain, no_head, config) is None
    assert mode_callbacks(plain, no_head, config) == []


def cpu_copies(parameters: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Detached CPU copies: the trainer moves the model to CUDA where there is one, so snapshots compare on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in parameters.items()}


class EpochSnapshots(TrainerCallback):
    """CPU copies of the chosen parameters at the end of every epoch."""

    def __init__(self, parameters: dict[str, torch.nn.Parameter]) -> None:
        self.parameters = parameters
        self.epochs: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epochs.append(cpu_copies(self.parameters))


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_encoder_stays_frozen_for_the_first_epochs(tiny_model_dir, tmp_path, mode, caplog):
    config = mode_config(
        tmp_path,
        f"train.mode={mode}",
        "head.add=true",
        "head.dim=16",
        "train.freeze_encoder_epochs=1",
        "train.learning_rate=1e-2",
        "train.warmup_ratio=0",
    )
    model = load(tiny_model_dir)
    setup = prepare_model_for_mode(model, config)
    named = dict(model.named_parameters())
    encoder = {n: p for n, p in named.items() if p.requires_grad and not is_head_parameter(n, model, setup.head_start)}
    head = {n: p for n, p in named.items() if is_head_parameter(n, model, setup.head_start)}
    start = cpu_copies({**encoder, **head})
    snapshots = EpochSnapshots({**encoder, **head})
    loss = MultipleNegativesRankingLoss(model)
    mapping = head_learning_rate_mapping(loss, model, setup, config)
    args = no_eval_arguments(config, tmp_path, mapping, num_train_epochs=2, per_device_train_batch_size=4)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=pairs_dataset(),
        loss=loss,
        callbacks=[*mode_callbacks(model, setup, config), snapshots],
    )
    with caplog.at_level(logging.INFO, logger="embedtune.training"):
        trainer.train()

    first, last = snapshots.epochs
    assert all(torch.equal(first[name], start[name]) for name in encoder)  # bit-identical while frozen
    assert any(not torch.equal(first[name], start[name]) for name in head)  # while the head learned
    assert any(not torch.equal(last[name], first[name]) for name in encoder if "lora_A" not in name)
    assert all(p.requires_grad for p in encoder.values())  # the flags are given back
    assert "Encoder frozen for the first 1 epoch(s)" in caplog.text and "encoder unfrozen" in caplog.text


# --- runs end to end ---------------------------------------------------------------------------------------------


def test_lora_run_writes_adapter_and_merged_model(tiny_model_dir, noise_beir, tmp_path, caplog):
    config = tiny_config(
        tiny_model_dir,
        noise_beir,
        tmp_path / "runs",
        "train.mode=lora",
        "lora.rank=8",
        "train.epochs=5",
        "train.learning_rate=2e-1",
        "train.selection_alpha=none",  # 6 dev queries: too few for the paired test; this test is about LoRA's files
    )
    with caplog.at_level(logging.INFO):
        result = run_training(config)

    assert "Could not load the best model" not in caplog.text
    assert result.metrics.selection.chosen == "fine_tuned"
    folder = result.folder
    adapter = folder / "adapter"
    assert {p.name for p in adapter.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "embedtune.json",
    }
    notes = json.loads((adapter / "embedtune.json").read_text())
    assert notes["base_model"] == str(tiny_model_dir) and notes["lora"]["rank"] == 8
    assert notes["lora"]["target_modules"] == ["query", "key", "value"]
    assert not list((folder / "model").rglob("adapter_config.json"))  # model/ is plain: the adapter is merged
    assert not list(folder.glob(".*.partial"))

    merged = load(folder / "model")
    base_plus_adapter = load(tiny_model_dir)
    base_plus_adapter.load_adapter(str(adapter))
    assert torch.allclose(encode(merged), encode(base_plus_adapter), atol=1e-5)
    assert not torch.allclose(encode(merged), encode(load(tiny_model_dir)), atol=1e-4)
    assert_corpus_cached(merged, config)

    counts = json.loads((folder / "metrics.json").read_text())["trainable_parameters"]
    assert counts == {
        "trainable": 2 * 3 * (8 * 32 + 32 * 8),
        "total": counts["total"],
        "mode": "lora",
        "head": False,
        "lora_targets": ["query", "key", "value"],
    }
    assert counts["total"] == sum(p.numel() for p in load(tiny_model_dir).parameters()) + counts["trainable"]
    assert runs.load_run(folder).metrics.trainable_parameters == counts
    assert "Trainable parameters: 3,072 of" in format_run_show(runs.load_run(folder))


def test_lora_run_that_keeps_the_base_writes_no_adapter(tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "train.mode=lora", "train.learning_rate=1e-12")
    result = run_training(config)
    assert result.metrics.selection.chosen == "base"
    assert not (result.folder / "adapter").exists()
    assert torch.equal(encode(load(result.folder / "model")), encode(load(tiny_model_dir)))
    assert result.metrics.trainable_parameters["mode"] == "lora"


def test_full_run_with_head_and_encoder_freeze(tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(
        tiny_model_dir,
        tiny_beir,
        tmp_path / "runs",
        "head.add=true",
        "head.dim=16",
        "train.epochs=2",
        "train.freeze_encoder_epochs=1",
        "train.head_learning_rate=1e-2",
    )
    result = run_training(config)

    base_only = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "plain", "train.learning_rate=1e-12"))
    assert result.metrics.report.base == base_only.metrics.report.base  # base figures: the encoder, no head
    log = (result.folder / "train.log").read_text()
    assert "Encoder frozen for the first 1 epoch(s)" in log and "encoder unfrozen" in log
    assert result.metrics.trainable_parameters["head"] is True
    dim = 32 if result.metrics.selection.chosen == "base" else 16
    assert load(result.folder / "model").encode(TEXTS).shape == (len(TEXTS), dim)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_with_a_narrowing_head_the_base_that_competes_is_the_encoder_alone(tiny_model_dir, tiny_beir, tmp_path, mode):
    rates = ("train.learning_rate=1e-12", "train.head_learning_rate=1e-12")  # nothing learns: the base must win
    lora = ("train.mode=lora", "lora.rank=4") if mode == "lora" else ()
    plain = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "plain", *rates, *lora))
    headed = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "head", *rates, *lora, "head.add=true", "head.dim=8")
    result = run_training(headed)

    # the step-0 dev entry is the encoder alone (as in a run without a head), not the encoder + an untrained 8-d head
    assert result.metrics.dev_history[0] == plain.metrics.dev_history[0]
    assert result.metrics.selection.base_dev == plain.metrics.selection.base_dev
    assert result.metrics.selection.chosen == "base"
    assert not (result.folder / "adapter").exists()
    shipped = load(result.folder / "model")
    assert len(shipped) == 2  # no head modules
    assert torch.equal(encode(shipped), encode(load(tiny_model_dir)))  # model/ is the base model, 32-d


# --- the record --------------------------------------------------------------------------------------------------


def test_metrics_without_trainable_parameters_still_read(tmp_path):
    data = make_metrics().to_dict()
    data.pop("trainable_parameters")
    assert RunMetrics.from_dict(data, tmp_path / "metrics.json").trainable_parameters is None
    data["trainable_parameters"] = {"trainable": 10, "total": 100, "mode": "lora"}
    assert RunMetrics.from_dict(data, tmp_path / "metrics.json").trainable_parameters["total"] == 100
    data["trainable_parameters"] = {"trainable": "ten", "total": 100, "mode": "lora"}
    with pytest.raises(runs.RunRecordError, match="trainable_parameters.trainable"):
        RunMetrics.from_dict(data, tmp_path / "metrics.json")
