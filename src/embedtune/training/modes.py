"""The parts training modes are made of: LoRA adapters, an added head, its learning rate and freeze, the adapter.

The modes themselves are :mod:`embedtune.training.mode`.

:func:`add_mode_modules` is called once, right after the base model loads and before the run folder exists
(so a bad ``lora.target_modules`` stops the run before any folder is made). ``train.mode: head`` (a head trained from
cached embeddings on a frozen encoder) trains through :mod:`embedtune.training.head_training` instead.

**What a LoRA run leaves** (Hu et al., arXiv:2106.09685): ``adapter/`` holds the adapter alone (PEFT's
``adapter_config.json`` and ``adapter_model.safetensors``, plus ``embedtune.json`` naming the base model and the LoRA
settings): a few MB, loadable onto the base model with ``base.load_adapter(run / "adapter")``. ``model/`` holds the
selected model *with the adapter merged* into the encoder's weights (:func:`embedtune.models.lora.merge_lora`): a
plain sentence-transformers model, like a full run's, that loads with ``SentenceTransformer(run / "model")`` without
``peft``, without the base model at its original path, and encodes as fast as the base. The final evaluation runs on
that merged model, so the reported figures are those of the saved folder. When dev selection keeps the base model,
``model/`` is the untouched base and no ``adapter/`` is written. The base figures and the step-0 dev evaluation use a
fresh load of the base model (:func:`base_view`), whose embeddings the cache holds from earlier runs; dev selection
confirms a merged copy of the candidate (:func:`merged_copy`), so the final evaluation reads its document embeddings.

**An added head** (``head.add``): :func:`embedtune.models.head.add_head` after the encoder (and after LoRA), its final
projection initialised as a random semi-orthogonal matrix seeded by ``train.seed`` — for ``head.dim`` at least the
encoder's width an isometry; below, it keeps similarities only approximately. The base model that competes in dev
selection is the encoder alone, as in head mode: the step-0 dev evaluation (:class:`BaseAtStepZero`) and the base
figures (:func:`base_view`) leave the untrained head out, and when the base wins ``model/`` is the base model,
without a head. The head learns at ``train.head_learning_rate`` through sentence-transformers'
``learning_rate_mapping`` (:func:`head_learning_rate_mapping`), and ``train.freeze_encoder_epochs`` trains it alone
first (:class:`~embedtune.training.freezing.FreezeEncoderCallback`).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from torch import nn
from transformers import TrainerCallback

from embedtune.config import ExperimentConfig
from embedtune.models.dropout import set_dropout
from embedtune.models.head import add_head, encoder_part, is_head_parameter
from embedtune.models.loading import load_base_model
from embedtune.models.lora import add_lora, has_lora, merge_lora, save_adapter, trainable_parameters
from embedtune.runs.layout import ADAPTER_DIR
from embedtune.runs.outputs import save_folder_atomic
from embedtune.training.freezing import FreezeEncoderCallback

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModeSetup:
    """How :func:`add_mode_modules` changed the model, for the training and the records.

    Attributes:
        mode: ``train.mode``.
        head_start: Index of the added head's first module in the model, or ``None`` without an added head.
        lora_targets: Module names that got LoRA adapters (empty outside lora mode).
        trainable: Parameters that train (elements), counted after the changes; 0 when nothing was counted.
        total: All parameters of the model (elements); 0 when nothing was counted.
        load_base: Loads the untouched base model, when the mode changed the encoder in place (LoRA adapters, which
            embed exactly as the base model before training but have other weights, so another fingerprint and no
            hit in the embedding cache); ``None`` when the model as given still holds the base (see :func:`base_view`).
    """

    mode: str
    head_start: int | None = None
    lora_targets: tuple[str, ...] = ()
    trainable: int = 0
    total: int = 0
    load_base: Callable[[], SentenceTransformer] | None = field(default=None, compare=False, repr=False)

    def record(self) -> dict[str, Any] | None:
        """Return ``metrics.json``'s ``trainable_parameters``, or ``None`` when nothing was counted (mode head).

        Returns:
            ``{"trainable": n, "total": N, "mode": mode, "head": bool}``, plus ``"lora_targets": [...]`` in lora mode.
        """
        if not self.total:
            return None
        record: dict[str, Any] = {
            "trainable": self.trainable,
            "total": self.total,
            "mode": self.mode,
            "head": self.head_start is not None,
        }
        if self.lora_targets:
            record["lora_targets"] = list(self.lora_targets)
        return record


def add_mode_modules(model: SentenceTransformer, config: ExperimentConfig, lora: bool) -> ModeSetup:
    """Add what a full or LoRA run trains to the loaded base model, in place.

    With ``train.dropout`` set: every dropout of the encoder takes it (:func:`~embedtune.models.dropout.set_dropout`).
    With ``lora``: add the adapter (:func:`embedtune.models.lora.add_lora`, seeded by ``train.seed``; the encoder's
    own weights freeze). With ``head.add``: append the projection head. Logs ``trainable parameters: n of N (x %)``.

    Args:
        model: The base model, as loaded (with its prompts).
        config: The run settings.
        lora: Whether to add LoRA adapters.

    Returns:
        What the training and the records need (:class:`ModeSetup`).

    Raises:
        embedtune.config.ConfigError: if LoRA targets cannot be detected or a configured one does not exist.
    """
    mode = config.train.mode
    targets: list[str] = []
    if config.train.dropout is not None:
        set_dropout(model, config.train.dropout)  # before LoRA, whose branches have their own (lora.dropout)
    if lora:
        with torch.random.fork_rng():  # seeded adapter initialisation, leaving the global generators untouched
            torch.manual_seed(config.train.seed)
            targets = add_lora(model, config.lora)
    head_start = None
    if config.head.add:
        device = next(model.parameters()).device
        head_start = add_head(model, config.head, _orthogonal_projection(model, config))
        model.to(device)
    trainable, total = trainable_parameters(model)
    where = f", LoRA on {', '.join(targets)}" if targets else ""
    head = f", head from module {head_start}" if head_start is not None else ""
    logger.info(
        "trainable parameters: %s of %s (%.2f %%), mode %s%s%s",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / max(total, 1),
        mode,
        where,
        head,
    )
    load_base = partial(load_base_model, config) if lora else None
    return ModeSetup(mode, head_start, tuple(targets), trainable, total, load_base)


def base_view(model: SentenceTransformer, setup: ModeSetup) -> SentenceTransformer:
    """Return the model that competes as the base in dev selection and on the report split: the untouched base.

    With LoRA adapters, a fresh load of the base model on ``model``'s device (the adapted model would embed the same
    at step 0, but its other weights miss the embedding cache, so each run would encode the corpus again); with an
    added head, the encoder alone (:func:`encoder_view`, sharing its modules); else ``model`` itself.

    Raises:
        embedtune.model_paths.ModelNotFoundError: if the base model can no longer be loaded (LoRA).
    """
    if setup.load_base is not None:
        return setup.load_base().to(model.device)
    return encoder_view(model, setup)


def encoder_view(model: SentenceTransformer, setup: ModeSetup) -> SentenceTransformer:
    """Return the model without its added head (sharing the modules), or ``model`` itself when it has none.

    The base figures and the dev candidate pool are computed on it: the base model is the encoder, not the encoder
    followed by a freshly initialised head. The view's weights are the base model's, so its cached embeddings are
    reused across runs.
    """
    if setup.head_start is None:
        return model
    return encoder_part(model, setup.head_start)


class BaseAtStepZero(BaseEvaluator):
    """The dev evaluator of a run at step 0: the untouched base model, through the embedding cache.

    The step-0 evaluation is the base model's entry in dev selection. With an added head the trainer's model is the
    encoder followed by an untrained head (a narrowing projection or an MLP), which is not the base model; with LoRA
    it embeds as the base but misses the embedding cache. This wrapper hands ``evaluator`` the :func:`base_view` at
    step 0, with ``cache`` (where earlier runs and this run's base figures left the base model's embeddings), and the
    trained model afterwards, without it (checkpoints are never evaluated twice).

    Args:
        evaluator: The dev evaluator (a :class:`~embedtune.evaluation.retrieval_evaluator.RetrievalEvaluator` uses
            ``cache`` at step 0; another evaluator encodes as it always does).
        setup: From :func:`add_mode_modules`.
        cache: The run's embedding cache, or ``None``.
    """

    def __init__(self, evaluator: BaseEvaluator, setup: ModeSetup, cache: Any = None) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.setup = setup
        self.cache = cache
        self.name = getattr(evaluator, "name", "")
        self.primary_metric = evaluator.primary_metric
        self.greater_is_better = evaluator.greater_is_better

    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate ``model``; at step 0 the untouched base model (:func:`base_view`) instead, through the cache."""
        if steps != 0:
            return self.evaluator(model, output_path=output_path, epoch=epoch, steps=steps)
        base = base_view(model, self.setup)
        if not hasattr(self.evaluator, "cache"):
            return self.evaluator(base, output_path=output_path, epoch=epoch, steps=0)
        own, self.evaluator.cache = self.evaluator.cache, self.cache
        try:
            return self.evaluator(base, output_path=output_path, epoch=epoch, steps=0)
        finally:
            self.evaluator.cache = own


