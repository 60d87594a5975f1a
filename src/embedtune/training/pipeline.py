"""One training run, start to end: validate, load, fine-tune, select on dev, report base vs fine-tuned.

Order matters for trust: everything a user gave is validated and the model is loaded *before* the run folder exists,
so bad input never leaves a half-made folder; once the folder exists, a crash or Ctrl-C marks the run failed or
interrupted in its record instead of leaving it looking alive.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.data.prepare import EvalSplit, PreparedData
from embedtune.evaluation.seen_unseen import seen_queries, split_comparison, training_positives
from embedtune.io import file_sha256
from embedtune.losses import matryoshka_dims
from embedtune.losses.distributed import join_process_group
from embedtune.models.loading import load_base_model
from embedtune.runs import CHOSEN_BASE, Report, RunMetrics, Selection, fail_run, finish_run, start_run
from embedtune.runs.layout import ADAPTER_DIR, CHECKPOINTS_DIR, MODEL_DIR, TRAIN_LOG_FILE
from embedtune.runs.outputs import (
    last_checkpoint,
    save_model_atomic,
    write_per_query,
    write_score_distributions,
)
from embedtune.runs.writer import check_resumable, is_main_process, resume_run, run_on_main_process
from embedtune.training import mode, modes
from embedtune.training.curriculum import curriculum_record
from embedtune.training.final_eval import Figures, FinalEvaluation, per_query_record, score_distribution_record
from embedtune.training.interpolation import interpolate_on_dev
from embedtune.training.preflight import check_run_inputs
from embedtune.training.run_records import loss_history, peak_memory_mb, write_run_report
from embedtune.training.selection import decide_on_dev, dev_history

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


def run_training(config: ExperimentConfig, resume: Path | None = None) -> RunResult:
    """Fine-tune ``config.model`` on ``config.data`` and write a complete run folder.

    Steps: validate all data; check the runs folder; load the base model (with its prompts); create
    ``runs/<YYYYmmdd-HHMMSS>-<name>/``; evaluate the base model on the reported split; train with dev evaluation
    before training and after every epoch (or ``eval_steps``); keep the best dev checkpoint unless it does not beat
    the untouched model, in which case ``model/`` is the base model and the verdict says so; evaluate the selected
    model on the reported split (test, never the selection split, unless the user asked for no test split, and then
    labelled as such); write ``metrics.json``. In ``train.mode: lora`` ``model/`` holds the model with the adapter
    merged (a plain model) and ``adapter/`` the adapter alone (:mod:`embedtune.training.modes`).

    With ``resume``, the stopped run in that folder continues instead (``embedtune train --resume``): same folder,
    training picks up from its latest checkpoint (weights, optimiser, scheduler, random states, data order and dev
    history; TensorBoard continues), or from step 0 when it saved none.

    Args:
        config: The resolved configuration (for ``resume``, the run's own, from its ``run.json``).
        resume: The folder of a failed, interrupted or killed run to continue, or ``None`` for a new run.

    Returns:
        The run folder, its metrics and the selection.

    Raises:
        embedtune.errors.DataError: for malformed data, before any model is loaded or folder created.
        embedtune.runs.RunStoreError: if the runs folder cannot be created, or ``resume`` names a run that finished,
            is still running or whose data changed, before any model is loaded.
        embedtune.model_paths.ModelNotFoundError: if the model cannot be loaded, before any folder is created.
        RunFailedError: if anything fails once the run folder exists (the run is then recorded as failed).
    """
    started = time.time()
    join_process_group()  # torchrun / accelerate launch: rank 0 alone writes the run folder
    data, extra_splits = check_run_inputs(config)  # everything `train --check` checks, before anything loads
    if resume is not None:
        check_resumable(resume)
    model = load_base_model(config)
    setup = mode.prepare_model_for_mode(model, config)  # LoRA / head; a bad target stops here
    data_hashes = {str(path): file_sha256(path) for path in data.files}
    if resume is not None:
        folder = resume_run(resume, data_hashes=data_hashes)
    else:
        folder = start_run(
            config.runs_dir, config.name, config=config.to_dict(), data_hashes=data_hashes, command=" ".join(sys.argv)
        )
    log_handler = _attach_log_file(folder / TRAIN_LOG_FILE)
    try:
        logger.info("Run folder %s", folder)
        _log_data_summary(data, config.eval.report_test)
        result = _train_and_report(config, data, extra_splits, model, folder, started, setup)
    except KeyboardInterrupt:
        if not fail_run(folder, "interrupted by the user (KeyboardInterrupt)", interrupted=True) and is_main_process():
            logger.warning(
                "Interrupted after the run finished, while writing its report: `embedtune train --resume %s` "
                "(or `embedtune report %s`) writes it",
                folder,
                folder,
            )
        raise
    except Exception as error:
        fail_run(folder, f"{type(error).__name__}: {error}")
        _log_traceback_to_file(log_handler)
        raise RunFailedError(folder, error) from error
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
    return result


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
    training = mode.training_mode(config)
    base = final.evaluate(training.base_view(model, setup), "base")  # the encoder, without an added head
    train_started = time.time()
    checkpoint = last_checkpoint(folder)
    if checkpoint is not None:
        logger.info("Resuming from %s", checkpoint)
    trainer = training.train(config, data, model, folder, final.cache, setup, checkpoint)
    train_time = time.time() - train_started
    return run_on_main_process(
        lambda: _select_and_report(config, data, final, base, trainer, folder, started, train_time, setup, dims)
    )


def tuned_model_cache(config: ExperimentConfig, shared: EmbeddingCache | None, scratch: Path) -> EmbeddingCache:
    """Return the cache the fine-tuned model encodes through, for dev confirmation and then the test evaluation.

    A frozen encoder's embeddings are the base model's, so a model that is a frozen encoder plus a head reads them
    from the shared cache and only applies its head; any other fine-tuned model's embeddings go to a scratch cache in
    ``scratch`` (candidates that do not ship are never seen again), and the shipped model's are copied into the
    shared cache after its final evaluation (:meth:`FinalEvaluation.evaluate`).
    """
    if config.train_mode.frozen_encoder and shared is not None:
        return shared
    return EmbeddingCache(scratch)


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
    history = dev_history(trainer.state.log_history, primary, config.eval.metrics)
    base_model = load_base_model(config)
    with tempfile.TemporaryDirectory(prefix="embedtune-dev-") as scratch:
        tuned_cache = tuned_model_cache(config, final.cache, Path(scratch))
        candidate = interpolate_on_dev(config, data.dev, base_model, trainer.model, tuned_cache)  # WiSE-FT
        shipped = mode.shipped_form(candidate.model, setup, config)  # LoRA: merged, as model/ will hold it
        selection = decide_on_dev(config, data.dev, history, base_model, shipped, (final.cache, tuned_cache))
        del shipped  # a copy (LoRA): its embeddings are in tuned_cache, keyed by weights the merge below reproduces
        selection = candidate.annotate(selection)
        _check_trainer_agrees(trainer, selection)
        selected = base_model if selection.chosen == CHOSEN_BASE else candidate.model
        model_notes = {"matryoshka_dims": dims} if config.loss.matryoshka else {}
        _discard_earlier_outputs(folder)  # a resumed run that stopped after writing them writes them again
        selected = mode.finish_mode_model(selected, setup, folder, config)  # LoRA: writes adapter/, merges
        save_model_atomic(selected, folder / MODEL_DIR, model_notes)
        tuned = base if selection.chosen == CHOSEN_BASE else final.evaluate(selected, "fine-tuned", tuned_cache)
        seen = seen_queries(data.report, training_positives(data.train_examples))
        write_per_query(folder, per_query_record(data.report.name, base, tuned, seen))
        write_score_distributions(folder, score_distribution_record(base, tuned))
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
            pair_diagnostics=_pair_diagnostics(final, data, base_model, selected),
            curriculum=curriculum_record(trainer),
            trainable_parameters=setup.record(),
            seen_unseen=_seen_unseen(base, tuned, seen, primary),
        )
        finish_run(folder, metrics)
        shutil.rmtree(folder / CHECKPOINTS_DIR, ignore_errors=True)  # only now: --resume needs them until finished
        write_run_report(folder)
        return RunResult(folder, metrics)


def _discard_earlier_outputs(folder: Path) -> None:
    """Remove ``model/`` and ``adapter/`` left by an earlier attempt of this run, which stopped after writing them.

    A run resumed after a crash in its final evaluation has finished training: it restores its last checkpoint
    (no training step runs), selects the same model again and writes it again. Only an unfinished run gets here.
    """
    for name in (MODEL_DIR, ADAPTER_DIR):
        if (folder / name).exists():
            logger.info("Replacing %s/ written by the earlier attempt of this run", name)
            shutil.rmtree(folder / name)


def _seen_unseen(base: Figures, tuned: Figures, seen: set[str], primary: str) -> dict:
    """Compare base and selected model on seen and unseen queries (:mod:`embedtune.evaluation.seen_unseen`)."""
    record = split_comparison(base.per_query, tuned.per_query, seen, primary)
    logger.info("Seen vs unseen: %s", record["verdict"])
    return record


def _pair_diagnostics(
    final: FinalEvaluation, data: PreparedData, base: SentenceTransformer, selected: SentenceTransformer
) -> dict | None:
    """Pair metrics of base and selected model for a labelled-pairs run; ``None`` for other runs or when undefined."""
    if data.eval_pairs is None:
        return None
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


def _split_label(data: PreparedData) -> str:
    if data.report_role == "selection":
        return f"{data.report.name} (the selection split: no held-out test split)"
    return data.report.name


def _log_data_summary(data: PreparedData, report_test: bool) -> None:
    counts = ", ".join(f"{key} {value}" for key, value in data.counts.items())
    logger.info("Data: %s. Dev: %s. Reported split: %s.", counts, data.dev.source, data.report.source)
    if not report_test:
        logger.info("eval.report_test=false: this run reports dev, the selection split, and never evaluates test")
    elif data.report_role == "selection":
        logger.warning(
            "Reporting on %s, the split that selects the checkpoint (data.eval_split=dev, or no test split with "
            "data.test_fraction=0): its figures are optimistic.",
            data.report.name,
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
