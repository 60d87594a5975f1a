"""The main job: validate data, fine-tune on SentenceTransformerTrainer, pick the best dev checkpoint, report test."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from torch.utils.tensorboard import SummaryWriter
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from embedtune.config import ExperimentConfig
from embedtune.data.prepare import PreparedData, prepare_data
from embedtune.data.splits import DEV_SPLIT
from embedtune.evaluation.report import format_comparison
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator, subsample_corpus
from embedtune.io import file_sha256, write_json_atomic
from embedtune.losses.info_nce import InfoNCELoss
from embedtune.models.loading import load_model
from embedtune.runs.folder import create_run_folder, git_commit, library_versions
from embedtune.training.dataset import build_train_dataset

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        folder: The run folder.
        metrics: The content written to ``metrics.json``.
    """

    folder: Path
    metrics: dict[str, Any]


def run_training(config: ExperimentConfig, echo: bool = True) -> RunResult:
    """Fine-tune ``config.model`` on ``config.data`` and write a complete run folder.

    Steps: validate all data (no model loaded yet); create ``runs/<YYYYmmdd-HHMMSS>-<name>/`` and write
    ``training_config.json``; train with dev evaluation each epoch (or every ``eval_steps``), keeping the best
    checkpoint by ``train.primary_metric``; save it as ``model/``; evaluate the untouched base model and the
    fine-tuned model on ``data.eval_split`` over the whole corpus; write ``metrics.json`` and print the comparison.

    Args:
        config: The resolved configuration.
        echo: Print the base vs fine-tuned table to stdout.

    Returns:
        The run folder and its metrics.

    Raises:
        embedtune.data.errors.DataError: for malformed data, before any model is loaded or folder created.
        embedtune.models.loading.ModelNotFoundError: if the model cannot be found.
    """
    started = time.time()
    data = prepare_data(config.data)
    folder = create_run_folder(config.runs_dir, config.name)
    log_handler = _attach_log_file(folder / "train.log")
    try:
        logger.info("Run folder %s", folder)
        write_json_atomic(folder / "training_config.json", _run_record(config, data))
        train_started = time.time()
        dev_history, best, loss_history = _fine_tune(config, data, folder)
        train_time = time.time() - train_started
        comparison = evaluate_base_and_fine_tuned(config, data, folder / "model")
        metrics = {
            "primary_metric": config.train.primary_metric.lower(),
            "eval_split": data.eval_split,
            "test": comparison,
            "dev_history": dev_history,
            "loss_history": loss_history,
            "best_checkpoint": best,
            "wall_time_s": round(time.time() - started, 1),
            "train_time_s": round(train_time, 1),
            "peak_memory_mb": peak_memory_mb(),
            "num_train_examples": len(data.train_examples),
        }
        write_json_atomic(folder / "metrics.json", metrics)
        table = format_comparison(comparison["base"], comparison["fine_tuned"], data.eval_split)
        logger.info("Base vs fine-tuned on %s:\n%s", data.eval_split, table)
        if echo:
            print(f"\nRun folder: {folder}\n{table}")
        return RunResult(folder, metrics)
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()


def evaluate_base_and_fine_tuned(config: ExperimentConfig, data: PreparedData, model_dir: Path) -> dict[str, Any]:
    """Evaluate the untouched base model and the saved fine-tuned model on the reported split, whole corpus.

    Returns:
        ``{"base": {metric: value}, "fine_tuned": {metric: value}}``.
    """
    evaluator = _evaluator(config, data, data.eval_split, max_docs=None)
    results = {}
    for label, name_or_path in (("base", config.model.name_or_path), ("fine_tuned", str(model_dir))):
        model = load_model(name_or_path, config.model.max_seq_length)
        logger.info("Evaluating %s model on %s (%d docs)", label, data.eval_split, len(evaluator.corpus))
        results[label] = evaluator(model)
        del model
    return results


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (plus peak CUDA memory when a GPU was used)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return round(peak, 1)


def _fine_tune(
    config: ExperimentConfig, data: PreparedData, folder: Path
) -> tuple[list[dict], dict | None, list[dict]]:
    model = load_model(config.model.name_or_path, config.model.max_seq_length)
    train_dataset = build_train_dataset(data.train_examples, config.data.max_hard_negatives)
    logger.info("Training rows: %d, columns: %s", len(train_dataset), train_dataset.column_names)
    dev_evaluator = _evaluator(config, data, DEV_SPLIT, max_docs=config.data.dev_max_corpus)
    dev_history = [{"step": 0, "epoch": 0.0, **_strip_prefix(dev_evaluator(model), "dev_")}]
    logger.info("Dev before training: %s", dev_history[0])
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_training_arguments(config, folder / "checkpoints", _has_prefixes(config), train_dataset),
        train_dataset=train_dataset,
        loss=InfoNCELoss(model, scale=config.loss.scale, symmetric=config.loss.symmetric),
        evaluator=dev_evaluator,
        callbacks=[TensorBoardCallback(SummaryWriter(str(folder / "tensorboard"))), _LogToFile()],
    )
    trainer.train()
    dev_history += _dev_history(trainer.state.log_history, config.train.primary_metric.lower())
    best = _best_checkpoint(trainer, dev_history, config.train.primary_metric.lower())
    _save_model_atomic(trainer.model, folder / "model")
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    return dev_history, best, losses


