"""The trainer set-up every training mode shares: the run's TensorBoard writer, the callbacks, and the training call.

Full and LoRA runs train with sentence-transformers' ``SentenceTransformerTrainer``, head mode with transformers'
``Trainer`` over the head (:mod:`embedtune.training.head_training`); both get their writer, their callbacks and
their console output from here, so a run logs, checkpoints and resumes the same way whatever its mode.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.tensorboard import SummaryWriter
from transformers import Trainer, TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from embedtune.config import ExperimentConfig
from embedtune.losses.components import LossComponents
from embedtune.runs.layout import TENSORBOARD_DIR
from embedtune.runs.writer import is_main_process
from embedtune.training.callbacks import (
    ConsoleLogCallback,
    GradientMonitorCallback,
    IsolateStartEvaluationCallback,
    LossComponentsCallback,
    QuietProgressCallback,
)
from embedtune.training.mlflow_report import MLFLOW, RunMLflowCallback

TENSORBOARD = "tensorboard"

_EXTRA_CALLBACKS: ContextVar[tuple[TrainerCallback, ...]] = ContextVar("embedtune_extra_callbacks", default=())


@contextmanager
def extra_callbacks(*callbacks: TrainerCallback) -> Iterator[None]:
    """Give every trainer built inside the ``with`` block these callbacks too, whatever the training mode.

    How a caller that runs whole runs watches their training, e.g. ``embedtune tune`` reporting each dev evaluation
    to its pruner (:mod:`embedtune.tuning.objective`).
    """
    token = _EXTRA_CALLBACKS.set(_EXTRA_CALLBACKS.get() + callbacks)
    try:
        yield
    finally:
        _EXTRA_CALLBACKS.reset(token)


class SilentWriter:
    """The TensorBoard writer of processes other than rank 0: rank 0 alone writes the run folder."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def run_writer(folder: Path, config: ExperimentConfig) -> SummaryWriter | SilentWriter:
    """Return the run's TensorBoard writer (``tensorboard/`` in the run folder), or a silent one.

    Silent outside rank 0 and when ``train.report_to`` leaves TensorBoard out.
    """
    if is_main_process() and TENSORBOARD in config.train.report_to:
        return SummaryWriter(str(folder / TENSORBOARD_DIR))
    return SilentWriter()


def standard_callbacks(
    config: ExperimentConfig, writer: SummaryWriter | SilentWriter, loss: nn.Module, folder: Path
) -> list[TrainerCallback]:
    """Return the callbacks of every run: TensorBoard, one console line per event, the loss's parts, gradients.

    MLflow's too when ``train.report_to`` names it. Those given to :func:`extra_callbacks` around the run come last.

    Args:
        config: The run settings (``train.primary_metric``, ``train.log_module_grad_norms``,
            ``train.log_grad_histograms``, ``train.report_to``).
        writer: From :func:`run_writer`.
        loss: The training loss; its ``components`` (also inside a MatryoshkaLoss) are logged when it has them.
        folder: The run folder.
    """
    callbacks: list[TrainerCallback] = [
        TensorBoardCallback(writer),
        ConsoleLogCallback(config.train.primary_metric.lower()),
        IsolateStartEvaluationCallback(),
    ]
    components = _components_of(loss)
    if components is not None:
        callbacks.append(LossComponentsCallback(writer, components))
    if config.train.log_module_grad_norms or config.train.log_grad_histograms:
        callbacks.append(
            GradientMonitorCallback(writer, config.train.log_module_grad_norms, config.train.log_grad_histograms)
        )
    if MLFLOW in config.train.report_to:
        callbacks.append(RunMLflowCallback(config, folder))
    return callbacks + list(_EXTRA_CALLBACKS.get())


def _components_of(loss: nn.Module) -> LossComponents | None:
    """Return the logged parts of ``loss`` or of the loss it wraps (MatryoshkaLoss, L2-SP: in ``.loss``)."""
    while loss is not None:
        components = getattr(loss, "components", None)
        if components is not None:
            return components
        loss = getattr(loss, "loss", None)
    return None


def train_and_close(
    trainer: Trainer, writer: SummaryWriter | SilentWriter, resume_from: str | Path | bool | None
) -> None:
    """Train with embedtune's console output (one line per event; a quiet bar on a terminal), then close ``writer``.

    Args:
        trainer: The configured trainer.
        writer: Its TensorBoard writer, closed whatever happens.
        resume_from: A checkpoint of this run to continue from (``True``: the latest), or ``None``.
    """
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if sys.stderr.isatty():
        trainer.add_callback(QuietProgressCallback())
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if isinstance(resume_from, Path) else resume_from)
    finally:
        writer.close()
