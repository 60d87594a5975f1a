"""train.mode: head — a projection head trained on the frozen encoder's cached embeddings."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.config import build_config
from embedtune.data.prepare import prepare_data
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.models.loading import load_base_model
from embedtune.training.head_data import principal_directions
from embedtune.training.head_training import train_head
from embedtune.training.pipeline import run_training
from embedtune.training.selection import dev_history


def head_config(model_dir: Path, data_dir: Path, runs_dir: Path, *extra: str):
    return build_config(
        overrides=[
            f"model.name_or_path={model_dir}",
            f"data.path={data_dir}",
            f"runs_dir={runs_dir}",
            "name=head",
            "train.mode=head",
            "head.dim=16",
            "train.batch_size=8",
            "train.epochs=2",
            "train.learning_rate=1e-5",  # the head must use head_learning_rate, not this
            "train.head_learning_rate=3e-2",
            "train.logging_steps=1",
            "data.dev_fraction=0.25",
            *extra,
        ]
    )


class EncoderCalls:
    """Counts the texts the encoder's forward pass embeds."""

    def __init__(self, model: SentenceTransformer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts = 0
        forward = model.forward

        def counting_forward(features, *args, **kwargs):
            self.texts += int(features["input_ids"].shape[0])
            return forward(features, *args, **kwargs)

        monkeypatch.setattr(model, "forward", counting_forward)


def train(config, tmp_path: Path, name: str, cache: EmbeddingCache | None, monkeypatch):
    data = prepare_data(config.data)
    model = load_base_model(config)
    calls = EncoderCalls(model, monkeypatch)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folder = tmp_path / name
    folder.mkdir()
    result = train_head(config, data, model, folder, cache)
    return data, model, calls, before, result


def distinct_texts(data, max_negatives: int) -> int:
    queries = {example.query for example in data.train_examples} | set(data.dev.queries.values())
    documents = {text for example in data.train_examples for text in (*example.pos, *example.neg[:max_negatives])}
    return len(queries) + len(documents | set(data.dev.corpus.values()))


def head_weights(result) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in result.trainer.model.state_dict().items()}


def test_each_distinct_text_is_encoded_once_and_a_warm_cache_encodes_none(
    tiny_model_dir, tiny_beir, tmp_path, monkeypatch
):
    config = head_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "train.epochs=3")
    cache = EmbeddingCache(tmp_path / "cache")
    data, model, calls, before, first = train(config, tmp_path, "first", cache, monkeypatch)

    # 3 epochs, 4 dev evaluations: every text went through the encoder exactly once.
    assert calls.texts == distinct_texts(data, config.data.max_hard_negatives)
    history = dev_history(first.state.log_history, "ndcg@10")
    steps = [entry["step"] for entry in history]
    assert len(steps) == 4 and steps[0] == 0 and steps == sorted(set(steps))
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())  # encoder untouched

    evaluated = calls.texts
    again = first.trainer.evaluate()  # dev evaluation re-applies the head to the cached dev embeddings
    assert calls.texts == evaluated
    assert again["eval_dev_ndcg@10"] == history[-1]["ndcg@10"]

    _, _, warm_calls, _, second = train(config, tmp_path, "second", cache, monkeypatch)
    assert warm_calls.texts == 0  # everything came from the on-disk cache
    first_head, second_head = head_weights(first), head_weights(second)
    assert first_head.keys() == second_head.keys()
    assert all(torch.equal(first_head[key], second_head[key]) for key in first_head)  # same seed, same head


def test_without_a_cache_texts_are_still_encoded_once(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    config = head_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "eval.cache_max_gb=0")
    data, _, calls, _, result = train(config, tmp_path, "run", None, monkeypatch)
    assert calls.texts == distinct_texts(data, config.data.max_hard_negatives)
    assert len(dev_history(result.state.log_history, "ndcg@10")) == 3


