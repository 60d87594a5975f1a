"""One training run, start to end: validate, load, fine-tune, select on dev, report base vs fine-tuned.

Order matters for trust: everything a user gave is validated and the model is loaded *before* the run folder exists,
so bad input never leaves a half-made folder; once the folder exists, a crash or Ctrl-C marks the run failed or
interrupted in its record instead of leaving it looking alive.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from torch.utils.tensorboard import SummaryWriter
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from embedtune.cache import EmbeddingCache
from embedtune.config import ConfigError, ExperimentConfig, LossConfig
from embedtune.data.curriculum import check_curriculum
from embedtune.data.eval_splits import load_extra_split
from embedtune.data.prepare import EvalSplit, PreparedData, prepare_data
from embedtune.evaluation.candidate_pool import dev_candidate_pool
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.io import file_sha256, write_json_atomic
from embedtune.losses import LossContext, build_loss, matryoshka_dims
from embedtune.losses.distributed import join_process_group
from embedtune.models.loading import check_model_available, load_model
from embedtune.models.prompts import document_prompt, query_prompt, set_prompts
from embedtune.runs import CHOSEN_BASE, Report, RunMetrics, Selection, check_runs_dir, fail_run, finish_run, start_run
from embedtune.runs.writer import is_main_process, run_on_main_process
from embedtune.training import modes
from embedtune.training.arguments import column_prompts, training_arguments
from embedtune.training.callbacks import (
    ConsoleLogCallback,
    GradientMonitorCallback,
    IsolateStartEvaluationCallback,
    LossComponentsCallback,
    QuietProgressCallback,
)
from embedtune.training.curriculum import build_curriculum, curriculum_record
from embedtune.training.dataset import build_train_dataset
from embedtune.training.final_eval import Figures, FinalEvaluation, per_query_record, score_distribution_record
from embedtune.training.head_training import train_head
from embedtune.training.outputs import (
    PER_QUERY_FILE,
    SCORES_FILE,
    loss_history,
    peak_memory_mb,
    save_model_atomic,
    write_run_report,
)
from embedtune.training.pair_dataset import build_pair_dataset
from embedtune.training.selection import dev_history, select_model

logger = logging.getLogger(__name__)


class RunFailedError(RuntimeError):
    """A run failed after its folder was created.

    The folder's record says ``failed`` with the message, and ``train.log`` has the traceback.

    Args:
        folder: The run folder.
        error: The original error.
    """

    def __init__(self, folder: Path, error: BaseException) -> None:
        self.folder = folder
        super().__init__(f"run {folder} failed: {type(error).__name__}: {error} (traceback in {folder}/train.log)")


@dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        folder: The run folder.
        metrics: What was written to ``metrics.json``.
    """

    folder: Path
    metrics: RunMetrics


