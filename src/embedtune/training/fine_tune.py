"""Fine-tune the encoder (full or LoRA, with an optional head) with sentence-transformers' trainer, selecting on dev.

The dev evaluator ranks dev queries against a candidate pool chosen once with the base model; the trainer evaluates
before the first step (so the untouched model competes: with an added head, the encoder alone) and after every epoch
or ``eval_steps``, and keeps the best checkpoint. A run resumed from a checkpoint continues with the optimiser,
scheduler, random states and data order the checkpoint saved (:func:`fine_tune` with ``resume_from``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.data.mix import MAIN_DATASET
from embedtune.data.prepare import EvalSplit, PreparedData
from embedtune.evaluation.candidate_pool import dev_candidate_pool
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.losses import LossContext, build_loss
from embedtune.losses.registry import objective_of, uses_guide_model
from embedtune.models.loading import load_model
from embedtune.models.prompts import document_prompt, query_prompt
from embedtune.runs.layout import CHECKPOINTS_DIR
from embedtune.training import modes
from embedtune.training.arguments import column_prompts, training_arguments
from embedtune.training.curriculum import build_curriculum
from embedtune.training.dataset import build_mixed_dataset, build_objective_dataset
from embedtune.training.pair_dataset import build_pair_dataset
from embedtune.training.selection import dev_evaluator
from embedtune.training.trainer_setup import run_writer, standard_callbacks, train_and_close

logger = logging.getLogger(__name__)


def fine_tune(
    config: ExperimentConfig,
    data: PreparedData,
    model: SentenceTransformer,
    folder: Path,
    cache: EmbeddingCache | None,
    setup: modes.ModeSetup,
    resume_from: Path | None = None,
) -> SentenceTransformerTrainer:
    """Train ``model`` in place with the configured objective, evaluating dev and keeping the best checkpoint.

    Args:
        config: The run settings.
        data: The validated data (training rows, dev split).
        model: The model to train (with LoRA adapters or a head already added, see ``setup``).
        folder: The run folder: checkpoints go to ``checkpoints/``, TensorBoard events to ``tensorboard/``.
        cache: The embedding cache the dev candidate pool is chosen with, or ``None``.
        setup: What :meth:`embedtune.training.mode.TrainingMode.prepare` added to the model.
        resume_from: A checkpoint folder of this run to continue from (weights, optimiser, scheduler, random states
            and position in the data order); ``None`` starts from step 0.

    Returns:
        The trainer after training, its model holding the best dev checkpoint (``state.best_global_step``).
    """
    train_dataset, context = training_data(config, data)
    curriculum = build_curriculum(config, data, train_dataset)  # None unless curriculum.enabled
    train_dataset = curriculum.dataset if curriculum is not None else train_dataset
    columns = _columns(train_dataset)
    prompts = column_prompts(columns, query_prompt(model), document_prompt(model))
    loss = build_loss(model, config.loss, context)
    writer = run_writer(folder, config)
    callbacks = standard_callbacks(config, writer, loss, folder)
    callbacks += modes.mode_callbacks(model, setup, config)
    lr_mapping = modes.head_learning_rate_mapping(loss, model, setup, config)
    args = training_arguments(config, folder / CHECKPOINTS_DIR, prompts, lr_mapping, resuming=resume_from is not None)
    if curriculum is not None:
        callbacks.append(curriculum.configure(args, writer, config.train.max_steps))
    evaluator = dev_pool_evaluator(config, data.dev, modes.base_view(model, setup), cache)  # the pool, by the base
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=modes.dev_evaluator_for_mode(evaluator, setup, cache),  # step 0: the base, from the cache
        callbacks=callbacks,
    )
    train_and_close(trainer, writer, resume_from)
    return trainer


def _columns(dataset: Dataset | DatasetDict) -> list[str]:
    """Log the training rows (per ``data.mix`` source) and return the column names."""
    if isinstance(dataset, DatasetDict):
        sizes = ", ".join(f"{name} {len(part)}" for name, part in dataset.items())
        columns = next(iter(dataset.values())).column_names
        logger.info("Training rows by source (batches never mix them): %s; columns: %s", sizes, ", ".join(columns))
        return columns
    logger.info("Training rows: %d, columns: %s", len(dataset), ", ".join(dataset.column_names))
    return dataset.column_names


def training_data(config: ExperimentConfig, data: PreparedData) -> tuple[Dataset | DatasetDict, LossContext]:
    """Build the trainer's dataset (one per source with ``data.mix``) and what the loss needs from it."""
    guide = None
    if uses_guide_model(config.loss):
        guide = load_model(config.loss.guide_model, config.model.max_seq_length)
    if data.train_pairs is not None:
        return build_pair_dataset(data.train_pairs), LossContext(guide=guide)
    objective = objective_of(config.loss)
    if data.mix:
        sources = [(MAIN_DATASET, data.train_examples)] + [(source.name, source.examples) for source in data.mix]
        datasets, table = build_mixed_dataset(sources, config.data.max_hard_negatives, objective)
        return datasets, LossContext(false_negatives=table, guide=guide)
    built = build_objective_dataset(data.train_examples, config.data.max_hard_negatives, objective)
    return built.dataset, LossContext(false_negatives=built.false_negatives, guide=guide)


def dev_pool_evaluator(
    config: ExperimentConfig, split: EvalSplit, model: SentenceTransformer, cache: EmbeddingCache | None
) -> RetrievalEvaluator:
    """Build the evaluator that selects checkpoints: dev queries against a pool chosen once with the base model."""
    started = time.time()
    data = config.data
    corpus = dev_candidate_pool(
        split,
        data.dev_max_corpus,
        data.dev_candidates,
        model,
        config.eval.batch_size,
        cache,
        data.split_seed,
        config.eval.precision,
    )
    logger.info(
        "Dev pool: %d of %d documents (%s), chosen in %.0f s",
        len(corpus),
        len(split.corpus),
        data.dev_candidates,
        time.time() - started,
    )
    return dev_evaluator(config, split, corpus)
