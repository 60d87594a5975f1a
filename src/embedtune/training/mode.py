"""Training modes behind one interface: :class:`TrainingMode`, and ``full``, ``lora`` and ``head`` as subclasses.

A mode decides what trains and what a run leaves; :mod:`embedtune.training.pipeline` calls these hooks in this order
and never asks for a mode by name:

1. :meth:`~TrainingMode.check_libraries` — before any data or model loads (LoRA: transformers must accept peft).
2. :meth:`~TrainingMode.prepare` — on the loaded base model, before the run folder exists: add adapters or a head.
3. :meth:`~TrainingMode.base_view` — the model that competes as "base" in dev selection and on the report split
   (the encoder alone when a head was added; with LoRA a fresh load of the base model, which the cache knows).
4. :meth:`~TrainingMode.train` — train with dev evaluation; return the trainer (its model, its dev history).
5. :meth:`~TrainingMode.shipped_form` — the candidate as ``model/`` would hold it, which dev selection confirms
   against the base (LoRA: a merged copy).
6. :meth:`~TrainingMode.finish` — turn the selected model into what ``model/`` holds (LoRA: write ``adapter/``,
   merge).

Adding a mode is one subclass plus one :func:`embedtune.config.modes.register_mode` entry naming it (the
declaration tells the configuration whether the encoder is frozen, whether it trains from cached embeddings, and
whether it leaves an adapter for ``embedtune export``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentence_transformers import SentenceTransformer

from embedtune.config import ExperimentConfig
from embedtune.training import modes
from embedtune.training.fine_tune import fine_tune
from embedtune.training.head_training import train_head
from embedtune.training.mlflow_report import check_mlflow
from embedtune.versions import check_lora_libraries

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache
    from embedtune.data.prepare import PreparedData


class TrainingMode:
    """The template: a full fine-tune of the encoder (with an optional added head, ``head.add``).

    Subclasses override the hooks their mode changes; every hook has the full mode's behaviour here.
    """

    def check_libraries(self, config: ExperimentConfig) -> None:
        """Check that the installed libraries can train this mode, before anything loads.

        Raises:
            embedtune.config.ConfigError: one line naming the libraries and the fix.
        """

    def prepare(self, model: SentenceTransformer, config: ExperimentConfig) -> modes.ModeSetup:
        """Turn the loaded base model into the model this mode trains, in place (before the run folder exists).

        Returns:
            What the training and the records need (:class:`~embedtune.training.modes.ModeSetup`).

        Raises:
            embedtune.config.ConfigError: for settings the model cannot take.
        """
        return modes.add_mode_modules(model, config, lora=False)

    def base_view(self, model: SentenceTransformer, setup: modes.ModeSetup) -> SentenceTransformer:
        """Return the model that competes as the base (:func:`~embedtune.training.modes.base_view`)."""
        return modes.base_view(model, setup)

    def train(
        self,
        config: ExperimentConfig,
        data: PreparedData,
        model: SentenceTransformer,
        folder: Path,
        cache: EmbeddingCache | None,
        setup: modes.ModeSetup,
        resume_from: Path | None,
    ) -> Any:
        """Train ``model`` with dev evaluation, resuming from a checkpoint when given.

        Returns:
            The trainer: ``.model`` is the model it ended with (the best checkpoint loaded), ``.state.log_history``
            its losses and dev evaluations.
        """
        return fine_tune(config, data, model, folder, cache, setup, resume_from=resume_from)

    def shipped_form(self, model: SentenceTransformer, setup: modes.ModeSetup) -> SentenceTransformer:
        """Return the candidate ``model`` as :meth:`finish` would turn it into ``model/``, leaving ``model`` as it is.

        Dev selection confirms this form, so the decision is made on what ships and the final evaluation finds its
        document embeddings in the cache (which matches weights exactly).
        """
        return model

    def finish(
        self, model: SentenceTransformer, setup: modes.ModeSetup, folder: Path, config: ExperimentConfig
    ) -> SentenceTransformer:
        """Return what ``model/`` holds for the selected ``model`` (the trained one or the base); may write beside it.

        Raises:
            FileExistsError: if a folder it writes already exists.
        """
        return model


class FullMode(TrainingMode):
    """``train.mode: full``: every encoder weight trains (the template's behaviour)."""


class LoraMode(TrainingMode):
    """``train.mode: lora``: LoRA adapters train, the encoder's own weights stay frozen (arXiv:2106.09685).

    ``adapter/`` holds the adapter alone; ``model/`` the selected model with the adapter merged
    (:func:`embedtune.training.modes.write_adapter_and_merge`).
    """

    def check_libraries(self, config: ExperimentConfig) -> None:
        """Check that the installed transformers accepts the installed peft (:func:`~embedtune.versions`)."""
        check_lora_libraries()

    def prepare(self, model: SentenceTransformer, config: ExperimentConfig) -> modes.ModeSetup:
        """Add the seeded LoRA adapter (and the head with ``head.add``)."""
        return modes.add_mode_modules(model, config, lora=True)

    def shipped_form(self, model: SentenceTransformer, setup: modes.ModeSetup) -> SentenceTransformer:
        """Return a copy of ``model`` with the adapter merged (:func:`~embedtune.training.modes.merged_copy`)."""
        return modes.merged_copy(model)

    def finish(
        self, model: SentenceTransformer, setup: modes.ModeSetup, folder: Path, config: ExperimentConfig
    ) -> SentenceTransformer:
        """Write ``adapter/`` and merge the adapter into the selected model (the base model is returned as is)."""
        return modes.write_adapter_and_merge(model, setup, folder, config)


class HeadMode(TrainingMode):
    """``train.mode: head``: a projection head trained on the frozen encoder from cached embeddings.

    The model is left as loaded (:func:`embedtune.training.head_training.train_head` builds the head), and the base
    that competes is the encoder itself.
    """

    def prepare(self, model: SentenceTransformer, config: ExperimentConfig) -> modes.ModeSetup:
        """Change nothing: the head is built by the training from the encoder's embeddings."""
        return modes.ModeSetup(config.train.mode)

    def train(
        self,
        config: ExperimentConfig,
        data: PreparedData,
        model: SentenceTransformer,
        folder: Path,
        cache: EmbeddingCache | None,
        setup: modes.ModeSetup,
        resume_from: Path | None,
    ) -> Any:
        """Train the head from cached encoder embeddings (:func:`~embedtune.training.head_training.train_head`)."""
        return train_head(config, data, model, folder, cache, resume_from_checkpoint=resume_from)


def training_mode(config: ExperimentConfig) -> TrainingMode:
    """Return the :class:`TrainingMode` that ``train.mode`` names (its registered ``trainer`` class).

    Raises:
        KeyError: for an unregistered mode (the configuration refuses it before).
    """
    module, name = config.train_mode.trainer.split(":")
    return getattr(importlib.import_module(module), name)()


def check_mode_libraries(config: ExperimentConfig) -> None:
    """Check that the installed libraries can train ``train.mode`` and log where ``train.report_to`` says.

    See :meth:`TrainingMode.check_libraries` and :func:`embedtune.training.mlflow_report.check_mlflow`.
    """
    training_mode(config).check_libraries(config)
    check_mlflow(config)


def prepare_model_for_mode(model: SentenceTransformer, config: ExperimentConfig) -> modes.ModeSetup:
    """Prepare the loaded base model for ``train.mode`` (:meth:`TrainingMode.prepare`)."""
    return training_mode(config).prepare(model, config)


def shipped_form(model: SentenceTransformer, setup: modes.ModeSetup, config: ExperimentConfig) -> SentenceTransformer:
    """Return the candidate as ``model/`` would hold it, for dev confirmation (:meth:`TrainingMode.shipped_form`)."""
    return training_mode(config).shipped_form(model, setup)


def finish_mode_model(
    model: SentenceTransformer, setup: modes.ModeSetup, folder: Path, config: ExperimentConfig
) -> SentenceTransformer:
    """Turn the selected model into what ``model/`` holds (:meth:`TrainingMode.finish`)."""
    return training_mode(config).finish(model, setup, folder, config)
