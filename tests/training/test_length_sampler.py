"""Length-grouped batches: every row once, no duplicate text in a batch, less padding than random batches."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

from embedtune.config import ConfigError, build_config
from embedtune.training.arguments import training_arguments
from embedtune.training.length_sampler import LengthGroupedBatchSampler
from embedtune.training.pipeline import run_training
from tests.training.test_pipeline import tiny_config


def varied_dataset(rows: int = 300, seed: int = 0) -> Dataset:
    generator = np.random.default_rng(seed)
    queries = [f"query {generator.integers(0, rows // 3)}" for _ in range(rows)]  # repeated queries
    positives = [f"passage {index} " + "word " * int(generator.integers(1, 200)) for index in range(rows)]
    return Dataset.from_dict({"anchor": queries, "positive": positives, "label": [float(i) for i in range(rows)]})


def sampler(cls, dataset: Dataset, epoch: int = 0, drop_last: bool = False):
    built = cls(dataset, 16, drop_last, valid_label_columns=["label"], generator=torch.Generator(), seed=7)
    built.set_epoch(epoch)
    return built


def padded_characters(dataset: Dataset, batches: list[list[int]]) -> int:
    lengths = np.array([len(text) for text in dataset["positive"]])
    return sum(int(lengths[batch].max()) * len(batch) for batch in batches)


def test_every_row_once_without_duplicate_texts_and_with_less_padding():
    dataset = varied_dataset()
    grouped = list(sampler(LengthGroupedBatchSampler, dataset))
    assert sorted(row for batch in grouped for row in batch) == list(range(len(dataset)))
    for batch in grouped:
        texts = [dataset[row][column] for row in batch for column in ("anchor", "positive")]
        assert len(texts) == len(set(texts))
    assert len(grouped) <= -(-len(dataset) // 16) + 1  # only the pass's tail can leave batches short
    plain = list(sampler(NoDuplicatesBatchSampler, dataset))
    assert padded_characters(dataset, grouped) < 0.8 * padded_characters(dataset, plain)


def test_the_order_follows_seed_and_epoch():
    dataset = varied_dataset()
    first = list(sampler(LengthGroupedBatchSampler, dataset, epoch=0))
    assert first == list(sampler(LengthGroupedBatchSampler, dataset, epoch=0))
    assert first != list(sampler(LengthGroupedBatchSampler, dataset, epoch=1))


def test_drop_last_keeps_full_batches_only():
    batches = list(sampler(LengthGroupedBatchSampler, varied_dataset(), drop_last=True))
    assert batches and all(len(batch) == 16 for batch in batches)


def test_the_setting_picks_the_sampler_and_refuses_a_curriculum(tmp_path):
    config = build_config(overrides=["data.path=unused", "train.group_by_length=true"])
    assert training_arguments(config, tmp_path, None).batch_sampler is LengthGroupedBatchSampler
    with pytest.raises(ConfigError, match="train.group_by_length"):
        build_config(overrides=["data.path=unused", "train.group_by_length=true", "curriculum.enabled=true"])


def test_a_run_trains_with_length_grouped_batches(tiny_model_dir, noise_beir, tmp_path):
    result = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.group_by_length=true"))
    assert result.metrics.loss_history and result.metrics.dev_history
