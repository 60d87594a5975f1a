"""What a run leaves behind besides its records: the model folder, the report, the loss history, peak memory."""

from __future__ import annotations

import logging
import resource
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from embedtune.evaluation.run_report import write_report
from embedtune.io import write_json_atomic

logger = logging.getLogger(__name__)

PER_QUERY_FILE = "per_query.json"
"""Written into the run folder: every metric per query of the reported split, base and fine-tuned."""
SCORES_FILE = "score_distributions.json"
"""Written into the run folder: similarities of relevant pairs and of hard non-relevant documents, both models."""
MODEL_NOTES_FILE = "embedtune.json"
"""Written into a saved model folder: what embedtune knows about the model that sentence-transformers does not keep
(e.g. ``{"matryoshka_dims": [384, 256, 128, 64]}``, the dimensions it was trained to be truncated to)."""


def save_model_atomic(model: SentenceTransformer, target: Path, notes: dict | None = None) -> None:
    """Save ``model`` to ``target`` via a staging folder renamed into place (a crash never leaves half a model).

    ``notes``, when given, are written as :data:`MODEL_NOTES_FILE` inside the folder. A LoRA run's model arrives
    here with its adapter already merged (:meth:`embedtune.training.mode.TrainingMode.finish`), so ``model/`` is always
    a plain sentence-transformers folder.

    Raises:
        FileExistsError: if ``target`` already exists (a run's model is written once).
    """

    def write(staging: Path) -> None:
        model.save(str(staging))
        if notes:
            write_json_atomic(staging / MODEL_NOTES_FILE, notes)

    save_folder_atomic(target, write)


def save_folder_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a staging folder beside ``target`` with ``write(staging)``, then rename it to ``target``.

    Raises:
        FileExistsError: if ``target`` already exists (nothing is written then).
    """
    if target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite it")
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    staging.rename(target)


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


def last_checkpoint(folder: Path) -> Path | None:
    """Return the run's latest complete checkpoint (``checkpoints/checkpoint-<step>``), or ``None`` when it has none.

    A checkpoint counts once its ``trainer_state.json`` exists: the trainer writes that file last, so a run killed
    while saving leaves a folder without it, which is skipped.
    """
    steps = []
    for path in (folder / "checkpoints").glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            steps.append((int(step), path))
    return max(steps)[1] if steps else None
