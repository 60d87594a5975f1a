"""``embedtune export`` (``--format st``): write a run's model as a standalone sentence-transformers folder.

What is exported, by the run's ``train.mode``:

- ``full`` and ``head`` runs: a copy of the run's ``model/`` (already a plain model); ``--merge`` changes nothing.
- ``lora`` runs: ``--merge`` is required, so that nobody mistakes the export for the adapter (that is the run's
  ``adapter/``; a run that kept the base model has none and is copied as a full run). A LoRA run's ``model/``
  already holds the merged model (see :mod:`embedtune.training.modes`), and is copied; a model folder that still
  holds a PEFT adapter (``adapter_config.json``, as sentence-transformers saves a model with an adapter) is loaded,
  merged (:func:`embedtune.models.lora.merge_lora`, PEFT's ``merge_and_unload``
  for an adapter injected into a transformers model) and saved.

Either way the export holds no ``adapter_config.json`` and loads with ``SentenceTransformer(OUT)`` without ``peft``.
It is written to a staging folder beside ``OUT`` and renamed into place, and never overwrites anything.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from embedtune.config.modes import TRAIN_MODES
from embedtune.models.lora import merge_lora
from embedtune.runs import read_run_record, resolve_run
from embedtune.runs.layout import ADAPTER_DIR, MODEL_DIR, MODEL_NOTES_FILE

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class ExportSource:
    """The model an export is made from.

    Attributes:
        run: The run folder.
        model_dir: Its ``model/`` folder.
        mode: The run's ``train.mode``.
        holds_adapter: Whether ``model_dir`` still holds a PEFT adapter (it is merged on export).
    """

    run: Path
    model_dir: Path
    mode: str
    holds_adapter: bool

    def load(self, **model_kwargs: Any) -> SentenceTransformer:
        """Load the model on CPU, with any adapter merged; ``model_kwargs`` go to transformers' ``from_pretrained``."""
        model = SentenceTransformer(str(self.model_dir), device="cpu", model_kwargs=model_kwargs or None)
        if self.holds_adapter:
            merge_lora(model)
        return model.eval()


def export_source(run: str | Path, out: str | Path, merge: bool, runs_dir: str | Path = "runs") -> ExportSource:
    """Check that ``run`` can be exported to ``out``, before anything is loaded or written.

    Raises:
        ValueError: if ``out`` exists, the run cannot be resolved or has no ``model/``, or a LoRA run that
            shipped its adapter (``adapter/``, or one in ``model/``) is exported without ``merge`` (a LoRA run that
            kept the base model is a plain copy).
    """
    target = Path(out)
    if target.exists() or target.is_symlink():
        raise ValueError(f"{target} already exists; export writes a new folder and never overwrites one")
    folder = resolve_run(str(run), runs_dir)
    source = folder / MODEL_DIR
    if not (source / "modules.json").is_file():
        raise ValueError(f"run {folder} has no model to export ({source} is missing or holds no modules.json)")
    mode = run_mode(folder)
    holds_adapter = has_adapter_files(source)
    trained_adapter = _leaves_adapter(mode) and (folder / ADAPTER_DIR).exists()  # none when the run kept the base
    if (trained_adapter or holds_adapter) and not merge:
        raise ValueError(
            f"run {folder.name} trained a LoRA adapter: pass --merge to export the model with the adapter merged into "
            f"its weights (the adapter alone is in {folder / ADAPTER_DIR})"
        )
    return ExportSource(folder, source, mode, holds_adapter)


@contextlib.contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """Yield a fresh staging folder beside ``target``; renamed to ``target`` when the block ends without error.

    The staging folder is removed in every case, so a failed or interrupted export leaves nothing at ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_model(run: str | Path, out: str | Path, merge: bool = False, runs_dir: str | Path = "runs") -> Path:
    """Write the model of ``run`` to ``out`` as a plain sentence-transformers folder (see the module docstring).

    Args:
        run: A run folder, or a run reference resolved under ``runs_dir`` (folder name, run name, unique suffix).
        out: The folder to create; must not exist.
        merge: Merge a LoRA adapter into the weights; required for a LoRA run.
        runs_dir: Where run references are looked up.

    Returns:
        ``out``.

    Raises:
        ValueError: if ``out`` exists, the run cannot be resolved or has no ``model/``, or a LoRA run that
            shipped its adapter (``adapter/``, or one in ``model/``) is exported without ``merge`` (a LoRA run that
            kept the base model is a plain copy).
        RuntimeError: if the written folder still holds an adapter (never expected).
    """
    target = Path(out)
    source = export_source(run, target, merge, runs_dir)
    with staging_folder(target) as staging:
        if source.holds_adapter:
            _write_merged(source, staging)
        else:
            shutil.copytree(source.model_dir, staging)
        if has_adapter_files(staging):
            raise RuntimeError(f"the export of {source.model_dir} still holds a PEFT adapter; nothing written")
    merged = ", adapter merged" if source.holds_adapter else ""
    logger.info("Exported %s (mode %s%s) to %s", source.model_dir, source.mode, merged, target)
    return target


def run_mode(folder: Path) -> str:
    """Return the run's recorded ``train.mode`` (``"full"`` for runs recorded before modes existed)."""
    train = read_run_record(folder).config.get("train")
    mode = train.get("mode") if isinstance(train, dict) else None
    return mode if isinstance(mode, str) else "full"


def _leaves_adapter(mode: str) -> bool:
    """Whether runs of ``mode`` leave an adapter (:attr:`embedtune.config.modes.Mode.adapter`; unknown: no)."""
    declared = TRAIN_MODES.get(mode)
    return declared is not None and declared.adapter


def has_adapter_files(folder: Path) -> bool:
    """Whether ``folder`` or any folder below it holds a PEFT ``adapter_config.json``."""
    return any(folder.rglob(ADAPTER_CONFIG_FILE))


def _write_merged(source: ExportSource, staging: Path) -> None:
    """Load the adapter model, merge its adapter, save the plain model (and embedtune's notes)."""
    source.load().save(str(staging))
    notes = source.model_dir / MODEL_NOTES_FILE
    if notes.is_file():
        shutil.copy2(notes, staging / MODEL_NOTES_FILE)
