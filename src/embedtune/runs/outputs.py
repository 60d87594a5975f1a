"""The writers of a run's outputs besides its records: ``model/``, ``adapter/``, the per-query files, checkpoints.

Every path comes from :mod:`embedtune.runs.layout`; every write is atomic (a staging folder renamed into place, or
:func:`embedtune.io.write_json_atomic`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.io import write_json_atomic
from embedtune.runs.layout import CHECKPOINTS_DIR, MODEL_NOTES_FILE, PER_QUERY_FILE, SCORE_DISTRIBUTIONS_FILE

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


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


def last_checkpoint(folder: Path) -> Path | None:
    """Return the run's latest complete checkpoint (``checkpoints/checkpoint-<step>``), or ``None`` when it has none.

    A checkpoint counts once its ``trainer_state.json`` exists: the trainer writes that file last, so a run killed
    while saving leaves a folder without it, which is skipped.
    """
    steps = []
    for path in (folder / CHECKPOINTS_DIR).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            steps.append((int(step), path))
    return max(steps)[1] if steps else None


def write_per_query(folder: Path, record: dict[str, Any]) -> None:
    """Write :data:`~embedtune.runs.layout.PER_QUERY_FILE` into the run folder, atomically."""
    write_json_atomic(folder / PER_QUERY_FILE, record)


def write_score_distributions(folder: Path, record: dict[str, Any]) -> None:
    """Write :data:`~embedtune.runs.layout.SCORE_DISTRIBUTIONS_FILE` into the run folder, atomically."""
    write_json_atomic(folder / SCORE_DISTRIBUTIONS_FILE, record)