def run_training(config: ExperimentConfig) -> RunResult:
    """Fine-tune ``config.model`` on ``config.data`` and write a complete run folder.

    Steps: validate all data; check the runs folder; load the base model (with its prompts); create
    ``runs/<YYYYmmdd-HHMMSS>-<name>/``; evaluate the base model on the reported split; train with dev evaluation
    before training and after every epoch (or ``eval_steps``); keep the best dev checkpoint unless it does not beat
    the untouched model, in which case ``model/`` is the base model and the verdict says so; evaluate the selected
    model on the reported split (test, never the selection split, unless the user asked for no test split, and then
    labelled as such); write ``metrics.json``. In ``train.mode: lora`` ``model/`` holds the model with the adapter
    merged (a plain model) and ``adapter/`` the adapter alone (:mod:`embedtune.training.modes`).

    Args:
        config: The resolved configuration.

    Returns:
        The run folder, its metrics and the selection.

    Raises:
        embedtune.data.errors.DataError: for malformed data, before any model is loaded or folder created.
        embedtune.runs.RunStoreError: if the runs folder cannot be created, before any model is loaded.
        embedtune.models.loading.ModelNotFoundError: if the model cannot be loaded, before any folder is created.
        RunFailedError: if anything fails once the run folder exists (the run is then recorded as failed).
    """
    started = time.time()
    join_process_group()  # torchrun / accelerate launch: rank 0 alone writes the run folder
    data = prepare_data(config.data)
    check_loss_fits_data(config.loss, data)
    check_curriculum(config, data)  # a bad phase or unscored data stops here, before any model loads
    extra_splits = [load_extra_split(spec) for spec in config.eval.extra_datasets]
    check_runs_dir(config.runs_dir)
    if config.loss.guide and config.loss.guide_model is not None:
        check_model_available(config.loss.guide_model)
    model = load_base_model(config)
    setup = modes.prepare_model_for_mode(model, config)  # LoRA / head; a bad target stops here
    folder = start_run(
        config.runs_dir,
        config.name,
        config=config.to_dict(),
        data_hashes={str(path): file_sha256(path) for path in data.files},
        command=" ".join(sys.argv),
    )
    log_handler = _attach_log_file(folder / "train.log")
    try:
        logger.info("Run folder %s", folder)
        _log_data_summary(data)
        result = _train_and_report(config, data, extra_splits, model, folder, started, setup)
    except KeyboardInterrupt:
        fail_run(folder, "interrupted by the user (KeyboardInterrupt)", interrupted=True)
        raise
    except Exception as error:
        fail_run(folder, f"{type(error).__name__}: {error}")
        _log_traceback_to_file(log_handler)
        raise RunFailedError(folder, error) from error
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
    return result


def check_loss_fits_data(loss: LossConfig, data: PreparedData) -> None:
    """Check that the objective and the training data are made for each other, before any model loads.

    Raises:
        ConfigError: if a pair objective (cosent, cosine_mse) gets (query, positive, negatives) data or the other way
            round, naming the setting and the file.
    """
    has_pairs = data.train_pairs is not None
    if loss.uses_pairs and not has_pairs:
        raise ConfigError(
            f"loss.name: {loss.name} trains on labelled pairs; set data.train_file to a JSONL file of "
            '{"text1", "text2", "label"} records'
        )
    if has_pairs and not loss.uses_pairs:
        raise ConfigError(
            f"loss.name: {loss.name} needs (query, positive, negatives) records, but data.train_file holds labelled "
            "pairs; use loss.name=cosent or cosine_mse"
        )


def load_base_model(config: ExperimentConfig) -> SentenceTransformer:
    """Load the base model with the configured sequence length and store the configured prefixes as its prompts.

    Raises:
        embedtune.models.loading.ModelNotFoundError: if the model cannot be found or loaded.
    """
    model = load_model(config.model.name_or_path, config.model.max_seq_length)
    set_prompts(model, config.model.query_prefix, config.model.passage_prefix)
    return model


def _train_and_report(
    config: ExperimentConfig,
    data: PreparedData,
    extra_splits: list[EvalSplit],
    model: SentenceTransformer,
    folder: Path,
    started: float,
    setup: modes.ModeSetup,
) -> RunResult:
    dims = matryoshka_dims(config.loss.matryoshka_dims, model.get_embedding_dimension())
    final = FinalEvaluation(config, data.report, extra_splits, dims if config.loss.matryoshka else None)
    logger.info("Reported split: %s", _split_label(data))
    base = final.evaluate(modes.encoder_view(model, setup), "base")  # the encoder, without an added head
    train_started = time.time()
    if config.train.mode == "head":
        trainer = train_head(config, data, model, folder, final.cache)
    else:
        trainer = _fine_tune(config, data, model, folder, final.cache, setup)
    train_time = time.time() - train_started
    return run_on_main_process(
        lambda: _select_and_report(config, data, final, base, trainer, folder, started, train_time, setup, dims)
    )