def dev_evaluator_for_mode(evaluator: BaseEvaluator, setup: ModeSetup, cache: Any = None) -> BaseEvaluator:
    """Return ``evaluator`` wrapped so that step 0 scores the untouched base model through ``cache``."""
    return BaseAtStepZero(evaluator, setup, cache)


def head_learning_rate_mapping(
    loss: nn.Module, model: SentenceTransformer, setup: ModeSetup, config: ExperimentConfig
) -> dict[str, float] | None:
    """Build sentence-transformers' ``learning_rate_mapping`` that gives the head its own learning rate.

    The trainer matches each pattern (``re.search``) against the names of ``loss.named_parameters()`` (where the
    model sits under the loss's own attribute names) and puts the matches in their own parameter groups; every other
    parameter (the encoder or its LoRA adapter) keeps ``train.learning_rate``. The pattern lists the head's parameter
    names exactly, found by identity, so an encoder parameter can never match by accident.

    Args:
        loss: The training loss, holding ``model``.
        model: The model being trained.
        setup: From :func:`add_mode_modules`.
        config: The run settings (``train.head_learning_rate``).

    Returns:
        ``{"^(?:<name>|<name>...)$": head learning rate}``, or ``None`` without an added head.

    Raises:
        ValueError: if none of the head's parameters is reachable from ``loss`` (the loss does not train the model).
    """
    if setup.head_start is None:
        return None
    head = {id(p) for name, p in model.named_parameters() if is_head_parameter(name, model, setup.head_start)}
    names = [name for name, parameter in loss.named_parameters() if id(parameter) in head]
    if not names:
        raise ValueError("the loss holds none of the head's parameters; cannot give the head its learning rate")
    rate = config.train.head_learning_rate
    return {"^(?:" + "|".join(re.escape(name) for name in names) + ")$": rate}