def _training_arguments(
    config: ExperimentConfig, output_dir: Path, with_prompts: bool, train_dataset: Any
) -> SentenceTransformerTrainingArguments:
    train = config.train
    fp16, bf16 = _mixed_precision(train.precision)
    strategy = train.eval_strategy
    prompts = None
    if with_prompts:
        prompts = {column: config.model.passage_prefix for column in train_dataset.column_names if column != "label"}
        prompts["anchor"] = config.model.query_prefix
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        warmup_ratio=train.warmup_ratio,
        lr_scheduler_type=train.lr_scheduler,
        max_grad_norm=train.max_grad_norm if train.max_grad_norm > 0 else None,
        seed=train.seed,
        data_seed=train.seed,
        gradient_checkpointing=train.gradient_checkpointing,
        fp16=fp16,
        bf16=bf16,
        eval_strategy=strategy,
        eval_steps=train.eval_steps,
        save_strategy=strategy,
        save_steps=train.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_dev_{train.primary_metric.lower()}",
        greater_is_better=True,
        logging_steps=train.logging_steps,
        report_to="none",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=prompts,
        disable_tqdm=not sys.stderr.isatty(),
    )


def _mixed_precision(precision: str) -> tuple[bool, bool]:
    """Return ``(fp16, bf16)``; autocast is only ever enabled on CUDA."""
    if not torch.cuda.is_available():
        if precision in ("fp16", "bf16"):
            logger.warning("train.precision=%s needs CUDA; training in fp32 on CPU.", precision)
        return False, False
    if precision == "auto":
        return (False, True) if torch.cuda.is_bf16_supported() else (True, False)
    return precision == "fp16", precision == "bf16"


def _has_prefixes(config: ExperimentConfig) -> bool:
    return bool(config.model.query_prefix or config.model.passage_prefix)


def _evaluator(config: ExperimentConfig, data: PreparedData, split: str, max_docs: int | None) -> RetrievalEvaluator:
    qrels = data.retrieval_set.qrels[split]
    corpus = subsample_corpus(data.retrieval_set.corpus, qrels, max_docs, seed=config.data.split_seed)
    return RetrievalEvaluator(
        corpus,
        data.retrieval_set.queries,
        qrels,
        name="dev" if split == DEV_SPLIT and max_docs is not None else "",
        metrics=config.eval.metrics,
        primary_metric=config.train.primary_metric,
        query_prefix=config.model.query_prefix,
        passage_prefix=config.model.passage_prefix,
        batch_size=config.eval.batch_size,
    )


def _strip_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {key.removeprefix(prefix): value for key, value in metrics.items()}


def _dev_history(log_history: list[dict[str, Any]], primary: str) -> list[dict[str, Any]]:
    history = []
    for entry in log_history:
        if f"eval_dev_{primary}" in entry:
            metrics = {k.removeprefix("eval_dev_"): v for k, v in entry.items() if k.startswith("eval_dev_")}
            history.append({"step": entry["step"], "epoch": round(entry.get("epoch", 0.0), 4), **metrics})
    return history


def _best_checkpoint(trainer: SentenceTransformerTrainer, history: list[dict], primary: str) -> dict | None:
    checkpoint = trainer.state.best_model_checkpoint
    if checkpoint is None:
        return None
    step = int(Path(checkpoint).name.split("-")[-1])
    value = next((entry[primary] for entry in history if entry["step"] == step), trainer.state.best_metric)
    return {"step": step, primary: value}


def _save_model_atomic(model: SentenceTransformer, target: Path) -> None:
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save(str(staging))
    os.replace(staging, target)


def _run_record(config: ExperimentConfig, data: PreparedData) -> dict[str, Any]:
    return {
        "name": config.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.to_dict(),
        "versions": library_versions(),
        "data_hashes": {str(path): file_sha256(path) for path in data.files},
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
    }


def _attach_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


class _LogToFile(TrainerCallback):
    """Copies the trainer's log lines (loss, learning rate, grad norm, dev metrics) into ``train.log``."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        logger.info("step %d: %s", state.global_step, logs)