@pytest.mark.parametrize("dim", [16, 32])
def test_step_0_is_the_untouched_encoder_and_a_full_width_head_starts_there(
    tiny_model_dir, tiny_beir, tmp_path, monkeypatch, dim
):
    # One step, taken at learning rate 0 (the warm-up's first step): the evaluation after it is the initial head.
    config = head_config(tiny_model_dir, tiny_beir, tmp_path / "runs", f"head.dim={dim}", "train.max_steps=1")
    data, model, _, _, result = train(config, tmp_path, "run", None, monkeypatch)
    split = data.dev
    base = RetrievalEvaluator(split.corpus, split.queries, split.qrels, name="dev", metrics=config.eval.metrics)(model)
    evaluations = [entry for entry in result.state.log_history if "eval_dev_ndcg@10" in entry]
    assert [entry["step"] for entry in evaluations] == [0, 1]
    for key, value in base.items():
        assert evaluations[0][f"eval_{key}"] == pytest.approx(value, abs=1e-6)  # the base model to beat
        if dim == 32:  # the encoder's width: the initial projection is a rotation, which keeps every cosine
            assert evaluations[1][f"eval_{key}"] == pytest.approx(value, abs=1e-6)


def test_principal_directions_are_orthonormal_and_ordered():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(500, 6, generator=generator) * torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    directions = principal_directions(features, 3)
    assert directions.shape == (3, 6)
    assert torch.allclose(directions @ directions.T, torch.eye(3), atol=1e-5)
    assert torch.equal(directions.abs().argmax(dim=1), torch.tensor([0, 1, 2]))
    wider = principal_directions(features, 8, seed=1)
    assert wider.shape == (8, 6) and torch.equal(wider, principal_directions(features, 8, seed=1))


def test_the_loss_falls_and_dev_rises_on_a_learnable_problem(tiny_model_dir, noise_beir, tmp_path, monkeypatch):
    steps = ("train.eval_strategy=steps", "train.eval_steps=30")  # 90 steps: fewer evaluations, same training
    config = head_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.epochs=30", "head.dim=32", *steps)
    _, _, _, _, result = train(config, tmp_path, "run", None, monkeypatch)
    losses = [entry["loss"] for entry in result.state.log_history if "loss" in entry]
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    rates = [entry["learning_rate"] for entry in result.state.log_history if "learning_rate" in entry]
    assert max(rates) == pytest.approx(3e-2)  # train.head_learning_rate, not train.learning_rate
    history = dev_history(result.state.log_history, "ndcg@10")
    assert history[0]["ndcg@10"] < 0.2 and max(entry["ndcg@10"] for entry in history) > 0.8
    assert result.state.best_global_step is not None


