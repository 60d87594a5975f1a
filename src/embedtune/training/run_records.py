"""What a training run reports besides its model: the loss history, peak memory, and the report it renders."""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import torch

from embedtune.evaluation.run_report import write_report

logger = logging.getLogger(__name__)


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (plus peak CUDA memory when a GPU was used)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return round(peak, 1)


def write_run_report(folder: Path) -> None:
    """Write report.md and its figures; a failure is logged (the run itself is complete and recorded)."""
    try:
        logger.info("Report: %s", write_report(folder))
    except Exception as error:  # noqa: BLE001 - the run is finished; a report problem must not mark it failed
        logger.warning(
            "Could not write the report (%s: %s); `embedtune report %s` retries", type(error).__name__, error, folder
        )


def loss_history(log_history: list[dict]) -> list[dict[str, float]]:
    """Each training log's step, loss, learning rate, grad norm and loss parts, from the trainer's log history.

    Returns:
        ``[{"step": int, "loss": float, "learning_rate": float, "grad_norm": float, "loss/<name>": float, ...}]``
        in step order (keys present as logged).
    """
    kept = ("step", "loss", "learning_rate", "grad_norm")
    return [
        {
            key: value
            for key, value in entry.items()
            if (key in kept or key.startswith("loss/")) and isinstance(value, int | float)
        }
        for entry in log_history
        if "loss" in entry
    ]
