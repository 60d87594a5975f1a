"""Trainer callbacks: one console line per event, a progress bar that prints nothing else, opt-in gradient logs."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from embedtune.losses.components import LossComponents

logger = logging.getLogger("embedtune.training")


class QuietProgressCallback(ProgressCallback):
    """transformers' tqdm progress bar without its printing of every log dict (:class:`ConsoleLogCallback` does)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Print nothing: the log line is written once, by :class:`ConsoleLogCallback`."""


class ConsoleLogCallback(TrainerCallback):
    """Writes one log line per training log (loss, learning rate, grad norm) and per dev evaluation.

    Args:
        primary_metric: The dev metric named first in evaluation lines, e.g. ``"ndcg@10"``.
    """

    def __init__(self, primary_metric: str) -> None:
        self.primary_metric = primary_metric

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Log ``logs`` as one line: a dev evaluation, a training step or the end-of-training summary."""
        logs = logs or {}
        where = f"step {state.global_step}/{state.max_steps}"
        dev = {key.removeprefix("eval_dev_"): value for key, value in logs.items() if key.startswith("eval_dev_")}
        if dev:
            label = "untouched model" if state.global_step == 0 else f"epoch {logs.get('epoch', 0):.2f}"
            logger.info("%s dev (%s): %s", where, label, _format_metrics(dev, first=self.primary_metric))
        elif "loss" in logs:
            parts = [f"loss {logs['loss']:.4f}", f"lr {logs.get('learning_rate', 0.0):.2e}"]
            if logs.get("grad_norm") is not None:
                parts.append(f"grad norm {logs['grad_norm']:.3f}")
            logger.info("%s epoch %.2f: %s", where, logs.get("epoch", 0.0), ", ".join(parts))
        elif "train_runtime" in logs:
            logger.info("training finished in %.0f s", logs["train_runtime"])


class IsolateStartEvaluationCallback(TrainerCallback):
    """Keep the step-0 dev evaluation (``eval_on_start``) from shifting the training's random streams.

    The evaluation before the first step consumes random numbers; without this, adding or changing it would change
    the data order and dropout of the whole run. The Python, NumPy and torch generators are saved when training
    begins and restored once that evaluation is done, so a run trains exactly as it would without it.
    """

    def __init__(self) -> None:
        self._saved: tuple | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Save every random generator's state."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        self._saved = (random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Restore the saved states after the step-0 evaluation (later evaluations are left alone)."""
        if state.global_step != 0 or self._saved is None:
            return
        python, numpy_state, torch_state, cuda = self._saved
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        self._saved = None


class GradientMonitorCallback(TrainerCallback):
    """Opt-in TensorBoard logs of gradients, every ``logging_steps`` optimiser steps (after clipping).

    Args:
        writer: The run's TensorBoard writer.
        module_norms: Log the L2 norm of each module's gradient as ``grad_norm/<module>``.
        histograms: Log a histogram per parameter gradient as ``grad/<parameter>``; empty, all-zero and non-finite
            gradients are skipped (TensorBoard cannot bin them, and they carry no shape to show).
    """

    def __init__(self, writer: SummaryWriter, module_norms: bool, histograms: bool) -> None:
        self.writer = writer
        self.module_norms = module_norms
        self.histograms = histograms

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: nn.Module = None, **kwargs: Any):
        """Write the gradients of the step about to be taken, when it is a logging step."""
        step = state.global_step + 1
        if model is None or step % args.logging_steps:
            return
        gradients = {name: p.grad.detach() for name, p in model.named_parameters() if p.grad is not None}
        if self.module_norms:
            for module, norm in module_gradient_norms(gradients).items():
                self.writer.add_scalar(f"grad_norm/{module}", norm, step)
        if self.histograms:
            for name, grad in gradients.items():
                if is_histogram_worthy(grad):
                    self.writer.add_histogram(f"grad/{name}", grad.float().cpu(), step)


def module_gradient_norms(gradients: dict[str, torch.Tensor]) -> dict[str, float]:
    """L2 norm of the gradient of each module (a parameter name without its last component).

    Args:
        gradients: Parameter name -> gradient tensor of any shape.

    Returns:
        Module name -> ``sqrt(sum of its parameters' squared gradient norms)``; non-finite norms are left out.
    """
    squared: dict[str, float] = {}
    for name, grad in gradients.items():
        module = name.rsplit(".", 1)[0] if "." in name else name
        squared[module] = squared.get(module, 0.0) + float(grad.float().pow(2).sum())
    return {module: math.sqrt(total) for module, total in squared.items() if math.isfinite(total)}


def is_histogram_worthy(grad: torch.Tensor) -> bool:
    """Whether a gradient can be shown as a histogram: not empty, not all zero, every value finite."""
    return grad.numel() > 0 and bool(torch.isfinite(grad).all()) and bool(grad.any())


def _format_metrics(metrics: dict[str, float], first: str) -> str:
    ordered = sorted(metrics, key=lambda name: name != first)
    return ", ".join(f"{name} {metrics[name]:.4f}" for name in ordered if isinstance(metrics[name], float | int))


class LossComponentsCallback(TrainerCallback):
    """Log the loss's parts (each direction, masked candidates, alignment, uniformity, ...) with every training log.

    Each part's mean since the previous log goes to TensorBoard as ``loss_components/<name>`` and into the log entry
    of ``trainer_state.json`` (and so into ``metrics.json``'s loss history) as ``loss/<name>``.

    Args:
        writer: The run's TensorBoard writer.
        components: The loss's accumulator.
    """

    def __init__(self, writer: SummaryWriter, components: LossComponents) -> None:
        self.writer = writer
        self.components = components

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Ask for the loss's diagnostics only on a step the trainer will log (its ``logging_steps`` rule)."""
        step = state.global_step + 1
        every = state.logging_steps or args.logging_steps
        first = args.logging_first_step and step == 1
        self.components.measuring = first or (args.logging_strategy == "steps" and every > 0 and step % every == 0)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """At a training log, write the parts' means and start over; dev evaluations leave them accumulating."""
        if not logs or "loss" not in logs:
            return
        means = self.components.pop_means()
        for name, value in means.items():
            self.writer.add_scalar(f"loss_components/{name}", value, state.global_step)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update({f"loss/{name}": round(value, 6) for name, value in means.items()})