def _select_and_report(
    config: ExperimentConfig,
    data: PreparedData,
    final: FinalEvaluation,
    base: Figures,
    trainer: SentenceTransformerTrainer,
    folder: Path,
    started: float,
    train_time: float,
    setup: modes.ModeSetup,
    dims: list[int],
) -> RunResult:
    """After training, in rank 0 only: select on dev, save ``model/``, evaluate it and write the run's records."""
    primary = config.train.primary_metric.lower()
    history = dev_history(trainer.state.log_history, primary)
    selection = select_model(history, primary)
    (logger.warning if selection.chosen == CHOSEN_BASE else logger.info)("%s", selection.verdict)
    _check_trainer_agrees(trainer, selection)
    selected = load_base_model(config) if selection.chosen == CHOSEN_BASE else trainer.model
    model_notes = {"matryoshka_dims": dims} if config.loss.matryoshka else {}
    selected = modes.finish_mode_model(selected, setup, folder, config)  # LoRA: writes adapter/, merges
    save_model_atomic(selected, folder / "model", model_notes)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    tuned = base if selection.chosen == CHOSEN_BASE else final.evaluate(selected, "fine-tuned")
    write_json_atomic(folder / PER_QUERY_FILE, per_query_record(data.report.name, base, tuned))
    write_json_atomic(folder / SCORES_FILE, score_distribution_record(base, tuned))
    metrics = RunMetrics(
        primary_metric=primary,
        report=Report(data.report.name, data.report_role, base.report, tuned.report),
        selection=selection,
        dev_history=history,
        loss_history=loss_history(trainer.state.log_history),
        splits=dict(data.counts),
        num_train_examples=len(data.train_examples),
        wall_time_s=round(time.time() - started, 1),
        train_time_s=round(train_time, 1),
        peak_memory_mb=peak_memory_mb(),
        extra_reports=final.extra_reports(base, tuned),
        significance=final.significance(base, tuned),
        pair_diagnostics=_pair_diagnostics(final, data, config, selected, selection),
        curriculum=curriculum_record(trainer),
        trainable_parameters=setup.record(),
    )
    finish_run(folder, metrics)
    write_run_report(folder)
    return RunResult(folder, metrics)


def _pair_diagnostics(
    final: FinalEvaluation,
    data: PreparedData,
    config: ExperimentConfig,
    selected: SentenceTransformer,
    selection: Selection,
) -> dict | None:
    """Pair metrics of base and selected model for a labelled-pairs run; ``None`` for other runs or when undefined."""
    if data.eval_pairs is None:
        return None
    base = selected if selection.chosen == CHOSEN_BASE else load_base_model(config)
    try:
        return final.pair_diagnostics(data.eval_pairs, base, selected)
    except ValueError as error:  # e.g. every dev pair relevant: ROC-AUC and the F1 threshold are undefined
        logger.warning("No pair diagnostics: %s", error)
        return None


def _check_trainer_agrees(trainer: SentenceTransformerTrainer, selection: Selection) -> None:
    """Raise unless the checkpoint the trainer loaded is the one the selection names (else model/ would lie)."""
    if selection.chosen != CHOSEN_BASE and trainer.state.best_global_step != selection.step:
        raise RuntimeError(
            f"the trainer kept step {trainer.state.best_global_step} but dev selection chose step {selection.step}"
        )


