"""``train.mode: head``: a projection head trained on a frozen encoder's cached embeddings.

The encoder's embedding of a text never changes in this mode, so each distinct training and dev text is encoded
once (:mod:`embedtune.training.head_data`, through the on-disk embedding cache), and training and dev evaluation
only ever run the head: an optimiser step costs a few small matrix products instead of a transformer forward and
backward pass.

Design: the head trains under transformers' :class:`~transformers.Trainer`, not a hand-written loop, so that
everything around the optimiser step is the code the other modes run: AdamW with warm-up and linear/cosine decay,
gradient clipping, ``eval_on_start`` and per-epoch (or ``eval_steps``) dev evaluation, checkpoints (of the head
alone, so small), reloading the best one, resuming, the log history, the console and TensorBoard callbacks. Only three
things are swapped in: the training batches are gathered from the embedding tables by a collator (with
sentence-transformers' no-duplicates batch sampler over the very dataset the full mode trains on, so the batches are
the same), the loss is the configured objective's ``compute_loss_from_embeddings`` applied to the head's outputs,
and :meth:`HeadTrainer.evaluate` ranks the dev pool with the head applied to dev embeddings encoded once. The
trainer's model is :class:`ProjectionHead`, which holds the head's sentence-transformers ``Dense``/``Normalize``
modules; the run's model is the encoder's modules followed by those same modules (:func:`with_head`).

Initialisation: the final projection starts as the top ``head.dim`` principal directions of the training
embeddings (:func:`~embedtune.training.head_data.principal_directions`, uncentred so that dot products are kept;
with ``head.layers: 2``, of the identity-initialised hidden layer's outputs), so the step-0 model ranks like the
encoder (exactly so for a linear head at least as wide as the encoder) rather than at random. Nothing else is random
but the batch order, seeded by ``train.seed``: the same seed gives the same head. The step-0 dev evaluation is of the
untouched encoder, without a head: the base model that a trained head must beat to be kept.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainerState

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.data.prepare import PreparedData
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.losses import LossContext, build_loss
from embedtune.losses.registry import objective_of, uses_guide
from embedtune.models.head import head_modules
from embedtune.runs.layout import CHECKPOINTS_DIR
from embedtune.training.arguments import training_arguments
from embedtune.training.dataset import build_objective_dataset
from embedtune.training.head_data import (
    CachedBatchCollator,
    EmbeddingTable,
    HeadOnCachedEmbeddings,
    HeadTrainRows,
    candidate_columns,
    dev_documents,
    encode_distinct,
    guide_tables,
    hard_dev_pool,
    head_train_rows,
    principal_directions,
)
from embedtune.training.selection import dev_evaluator
from embedtune.training.trainer_setup import run_writer, standard_callbacks, train_and_close

logger = logging.getLogger(__name__)


class ProjectionHead(nn.Module):
    """The head's sentence-transformers modules as one module: ``(..., in_dim)`` embeddings to unit ``(..., dim)``.

    Args:
        modules: From :func:`embedtune.models.head.head_modules`: one or two ``Dense``, then ``Normalize``.
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def forward(self, embeddings: Tensor) -> Tensor:
        """Map ``(..., in_dim)`` encoder embeddings to ``(..., dim)`` unit vectors."""
        features = {"sentence_embedding": embeddings}
        for layer in self.layers:
            features = layer(features)
        return features["sentence_embedding"]