def test_a_head_mode_run_saves_a_plain_sentence_transformer_with_the_head(tiny_model_dir, noise_beir, tmp_path):
    steps = ("train.eval_strategy=steps", "train.eval_steps=15")
    config = head_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.epochs=30", "head.dim=16", *steps)
    result = run_training(config)

    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["dev_history"]] == [0, 15, 30, 45, 60, 75, 90]
    assert metrics["selection"]["chosen"] == "fine_tuned"
    assert metrics["report"]["fine_tuned"]["ndcg@10"] > metrics["report"]["base"]["ndcg@10"]
    assert metrics["loss_history"] and "loss/infonce_query_to_doc" in metrics["loss_history"][0]
    assert "distinct texts" in (result.folder / "train.log").read_text()
    assert not (result.folder / "checkpoints").exists()

    tuned = SentenceTransformer(str(result.folder / "model"), device="cpu")
    embeddings = tuned.encode(["apple pear", "the car is fast", "what"], convert_to_tensor=True)
    assert embeddings.shape == (3, 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    base = SentenceTransformer(str(tiny_model_dir), device="cpu")
    base_weights = base[0].state_dict()
    assert all(torch.equal(base_weights[key], value) for key, value in tuned[0].state_dict().items())


def test_a_head_mode_run_encodes_each_document_once_and_reports_what_the_saved_model_scores(
    tiny_model_dir, noise_beir, tmp_path, monkeypatch
):
    encoded: Counter[str] = Counter()
    encode_document = SentenceTransformer.encode_document

    def counting(self, sentences, *args, **kwargs):
        encoded.update([sentences] if isinstance(sentences, str) else sentences)
        return encode_document(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode_document", counting)
    steps = ("train.eval_strategy=steps", "train.eval_steps=30")
    config = head_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.epochs=30", "head.dim=16", *steps)
    result = run_training(config)

    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert metrics["selection"]["chosen"] == "fine_tuned"
    assert encoded and max(encoded.values()) == 1  # the fine-tuned model's encoder embeddings came from the cache
    monkeypatch.setattr(SentenceTransformer, "encode_document", encode_document)
    data = prepare_data(config.data)
    saved = SentenceTransformer(str(result.folder / "model"), device="cpu")
    split = data.report
    fresh = RetrievalEvaluator(split.corpus, split.queries, split.qrels, metrics=config.eval.metrics)(saved)
    for key, value in fresh.items():
        assert metrics["report"]["fine_tuned"][key] == pytest.approx(value, abs=1e-6)


def write_negatives_file(path: Path, weight: float) -> Path:
    fruits = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum"]
    rows = [
        {"query": f"what color is the {fruit}", "pos": [f"the {fruit} is sweet fruit"]}
        | {"neg": ["the car is fast", f"the {fruit} tree"], "neg_weights": [weight, 1.0]}
        for fruit in fruits
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_weighted_hard_negatives_reach_the_head_loss(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    first_losses = []
    for weight in (0.5, 50.0):
        train_file = write_negatives_file(tmp_path / f"train-{weight}.jsonl", weight)
        config = head_config(
            tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.train_file={train_file}", "train.max_steps=1"
        )
        data, _, calls, _, result = train(config, tmp_path, f"run-{weight}", None, monkeypatch)
        assert calls.texts == distinct_texts(data, config.data.max_hard_negatives)  # negatives encoded once too
        first_losses.append(next(entry["loss"] for entry in result.state.log_history if "loss" in entry))
    assert first_losses[1] > first_losses[0] + 0.1  # a larger weight multiplies exp(sim) in the denominator


@pytest.mark.parametrize("setting", ["loss.guide=true", "loss.name=mnrl", "head.layers=2"])
def test_other_objectives_and_heads_train(tiny_model_dir, tiny_beir, tmp_path, monkeypatch, setting):
    config = head_config(tiny_model_dir, tiny_beir, tmp_path / "runs", setting, "train.max_steps=2")
    _, _, _, _, result = train(config, tmp_path, "run", None, monkeypatch)
    losses = [entry["loss"] for entry in result.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert result.model.encode(["apple"]).shape == (1, 16)


def test_resuming_from_a_checkpoint_continues_the_same_run(tiny_model_dir, noise_beir, tmp_path, monkeypatch):
    config = head_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.epochs=2")
    cache = EmbeddingCache(tmp_path / "cache")
    _, _, _, _, whole = train(config, tmp_path, "whole", cache, monkeypatch)
    checkpoints = sorted((tmp_path / "whole" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    first_epoch = checkpoints[0]

    data = prepare_data(config.data)
    folder = tmp_path / "resumed"
    (folder / "checkpoints").mkdir(parents=True)
    resume_from = folder / "checkpoints" / first_epoch.name
    shutil.copytree(first_epoch, resume_from)
    resumed = train_head(config, data, load_base_model(config), folder, cache, resume_from_checkpoint=str(resume_from))

    def losses_after(result, step):
        return [entry["loss"] for entry in result.state.log_history if "loss" in entry and entry["step"] > step]

    step = int(first_epoch.name[11:])
    assert losses_after(resumed, step) == pytest.approx(losses_after(whole, step), abs=1e-6)
    whole_head, resumed_head = head_weights(whole), head_weights(resumed)
    assert all(torch.allclose(whole_head[key], resumed_head[key], atol=1e-6) for key in whole_head)
