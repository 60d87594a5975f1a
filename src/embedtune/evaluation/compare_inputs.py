"""What ``embedtune eval`` compares, resolved and checked before any model loads: models, datasets, the out folder.

:func:`resolve_model_source` turns a reference (run name, run folder, model folder, model name) into a
:class:`ModelSource` without loading weights; :func:`default_baseline` picks the runs' shared base model;
:func:`load_datasets` loads and validates every BEIR split; :func:`check_out_dir` refuses an existing results folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtune import runs
from embedtune.data.beir import QRELS_DIR, load_beir
from embedtune.data.eval_splits import parse_dataset_spec, shipped_split
from embedtune.data.types import EvalSplit
from embedtune.model_paths import PACKAGED_MODEL_ALIASES, ModelNotFoundError, check_model_available
from embedtune.runs.layout import MODEL_DIR, RUN_FILE

OWN_SETTINGS = "the model's own settings"


@dataclass(frozen=True)
class LoadSettings:
    """How a model is loaded beyond its path: as a run loaded its base model (``model.*`` settings).

    Attributes:
        max_seq_length: Truncation length in tokens; ``None`` keeps the model's own.
        query_prefix: Query prompt set on the model; ``""`` keeps the model's own.
        passage_prefix: Document prompt set on the model; ``""`` keeps the model's own.
    """

    max_seq_length: int | None = None
    query_prefix: str = ""
    passage_prefix: str = ""

    @classmethod
    def of_run(cls, config: dict[str, Any]) -> LoadSettings:
        """Read the settings a run loaded its base model with from its ``run.json`` config (defaults where absent)."""
        model = config.get("model")
        model = model if isinstance(model, dict) else {}
        length = model.get("max_seq_length")
        query, passage = model.get("query_prefix"), model.get("passage_prefix")
        return cls(
            length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None,
            query if isinstance(query, str) else "",
            passage if isinstance(passage, str) else "",
        )

    def describe(self) -> str:
        """Return the settings that differ from the model's own, e.g. ``"max_seq_length 128"`` (``""``: none)."""
        parts = [] if self.max_seq_length is None else [f"max_seq_length {self.max_seq_length}"]
        parts += [
            f"{name} {value!r}"
            for name, value in (("query_prefix", self.query_prefix), ("passage_prefix", self.passage_prefix))
            if value
        ]
        return ", ".join(parts)


@dataclass(frozen=True)
class ModelSource:
    """A model named on the command line, resolved without loading it.

    Attributes:
        label: The reference as the user gave it (run name, folder, model name); the column header.
        path: What :func:`~embedtune.models.loading.load_model` loads (a run's ``model/`` folder for a run).
        run: The run folder when the reference is a run, else ``None``.
        base_model: For a run, its ``run.json`` config's ``model.name_or_path`` (``None`` when unrecorded or not a
            run).
        settings: How to load it: a run's base model as the run loaded it (:func:`default_baseline`); the
            defaults (the model's own) otherwise. Command-line flags override them.
        base_settings: For a run, the settings it loaded its base model with (``run.json``); else ``None``.
    """

    label: str
    path: str
    run: Path | None = None
    base_model: str | None = None
    settings: LoadSettings = LoadSettings()
    base_settings: LoadSettings | None = None


@dataclass(frozen=True)
class EvalDataset:
    """One dataset to evaluate on: a BEIR folder's split, loaded and validated.

    Attributes:
        name: Label in tables and files: ``<folder name>:<split>`` (the full folder path when two folders share a
            name).
        folder: The BEIR folder.
        split: The qrels split.
        data: Its corpus, judged queries and judgements.
    """

    name: str
    folder: Path
    split: str
    data: EvalSplit


def resolve_model_source(ref: str, runs_dir: str | Path) -> ModelSource:
    """Resolve a ``--model``/``--baseline`` reference without loading weights.

    An existing path is a run folder (it holds ``model/`` and ``run.json``: its ``model/`` is loaded) or a model
    folder; anything else is tried as a run name under ``runs_dir`` (except the packaged MiniLM aliases), then as a
    model name (packaged alias, Hugging Face cache or hub).

    Args:
        ref: The reference as given.
        runs_dir: Folder holding run folders.

    Returns:
        The :class:`ModelSource` labelled ``ref``; for a run, with its folder and recorded base model.

    Raises:
        embedtune.model_paths.ModelNotFoundError: if ``ref`` is neither a run nor an available model.
        embedtune.runs.RunStoreError: if ``runs_dir`` exists but cannot be listed.
    """
    candidate = Path(ref).expanduser()
    run_folder: Path | None = None
    if candidate.exists():
        if (candidate / MODEL_DIR).is_dir() and (candidate / RUN_FILE).is_file():
            run_folder = candidate
        else:
            return ModelSource(ref, check_model_available(str(candidate)))
    elif ref not in PACKAGED_MODEL_ALIASES:
        try:
            run_folder = runs.resolve_run(ref, runs_dir)
        except ValueError:
            pass
    if run_folder is None:
        return ModelSource(ref, check_model_available(ref))
    path = check_model_available(str(run_folder / MODEL_DIR))
    run = runs.load_run(run_folder)
    return ModelSource(ref, path, run_folder, run.base_model, base_settings=LoadSettings.of_run(run.config))