def mode_callbacks(model: SentenceTransformer, setup: ModeSetup, config: ExperimentConfig) -> list[TrainerCallback]:
    """Return the trainer callbacks the mode needs: the encoder freeze with ``train.freeze_encoder_epochs > 0``."""
    epochs = config.train.freeze_encoder_epochs
    if setup.head_start is None or epochs <= 0:
        return []
    return [FreezeEncoderCallback(model, setup.head_start, epochs)]


def write_adapter_and_merge(
    model: SentenceTransformer, setup: ModeSetup, folder: Path, config: ExperimentConfig
) -> SentenceTransformer:
    """Prepare a LoRA run's selected model for ``model/``: write ``adapter/`` and merge the adapter.

    A model without an adapter (the freshly loaded base model kept by dev selection) is returned untouched.

    Args:
        model: The selected model.
        setup: From :func:`add_mode_modules`.
        folder: The run folder; ``adapter/`` is written there atomically (via a staging folder).
        config: The run settings (recorded in the adapter's notes).

    Returns:
        ``model``, merged in place when it carried an adapter (see :func:`embedtune.models.lora.merge_lora`).

    Raises:
        FileExistsError: if ``adapter/`` already exists.
    """
    if not has_lora(model):
        return model
    network = model.transformers_model
    adapter = network.peft_config[network.active_adapters()[0]]
    notes = {
        "base_model": config.model.name_or_path,
        "base_model_path": adapter.base_model_name_or_path,
        "lora": {
            "rank": config.lora.rank,
            "alpha": config.lora.alpha,
            "dropout": config.lora.dropout,
            "target_modules": list(setup.lora_targets),
        },
        "head": setup.head_start is not None,
        "merged_model": "../model",
    }
    save_folder_atomic(folder / ADAPTER_DIR, lambda staging: save_adapter(model, staging, notes))
    logger.info("Adapter saved to %s; model/ holds the model with the adapter merged", folder / ADAPTER_DIR)
    return merge_lora(model)


def merged_copy(model: SentenceTransformer) -> SentenceTransformer:
    """Return a deep copy of ``model`` with its LoRA adapter merged, or ``model`` itself when it carries none.

    Merging is deterministic, so the copy's weights, and its embedding-cache fingerprint, are those
    :func:`write_adapter_and_merge` gives ``model`` later: the dev confirmation of the copy leaves the document
    embeddings the final evaluation of the merged ``model/`` reads. Costs a second copy of the model while it lives.
    """
    return merge_lora(copy.deepcopy(model)) if has_lora(model) else model


def _orthogonal_projection(model: SentenceTransformer, config: ExperimentConfig) -> torch.Tensor:
    """Return a ``(head.dim, in_dim)`` semi-orthogonal matrix, seeded by ``train.seed``."""
    weight = torch.empty(config.head.dim, model.get_embedding_dimension())
    generator = torch.Generator().manual_seed(config.train.seed)
    return torch.nn.init.orthogonal_(weight, generator=generator)