class HeadTrainer(Trainer):
    """transformers' Trainer for a :class:`ProjectionHead` on cached embeddings.

    Args:
        rows: The training rows; their dataset drives the no-duplicates batch sampler.
        collator: Gathers a batch's embeddings from the tables.
        loss: The objective; its ``compute_loss_from_embeddings`` gets the head's outputs per column.
        dev_evaluator: The dev evaluator, called with a :class:`HeadOnCachedEmbeddings`.
        dev_queries: Encoder embeddings of the dev queries.
        dev_documents: Encoder embeddings of the dev pool.
        encoder_similarity: The encoder's similarity function, for the step-0 evaluation of the untouched encoder.
        uses_guide: Pass guide embeddings to the loss (the batch's ``"guide"`` entry, else the encoder embeddings).
        **kwargs: :class:`~transformers.Trainer`'s arguments (``model``, ``args``, ``callbacks``...).
    """

    def __init__(
        self,
        *,
        rows: HeadTrainRows,
        collator: CachedBatchCollator,
        loss: nn.Module,
        dev_evaluator: RetrievalEvaluator,
        dev_queries: EmbeddingTable,
        dev_documents: EmbeddingTable,
        encoder_similarity: Callable[[Tensor, Tensor], Tensor],
        uses_guide: bool = False,
        **kwargs: Any,
    ) -> None:
        # Trainer wants an eval_dataset to evaluate at all; evaluate() below never reads it.
        super().__init__(train_dataset=rows.built.dataset, eval_dataset=rows.built.dataset, **kwargs)
        self.rows = rows
        self.collator = collator
        self.objective = loss
        self.dev_evaluator = dev_evaluator
        self.dev_tables = (dev_queries, dev_documents)
        self.encoder_similarity = encoder_similarity
        self.uses_guide = uses_guide

    def get_train_dataloader(self) -> DataLoader:
        """Batch training row indices with the no-duplicates sampler (seeded, reshuffled each epoch)."""
        generator = torch.Generator().manual_seed(self.args.seed)
        sampler = NoDuplicatesBatchSampler(
            self.rows.built.dataset,
            batch_size=self.args.train_batch_size,
            drop_last=self.args.dataloader_drop_last,
            valid_label_columns=["label"],
            generator=generator,
            seed=self.args.seed,
        )
        loader = DataLoader(range(len(self.rows)), batch_sampler=sampler, collate_fn=self.collator)
        return self.accelerator.prepare(loader)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """Apply the head to every column of the batch and return the objective's scalar loss.

        Args:
            model: The head.
            inputs: From :class:`~embedtune.training.head_data.CachedBatchCollator`: ``embeddings``
                ``(batch, 2 + n, in_dim)``, ``label`` ``(batch, 1 + n)``, optionally ``guide``.
            return_outputs: Also return the head's ``(batch, 2 + n, dim)`` outputs.
            num_items_in_batch: Unused (the loss is a batch mean).

        Returns:
            The scalar loss, with the outputs when ``return_outputs``.
        """
        encoded = inputs["embeddings"]
        outputs = model(encoded)
        columns = list(outputs.unbind(dim=1))
        if self.uses_guide:
            guide = inputs.get("guide", encoded)
            loss = self.objective.compute_loss_from_embeddings(columns, inputs["label"], list(guide.unbind(dim=1)))
        else:
            loss = self.objective.compute_loss_from_embeddings(columns, inputs["label"])
        return (loss, outputs) if return_outputs else loss

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Rank the dev pool with the head applied to the cached dev embeddings; log ``eval_dev_<metric>``.

        At step 0 the untouched encoder is evaluated instead, without any head: it is the base model that dev
        selection keeps unless a trained head beats it (as it is in the other modes), not the freshly initialised
        head (which is lossy when ``head.dim`` is below the encoder's width).

        Returns:
            ``{"eval_dev_<metric>": value, ..., "eval_runtime": seconds}``.
        """
        started = time.perf_counter()
        if self.state.global_step == 0:
            model = HeadOnCachedEmbeddings(None, *self.dev_tables, similarity=self.encoder_similarity)
        else:
            model = HeadOnCachedEmbeddings(self.model, *self.dev_tables)
        scores = self.dev_evaluator(model, epoch=self.state.epoch or 0, steps=self.state.global_step)
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in scores.items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - started, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class EpochTimeCallback(TrainerCallback):
    """Log how long each epoch's training steps took (dev evaluation excluded: it is ``eval_runtime`` in the log)."""

    def __init__(self) -> None:
        self._started = 0.0

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the epoch's clock."""
        self._started = time.perf_counter()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log the epoch's duration."""
        logger.info(
            "Head epoch %.2f: %.2f s of training steps (step %d)",
            state.epoch or 0.0,
            time.perf_counter() - self._started,
            state.global_step,
        )


@dataclass
class HeadTrainingResult:
    """What :func:`train_head` hands the pipeline, shaped like a finished trainer.

    Attributes:
        state: The trainer's state (``log_history`` with ``eval_dev_<metric>`` entries, ``best_global_step``).
        model: The encoder followed by the selected head: a plain ``SentenceTransformer`` returning unit
            ``(n, head.dim)`` embeddings.
        trainer: The trainer itself.
    """

    state: TrainerState
    model: SentenceTransformer
    trainer: HeadTrainer


def train_head(
    config: ExperimentConfig,
    data: PreparedData,
    model: SentenceTransformer,
    folder: Path,
    cache: EmbeddingCache | None,
    *,
    resume_from_checkpoint: str | bool | None = None,
) -> HeadTrainingResult:
    """Train a projection head on the frozen encoder ``model`` from cached embeddings, selecting on dev.

    Steps: encode every distinct training and dev text once (reading and filling ``cache``); initialise the head
    from the training embeddings' principal directions; train it with the configured objective on the full mode's
    rows (in-batch and weighted hard negatives, false-negative masking), AdamW at ``train.head_learning_rate``;
    evaluate dev before training and after every epoch (or ``eval_steps``) with the head
    re-applied to the dev embeddings; reload the best dev checkpoint. The encoder's weights are never changed.

    Args:
        config: The run settings (``train.mode`` is ``head``).
        data: The run's data.
        model: The base model: the frozen encoder, with its prompts.
        folder: The run folder (``checkpoints/`` and ``tensorboard/`` are written there).
        cache: The embedding cache (``None`` when ``eval.cache_max_gb`` is 0: texts are then encoded in memory).
        resume_from_checkpoint: A checkpoint folder under ``folder/checkpoints`` (or ``True`` for the latest) to
            resume from, as :meth:`transformers.Trainer.train` takes it; the embeddings come from the cache again.

    Returns:
        The trainer state and the encoder-plus-best-head model.

    Raises:
        ValueError: if the settings ask for something head mode cannot do (``loss.matryoshka``: set ``head.dim``;
            ``curriculum.enabled``), or there are no training rows.
    """
    if config.loss.matryoshka:
        raise ValueError("loss.matryoshka is not supported with train.mode head; the head's dimension is head.dim")
    if config.curriculum.enabled:
        raise ValueError("curriculum.enabled is not supported with train.mode head")
    model.eval()
    built = build_objective_dataset(data.train_examples, config.data.max_hard_negatives, objective_of(config.loss))
    if len(built.dataset) == 0:
        raise ValueError("train.mode head: no training rows")
    dev_pool, rank_pool = dev_documents(config, data.dev)
    started = time.perf_counter()
    batch_size = config.eval.batch_size
    query_texts = [*built.dataset["anchor"], *data.dev.queries.values()]
    document_texts = [text for column in candidate_columns(built) for text in built.dataset[column]]
    document_texts += dev_pool.values()
    precision = config.eval.precision
    queries = encode_distinct(model, query_texts, "query", batch_size, cache, precision)
    documents = encode_distinct(model, document_texts, "document", batch_size, cache, precision)
    logger.info(
        "Head mode: %d distinct texts (%d queries, %d documents): %d encoded by the frozen encoder, %d read from the "
        "embedding cache, in %.1f s",
        len(queries.rows) + len(documents.rows),
        len(queries.rows),
        len(documents.rows),
        queries.encoded + documents.encoded,
        len(queries.rows) + len(documents.rows) - queries.encoded - documents.encoded,
        time.perf_counter() - started,
    )
    if rank_pool:
        dev_pool = hard_dev_pool(config, data.dev, queries, documents)
    logger.info("Dev pool: %d of %d documents (%s)", len(dev_pool), len(data.dev.corpus), config.data.dev_candidates)
    rows = head_train_rows(built, queries, documents)
    head = ProjectionHead(_initial_head(config, rows, queries, documents))
    guide = guide_tables(config, model, queries, documents, cache)
    loss_settings = dataclasses.replace(config.loss, mini_batch_size=None)  # no gradient caching: no encoder pass
    # The guide's similarities come from cached embeddings; passing the encoder spares GuideModel a deep copy.
    loss = build_loss(model, loss_settings, LossContext(rows.false_negatives, guide=model))
    writer = run_writer(folder, config)
    trainer = HeadTrainer(
        rows=rows,
        collator=CachedBatchCollator(rows, queries.matrix, documents.matrix, guide),
        loss=loss,
        dev_evaluator=dev_evaluator(config, data.dev, dev_pool, progress=False),
        dev_queries=queries,
        dev_documents=documents,
        encoder_similarity=model.similarity,
        uses_guide=uses_guide(config.loss),
        model=head,
        args=_arguments(config, folder, resuming=bool(resume_from_checkpoint)),
        callbacks=[*standard_callbacks(config, writer, loss, folder), EpochTimeCallback()],
    )
    train_and_close(trainer, writer, resume_from_checkpoint)
    return HeadTrainingResult(trainer.state, with_head(model, trainer.model), trainer)


def with_head(model: SentenceTransformer, head: ProjectionHead) -> SentenceTransformer:
    """Return a ``SentenceTransformer`` of the encoder's modules followed by the head's (shared, not copied).

    It keeps the encoder's prompts and similarity function, saves as sentence-transformers' own modules and loads
    with a plain ``SentenceTransformer(path)``.
    """
    head.to(model.device)
    return SentenceTransformer(
        modules=[*model, *head.layers],
        device=str(model.device),
        prompts=dict(model.prompts),
        default_prompt_name=model.default_prompt_name,
        similarity_fn_name=model.similarity_fn_name,
    )


def _initial_head(
    config: ExperimentConfig, rows: HeadTrainRows, queries: EmbeddingTable, documents: EmbeddingTable
) -> list[nn.Module]:
    """Build the head with its projection set to the principal directions of what the projection sees in training."""
    in_dim = queries.matrix.size(1)
    training = torch.cat([queries.matrix[rows.queries.unique()], documents.matrix[rows.candidates.unique()]])
    before_projection = ProjectionHead(head_modules(in_dim, config.head)[:-2])  # identity-initialised hidden layer
    with torch.no_grad():
        features = before_projection(training)
    weight = principal_directions(features, config.head.dim, seed=config.train.seed)
    return head_modules(in_dim, config.head, weight)


def _arguments(config: ExperimentConfig, folder: Path, resuming: bool = False) -> Any:
    """Return the other modes' training arguments, changed for the head.

    The head's learning rate; fp32 (the embeddings are float32 and the head is small); every batch column kept; and
    full checkpoints (optimiser, scheduler and random states besides the weights: a few times the head's size), so
    that resuming continues the run exactly.
    """
    return dataclasses.replace(
        training_arguments(config, folder / CHECKPOINTS_DIR, None, resuming=resuming),
        learning_rate=config.train.head_learning_rate,
        fp16=False,
        bf16=False,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        save_only_model=False,
    )