def default_baseline(models: Sequence[ModelSource]) -> ModelSource | None:
    """Pick the baseline when none is named: the base model every model was fine-tuned from, loaded as the runs did.

    A run compares its model with the base model loaded with its ``model.max_seq_length`` and prefixes; a baseline
    loaded with the model's own settings instead would credit fine-tuning with what those settings change.

    Args:
        models: The resolved models.

    Returns:
        When every model is a run and their ``run.json`` configs all record the same ``model.name_or_path``, that
        model (labelled with the recorded name, resolved as a model name or folder, never as a run) with the runs'
        :class:`LoadSettings`; else ``None``.

    Raises:
        embedtune.model_paths.ModelNotFoundError: if the shared base model cannot be found here (the message
            suggests ``--baseline`` or ``--no-baseline``).
        ValueError: if the runs loaded that base model with different settings (no one baseline matches them all).
    """
    bases = {model.base_model for model in models}
    if not models or any(model.run is None for model in models) or len(bases) != 1 or None in bases:
        return None
    base = bases.pop()
    settings = {model.base_settings or LoadSettings() for model in models}
    if len(settings) > 1:
        described = "; ".join(
            f"{model.label}: {(model.base_settings or LoadSettings()).describe() or OWN_SETTINGS}" for model in models
        )
        raise ValueError(
            f"the runs loaded their base model {base} with different settings ({described}); name the baseline "
            "with --baseline (and --max-seq-length, --query-prefix, --passage-prefix), or pass --no-baseline"
        )
    try:
        return ModelSource(base, check_model_available(base), settings=settings.pop())
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"the runs' base model cannot be found ({error}); name one with --baseline, or pass --no-baseline"
        ) from None


def check_model_labels(models: Sequence[ModelSource]) -> None:
    """Check that no model is named twice (labels key the columns and the files).

    Raises:
        ValueError: naming the repeated references.
    """
    labels = [model.label for model in models]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"--model given twice: {', '.join(duplicates)}")


def load_datasets(specs: Sequence[str], default_split: str = "test") -> list[EvalDataset]:
    """Load and validate every dataset named on the command line, before any model is loaded.

    Args:
        specs: ``FOLDER`` or ``FOLDER:SPLIT`` per dataset (BEIR folders).
        default_split: The split of a ``FOLDER`` without one.

    Returns:
        The datasets, in the order given, each ranking its folder's whole corpus.

    Raises:
        ValueError: if ``specs`` is empty or names one folder and split twice.
        embedtune.errors.DataError: naming the folder or file when one is missing or malformed, or a split has
            no judgement with score > 0.
    """
    if not specs:
        raise ValueError("no dataset to evaluate on: give --data at least once")
    parsed = [parse_dataset_spec(spec, default_split) for spec in specs]
    seen: set[tuple[Path, str]] = set()
    for spec, (folder, split) in zip(specs, parsed, strict=True):
        key = (folder.resolve(), split)
        if key in seen:
            raise ValueError(f"--data {spec}: split '{split}' of {folder} is given twice")
        seen.add(key)
    short = [f"{folder.name}:{split}" for folder, split in parsed]
    names = short if len(set(short)) == len(short) else [f"{folder}:{split}" for folder, split in parsed]
    datasets = []
    for name, (folder, split) in zip(names, parsed, strict=True):
        data = shipped_split(load_beir(folder, splits=[split]), split, folder / QRELS_DIR / f"{split}.tsv")
        datasets.append(EvalDataset(name, folder, split, data))
    return datasets


def check_out_dir(path: str | Path) -> Path:
    """Check, before any work, that ``path`` can become the results folder; nothing is created.

    Args:
        path: The ``--out`` folder.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ``~`` expanded.

    Raises:
        ValueError: if ``path`` already exists (results are never overwritten), or its nearest existing ancestor is
            not a folder or not writable.
    """
    out = Path(path).expanduser()
    if out.exists() or out.is_symlink():
        raise ValueError(f"--out {out}: already exists; embedtune eval never overwrites results, choose a new folder")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot create it, {ancestor} is not writable")
    return out
