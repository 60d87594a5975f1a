"""Translate embedtune's settings into sentence-transformers' training arguments."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

from embedtune.config import ExperimentConfig
from embedtune.models.precision import cpu_has_native_bf16
from embedtune.training.length_sampler import LengthGroupedBatchSampler

logger = logging.getLogger(__name__)


def training_arguments(
    config: ExperimentConfig,
    output_dir: Path,
    prompts: dict[str, str] | None,
    learning_rate_mapping: dict[str, float] | None = None,
    resuming: bool = False,
) -> SentenceTransformerTrainingArguments:
    """Build the trainer's arguments: AdamW, warm-up then linear/cosine decay, dev evaluation and checkpoints.

    Dev is evaluated before training (``eval_on_start``, so the untouched model competes) and after every epoch or
    every ``eval_steps``.

    Args:
        config: The resolved run settings.
        output_dir: Where the trainer keeps its temporary checkpoints.
        prompts: Dataset column -> prompt prepended to that column's texts, or ``None`` for no prompts.
        learning_rate_mapping: Regular expression over parameter names (as the loss names them) -> learning rate of
            the matching parameters, e.g. an added head's (``modes.head_learning_rate_mapping``); every other
            parameter learns at ``train.learning_rate``. ``None`` gives all parameters that rate.
        resuming: The run continues from a checkpoint: no step-0 evaluation (the checkpoint's history has it).

    Returns:
        The arguments; logging goes through embedtune's callbacks (``report_to="none"``).
    """
    train = config.train
    fp16, bf16 = mixed_precision(train.precision)
    workers = dataloader_workers(train.dataloader_workers)
    strategy = train.eval_strategy
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a share of the steps
        lr_scheduler_type=train.lr_scheduler,
        max_grad_norm=train.max_grad_norm if train.max_grad_norm > 0 else None,
        seed=train.seed,
        data_seed=train.seed,
        activation_checkpointing=train.gradient_checkpointing,
        fp16=fp16,
        bf16=bf16,
        # Without a GPU: CPU bf16 autocast needs it, and so does torchrun on CPUs (accelerate's MULTI_CPU, else each
        # process thinks it is alone and only rank 0 runs the dev evaluation).
        use_cpu=not torch.cuda.is_available(),
        eval_strategy=strategy,
        eval_steps=train.eval_steps,
        eval_on_start=not resuming,
        save_strategy=strategy,
        save_steps=train.eval_steps,
        save_total_limit=2,
        save_only_model=False,  # optimiser, scheduler and random states too: a run can resume from a checkpoint
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_dev_{train.primary_metric.lower()}",
        greater_is_better=True,
        logging_steps=train.logging_steps,
        report_to="none",
        batch_sampler=LengthGroupedBatchSampler if train.group_by_length else BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=config.data.mix_sampling,  # with data.mix: one source per batch
        prompts=prompts,
        learning_rate_mapping=learning_rate_mapping or {},
        # an encoder frozen for the first epochs gets no gradients then, which DDP must be told to expect
        ddp_find_unused_parameters=True if train.freeze_encoder_epochs > 0 else None,
        dataloader_pin_memory=torch.cuda.is_available(),
        dataloader_num_workers=workers,
        # not persistent: a new iterator per epoch draws the same seeds as without workers, so the run is the same
        dataloader_persistent_workers=False,
        disable_tqdm=False,
    )


def mixed_precision(precision: str) -> tuple[bool, bool]:
    """Return ``(fp16, bf16)`` autocast flags for the trainer.

    ``auto``: on CUDA, bf16 where the GPU supports it, else fp16; on a CPU with native bf16 instructions
    (AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`), bf16 autocast — measured 1.5x faster per training step
    here with the same test nDCG@10 (``bench/speed.py``, docs/benchmarks.md); on other CPUs fp32, where bf16 is
    emulated and slower. ``bf16`` on a CPU is honoured (autocast); ``fp16`` needs CUDA and falls back to fp32.
    """
    if torch.cuda.is_available():
        if precision == "auto":
            return (False, True) if torch.cuda.is_bf16_supported() else (True, False)
        return precision == "fp16", precision == "bf16"
    if precision == "fp16":
        logger.warning("train.precision=fp16 needs CUDA; training in fp32 on CPU.")
        return False, False
    if precision == "auto":
        return False, cpu_has_native_bf16()
    return False, precision == "bf16"


def dataloader_workers(setting: int | None) -> int:
    """Return how many dataloader processes tokenise batches ahead of the training step.

    ``None`` (auto): on CUDA, ``min(4, CPU cores // 2)``, so tokenisation overlaps with the GPU's work instead of
    holding up every step; on a CPU, 0 (the model's threads use every core; on 2 cores one worker made steps ~20 %
    slower, ``bench/speed.py --part overhead``). A number is used as given.
    """
    if setting is not None:
        return setting
    if not torch.cuda.is_available():
        return 0
    return min(4, (os.cpu_count() or 1) // 2)


def column_prompts(columns: list[str], query_prompt: str, document_prompt: str) -> dict[str, str] | None:
    """Map each text column of the training dataset to its prompt.

    ``anchor`` (triplets) and ``sentence1`` (labelled pairs) get the query prompt, the other text columns the
    document prompt (``label`` and ``score`` hold numbers, not text). Returns ``None`` when both prompts are empty.
    """
    if not query_prompt and not document_prompt:
        return None
    return {
        column: query_prompt if column in QUERY_COLUMNS else document_prompt
        for column in columns
        if column not in NUMBER_COLUMNS
    }


QUERY_COLUMNS = ("anchor", "sentence1")
NUMBER_COLUMNS = ("label", "score")