def _fine_tune(
    config: ExperimentConfig,
    data: PreparedData,
    model: SentenceTransformer,
    folder: Path,
    cache: EmbeddingCache | None,
    setup: modes.ModeSetup,
) -> SentenceTransformerTrainer:
    train_dataset, context = _training_data(config, data)
    curriculum = build_curriculum(config, data, train_dataset)  # None unless curriculum.enabled
    train_dataset = curriculum.dataset if curriculum is not None else train_dataset
    logger.info("Training rows: %d, columns: %s", len(train_dataset), ", ".join(train_dataset.column_names))
    prompts = column_prompts(train_dataset.column_names, query_prompt(model), document_prompt(model))
    loss = build_loss(model, config.loss, context)
    writer = SummaryWriter(str(folder / "tensorboard")) if is_main_process() else _SilentWriter()
    callbacks = [
        TensorBoardCallback(writer),
        ConsoleLogCallback(config.train.primary_metric.lower()),
        IsolateStartEvaluationCallback(),
    ]
    components = getattr(getattr(loss, "loss", loss), "components", None)  # MatryoshkaLoss wraps the loss
    if components is not None:
        callbacks.append(LossComponentsCallback(writer, components))
    if config.train.log_module_grad_norms or config.train.log_grad_histograms:
        callbacks.append(
            GradientMonitorCallback(writer, config.train.log_module_grad_norms, config.train.log_grad_histograms)
        )
    callbacks += modes.mode_callbacks(model, setup, config)
    lr_mapping = modes.head_learning_rate_mapping(loss, model, setup, config)
    args = training_arguments(config, folder / "checkpoints", prompts, lr_mapping)
    if curriculum is not None:
        callbacks.append(curriculum.configure(args, writer, config.train.max_steps))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=_dev_evaluator(config, data.dev, modes.encoder_view(model, setup), cache),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if sys.stderr.isatty():
        trainer.add_callback(QuietProgressCallback())
    try:
        trainer.train()
    finally:
        writer.close()
    return trainer


def _training_data(config: ExperimentConfig, data: PreparedData) -> tuple[Dataset, LossContext]:
    """Build the trainer's dataset and what the loss needs from it (false-negative table, guide model)."""
    guide = None
    if config.loss.guide and config.loss.guide_model is not None:
        guide = load_model(config.loss.guide_model, config.model.max_seq_length)
    if data.train_pairs is not None:
        return build_pair_dataset(data.train_pairs), LossContext(guide=guide)
    pad = config.loss.name == "infonce"  # only InfoNCE reads the weights that mark padding slots
    built = build_train_dataset(data.train_examples, config.data.max_hard_negatives, pad_negatives=pad)
    return built.dataset, LossContext(false_negatives=built.false_negatives, guide=guide)


def _dev_evaluator(
    config: ExperimentConfig, split: EvalSplit, model: SentenceTransformer, cache: EmbeddingCache | None
) -> RetrievalEvaluator:
    """Build the evaluator that selects checkpoints: dev queries against a pool chosen once with the base model."""
    started = time.time()
    data = config.data
    corpus = dev_candidate_pool(
        split, data.dev_max_corpus, data.dev_candidates, model, config.eval.batch_size, cache, data.split_seed
    )
    logger.info(
        "Dev pool: %d of %d documents (%s), chosen in %.0f s",
        len(corpus),
        len(split.corpus),
        data.dev_candidates,
        time.time() - started,
    )
    return RetrievalEvaluator(
        corpus,
        split.queries,
        split.qrels,
        name="dev",
        metrics=config.eval.metrics,
        primary_metric=config.train.primary_metric,
        batch_size=config.eval.batch_size,
    )


def _split_label(data: PreparedData) -> str:
    if data.report_role == "selection":
        return f"{data.report.name} (the selection split: no held-out test split)"
    return data.report.name


def _log_data_summary(data: PreparedData) -> None:
    counts = ", ".join(f"{key} {value}" for key, value in data.counts.items())
    logger.info("Data: %s. Dev: %s. Reported split: %s.", counts, data.dev.source, data.report.source)
    if data.report_role == "selection":
        logger.warning(
            "No test split (data.test_fraction=0 or data.eval_split=dev): final figures are on dev, the split that "
            "selects the checkpoint, and are optimistic."
        )


def _log_traceback_to_file(handler: logging.Handler) -> None:
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "Run failed", None, sys.exc_info())
    handler.handle(record)


def _attach_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8") if is_main_process() else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


class _SilentWriter:
    """The TensorBoard writer of processes other than rank 0: rank 0 alone writes the run folder."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
