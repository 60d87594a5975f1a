"""data.mix in training: one dataset per source, batches that never mix them, both samplers, a whole run."""

from __future__ import annotations

import pytest
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from embedtune.data.prepare import prepare_data
from embedtune.losses import build_loss
from embedtune.training.arguments import training_arguments
from embedtune.training.fine_tune import training_data
from embedtune.training.pipeline import run_training
from tests.conftest import write_noise_beir
from tests.training.test_objectives_pipeline import finished
from tests.training.test_pipeline import tiny_config


def batches_by_source(tiny_model_dir, tiny_beir, tmp_path, sampling: str) -> tuple[list[str], dict[str, range]]:
    """Run the trainer's own dataloader over a mixed dataset; return the source of every batch, in order."""
    extra = write_noise_beir(tmp_path / "noise")
    config = tiny_config(
        tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.mix={extra}", f"data.mix_sampling={sampling}"
    )
    data = prepare_data(config.data)
    datasets, context = training_data(config, data)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    args = training_arguments(config, tmp_path / "out", None)
    args.eval_strategy, args.eval_on_start, args.load_best_model_at_end = "no", False, False  # batches only
    trainer = SentenceTransformerTrainer(
        model, args, train_dataset=datasets, loss=build_loss(model, config.loss, context)
    )
    ranges, start = {}, 0
    for name, part in datasets.items():
        ranges[name] = range(start, start + len(part))
        start += len(part)
    sources = []
    for batch in trainer.get_train_dataloader():
        rows = {int(row) for row in batch["label"][:, 0]}
        owners = {name for name, span in ranges.items() if rows <= set(span)}
        assert len(owners) == 1, f"a batch mixes sources: rows {sorted(rows)}"
        sources.append(owners.pop())
    return sources, ranges


def test_proportional_batches_keep_to_one_source_and_cover_every_row(tiny_model_dir, tiny_beir, tmp_path):
    sources, ranges = batches_by_source(tiny_model_dir, tiny_beir, tmp_path, "proportional")
    assert set(ranges) == {"main", "noise"}
    assert sources.count("noise") == 3 and sources.count("main") == 1  # 24 rows in batches of 8; main has 8 rows


def test_round_robin_alternates_until_the_smallest_source_runs_out(tiny_model_dir, tiny_beir, tmp_path):
    sources, _ = batches_by_source(tiny_model_dir, tiny_beir, tmp_path, "round_robin")
    assert sources in (["main", "noise"], ["noise", "main"])


def test_a_mixed_run_trains_and_records_the_sources(tiny_model_dir, tiny_beir, tmp_path):
    extra = write_noise_beir(tmp_path / "noise")
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.mix={extra}", "train.max_steps=3")
    metrics = finished(run_training(config))
    assert metrics["splits"]["mix_examples"] == 24
    assert metrics["num_train_examples"] == metrics["splits"]["train_examples"]
    assert any(
        str(extra) in path for path in (next((tmp_path / "runs").iterdir()) / "run.json").read_text().split('"')
    )


@pytest.mark.parametrize("name", ["margin_mse"])
def test_distillation_needs_scores_in_every_source(tiny_model_dir, tiny_beir, tmp_path, name):
    from embedtune.config import ConfigError
    from tests.training.test_objectives_pipeline import write_scored_file

    scored = write_scored_file(tmp_path / "scored.jsonl")
    extra = write_scored_file(tmp_path / "unscored.jsonl", scores=False)
    extra.write_text(extra.read_text().replace("what color", "which colour"))  # other queries than the run's own
    config = tiny_config(
        tiny_model_dir,
        tiny_beir,
        tmp_path / "runs",
        f"data.train_file={scored}",
        f"data.mix={extra}",
        f"loss.name={name}",
    )
    with pytest.raises(ConfigError, match="trains on teacher scores, but the record of query"):
        run_training(config)
