"""Train phase by phase, easy to hard (Bengio et al., 2009, "Curriculum learning").

The trainer gets one ordered dataset: phase 1's rows (``curriculum.epochs_per_phase`` passes, each pass shuffled with
a seed derived from ``train.seed``, the phase and the pass), then phase 2's, and so on, and a batch sampler that
yields its batches in that order, once: the run is one epoch over the ordered dataset.

Batches are planned before training. They never straddle two phases (a phase's last batch may be short), and,
like sentence-transformers' ``NO_DUPLICATES`` sampler, no batch holds the same text twice: within a phase, a row
whose text is already in the batch being filled waits for the next batch that has room for it (its order is kept
otherwise; a duplicate is never moved into another phase). The ordered dataset holds the rows exactly as batched,
so ``dataset[first:last]`` is a batch. (sentence-transformers' ``NoDuplicatesBatchSampler`` is not used here: it
shuffles the whole dataset itself every epoch, while a curriculum needs batches in a planned order, phase by phase,
with passes shuffled by their own seeds; what is kept is only the duplicate deferral, :func:`no_duplicate_batches`.
Runs without a curriculum use that sampler, ``BatchSamplers.NO_DUPLICATES``.)

Dev is evaluated (and a checkpoint saved) at the end of every phase, so
checkpoint selection sees each phase; the phase is logged to TensorBoard (``curriculum/phase``, 1-based) at each
logging step and to the console when a phase starts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from torch.utils.tensorboard import SummaryWriter
from transformers import TrainerCallback, TrainingArguments

from embedtune.config import ExperimentConfig
from embedtune.data.curriculum import PhaseAssignment, check_curriculum
from embedtune.data.prepare import PreparedData
from embedtune.training.curriculum_sampler import OrderedBatches

logger = logging.getLogger("embedtune.training")

LABEL_COLUMNS = ("label", "labels", "score", "scores")
"""Columns sentence-transformers hands to the loss as labels: not text, so not checked for duplicates."""
PHASE_TAG = "curriculum/phase"
"""TensorBoard scalar: the 1-based number of the phase a logged step trained on."""


@dataclass(frozen=True)
class PhaseSpan:
    """Where one phase lies in the ordered dataset and in the run's optimiser steps.

    Attributes:
        name: The phase's name.
        number: 1-based position in ``curriculum.phases``.
        examples: Training examples (or labelled pairs) assigned to it.
        rows: Rows of the ordered dataset it takes, over all its passes.
        first_step: Its first optimiser step (1-based, as ``state.global_step`` counts), ``None`` when empty.
        last_step: Its last optimiser step, ``None`` when empty.
        threshold: Its upper difficulty cut (``d <= threshold``) for a difficulty curriculum, ``None`` for the last
            phase and for phase fields.
    """

    name: str
    number: int
    examples: int
    rows: int
    first_step: int | None
    last_step: int | None
    threshold: float | None = None

    @property
    def is_empty(self) -> bool:
        """Whether the phase has no rows (and so no steps)."""
        return self.first_step is None


@dataclass
class CurriculumPlan:
    """The ordered training dataset, its batches and the phases' places in it.

    Attributes:
        dataset: The rows in training order, as batched.
        batch_sizes: Size of each batch in order; batch ``i`` is step ``i + 1``.
        spans: One per phase in ``curriculum.phases`` order (empty phases included).
        source: ``"phase"`` or ``"difficulty"``: how the phases were assigned.
        epochs_per_phase: Passes over each phase's rows.
    """

    dataset: Dataset
    batch_sizes: list[int]
    spans: list[PhaseSpan]
    source: str
    epochs_per_phase: float

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the whole curriculum (one per batch)."""
        return len(self.batch_sizes)

    def phase_at(self, step: int) -> PhaseSpan | None:
        """Return the phase that optimiser step ``step`` (1-based) trains on, or ``None`` outside the plan."""
        return next((s for s in self.spans if not s.is_empty and s.first_step <= step <= s.last_step), None)

    def to_record(self) -> dict[str, Any]:
        """Return the schedule for ``metrics.json``.

        Returns:
            ``{"source", "epochs_per_phase", "phases": [{"name", "examples", "rows", "steps": [first, last] or
            None, "threshold"?}]}``; ``threshold`` only on phases that have one.
        """
        phases = []
        for span in self.spans:
            entry: dict[str, Any] = {"name": span.name, "examples": span.examples, "rows": span.rows}
            entry["steps"] = None if span.is_empty else [span.first_step, span.last_step]
            if span.threshold is not None:
                entry["threshold"] = span.threshold
            phases.append(entry)
        return {"source": self.source, "epochs_per_phase": self.epochs_per_phase, "phases": phases}

    def configure(self, args: TrainingArguments, writer: SummaryWriter, max_steps: int) -> CurriculumCallback:
        """Make the trainer's arguments train the plan: its batches in order, one epoch, dev at phase ends.

        ``train.epochs`` is ignored (logged); ``train.max_steps``, when set below the plan's length, cuts the
        curriculum short (logged), and is dropped otherwise (it would repeat the curriculum).

        Args:
            args: The trainer's arguments, changed in place.
            writer: The run's TensorBoard writer.
            max_steps: ``train.max_steps`` (-1 when unset).

        Returns:
            The callback to hand to the trainer.

        Raises:
            ValueError: if ``args`` accumulates gradients over several batches (steps would not be batches).
        """
        if args.gradient_accumulation_steps != 1:
            raise ValueError("curriculum training needs gradient_accumulation_steps=1 (one batch per step)")
        logger.info("Curriculum on: train.epochs is ignored; one pass over the %d planned steps.", self.total_steps)
        args.num_train_epochs = 1
        args.batch_sampler = OrderedBatches(self.batch_sizes)
        if 0 < max_steps < self.total_steps:
            logger.warning("train.max_steps=%d cuts the curriculum of %d steps short.", max_steps, self.total_steps)
            args.max_steps = max_steps
        else:
            args.max_steps = -1
        return CurriculumCallback(self, writer)


def build_curriculum(config: ExperimentConfig, data: PreparedData, dataset: Dataset) -> CurriculumPlan | None:
    """Plan a curriculum run over the trainer's dataset when ``curriculum.enabled``.

    Args:
        config: The run's settings (``curriculum.*``, ``train.seed``, ``train.batch_size``).
        data: The prepared data the dataset was built from: one row per labelled pair of ``data.train_pairs``, or
            one row per positive of each ``data.train_examples`` entry, in order.
        dataset: The trainer's dataset (rows as described).

    Returns:
        The plan, or ``None`` when the curriculum is off.

    Raises:
        embedtune.errors.DataError: as :func:`embedtune.data.curriculum.check_curriculum`.
        ValueError: if the dataset's rows do not match the data.
    """
    assignment = check_curriculum(config, data)
    if assignment is None:
        return None
    if data.train_pairs is not None:
        row_unit = list(range(len(data.train_pairs)))
    else:
        row_unit = [unit for unit, example in enumerate(data.train_examples) for _ in example.pos]
    if len(row_unit) != len(dataset):
        raise ValueError(f"the training dataset has {len(dataset)} rows, the data gives {len(row_unit)}")
    curriculum = config.curriculum
    return plan_curriculum(
        dataset, assignment, row_unit, curriculum.epochs_per_phase, config.train.seed, config.train.batch_size
    )


def plan_curriculum(
    dataset: Dataset,
    assignment: PhaseAssignment,
    row_unit: Sequence[int],
    epochs_per_phase: float,
    seed: int,
    batch_size: int,
) -> CurriculumPlan:
    """Order and batch ``dataset`` phase by phase.

    Args:
        dataset: The trainer's rows (``N`` of them).
        assignment: The phase of each training unit.
        row_unit: Length ``N``: the unit (index into the assignment's examples) each row comes from.
        epochs_per_phase: Passes over each phase's rows; a fraction takes the first ``ceil(f * rows)`` rows of one
            more shuffled pass.
        seed: ``train.seed``; pass ``k`` of phase ``p`` is shuffled with ``numpy.random.default_rng([seed, p, k])``.
        batch_size: Rows per batch.

    Returns:
        The plan. The same inputs always give the same plan.
    """
    values = _row_values(dataset)
    order: list[int] = []
    batch_sizes: list[int] = []
    spans = []
    thresholds = assignment.thresholds or ()
    for phase, name in enumerate(assignment.phases):
        rows = [row for row, unit in enumerate(row_unit) if assignment.phase_of[unit] == phase]
        batches = no_duplicate_batches(phase_stream(rows, epochs_per_phase, seed, phase), values, batch_size)
        first = len(batch_sizes) + 1
        for batch in batches:
            order += batch
            batch_sizes.append(len(batch))
        examples = sum(index == phase for index in assignment.phase_of)
        steps = (first, len(batch_sizes)) if batches else (None, None)
        threshold = thresholds[phase] if phase < len(thresholds) and math.isfinite(thresholds[phase]) else None
        span = PhaseSpan(name, phase + 1, examples, sum(map(len, batches)), *steps, threshold=threshold)
        spans.append(span)
    return CurriculumPlan(dataset.select(order), batch_sizes, spans, assignment.source, epochs_per_phase)


def phase_stream(rows: Sequence[int], epochs: float, seed: int, phase: int) -> list[int]:
    """Return a phase's rows over ``epochs`` passes, each pass a fresh seeded shuffle.

    Args:
        rows: The phase's row indices.
        epochs: Passes (> 0); the fractional part is the first ``ceil(fraction * len(rows))`` rows of one more pass.
        seed: Base seed; pass ``k`` uses ``numpy.random.default_rng([seed, phase, k])``.
        phase: The phase's 0-based index (part of the seed).

    Returns:
        Row indices, ``len(rows) * floor(epochs) + ceil(fraction * len(rows))`` of them.
    """
    full, fraction = divmod(epochs, 1.0)
    passes = int(full) + (1 if fraction > 0 else 0)
    stream: list[int] = []
    for number in range(passes):
        shuffled = [rows[i] for i in np.random.default_rng([seed, phase, number]).permutation(len(rows))]
        if number == int(full):  # the fractional pass
            shuffled = shuffled[: math.ceil(fraction * len(rows))]
        stream += shuffled
    return stream


def no_duplicate_batches(stream: Sequence[int], values: Sequence[frozenset[str]], batch_size: int) -> list[list[int]]:
    """Cut a row stream into batches in which no text occurs twice, keeping the stream's order otherwise.

    Each batch takes, in order, the waiting rows that fit, then the next rows of the stream; a row sharing a text
    with the batch waits for the next batch (as sentence-transformers' ``NoDuplicatesBatchSampler`` does for its
    shuffled order). Only the last batch, or one where every waiting row clashes, is shorter than ``batch_size``.

    Args:
        stream: Row indices in order (a row may occur several times).
        values: Per row of the dataset, its texts.
        batch_size: Rows per batch (>= 1).

    Returns:
        The batches, every row of ``stream`` in exactly one of them.
    """
    batches: list[list[int]] = []
    waiting: list[int] = []
    source = iter(stream)
    exhausted = False
    while waiting or not exhausted:
        batch: list[int] = []
        seen: set[str] = set()
        still_waiting: list[int] = []
        for position, row in enumerate(waiting):
            if len(batch) == batch_size:
                still_waiting += waiting[position:]
                break
            if seen.isdisjoint(values[row]):
                batch.append(row)
                seen |= values[row]
            else:
                still_waiting.append(row)
        waiting = still_waiting
        while len(batch) < batch_size:
            row = next(source, None)
            if row is None:
                exhausted = True
                break
            if seen.isdisjoint(values[row]):
                batch.append(row)
                seen |= values[row]
            else:
                waiting.append(row)
        if batch:
            batches.append(batch)
    return batches


def _row_values(dataset: Dataset) -> list[frozenset[str]]:
    """Per row, the texts of its non-label columns (what the no-duplicates check compares)."""
    columns = [name for name in dataset.column_names if name not in LABEL_COLUMNS]
    table = dataset.select_columns(columns).to_dict() if columns else {}
    return [frozenset(str(table[name][row]) for name in columns) for row in range(len(dataset))]


class CurriculumCallback(TrainerCallback):
    """Evaluate dev and save at the end of every phase; log the phase to the console and to TensorBoard.

    Args:
        plan: The curriculum being trained.
        writer: The run's TensorBoard writer.
    """

    def __init__(self, plan: CurriculumPlan, writer: SummaryWriter) -> None:
        self.plan = plan
        self.writer = writer
        self._phases = [span for span in plan.spans if not span.is_empty]
        self._ends = {span.last_step for span in self._phases}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Warn about phases without examples (they are skipped)."""
        for span in self.plan.spans:
            if span.is_empty:
                logger.warning("Curriculum phase %s has no examples: skipped.", _label(span, len(self.plan.spans)))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log ``phase 2/3 medium: 120 examples, steps 31–60`` when a phase's first step begins."""
        for span in (span for span in self._phases if span.first_step == state.global_step + 1):
            where = f"{_label(span, len(self.plan.spans))}: {span.examples} examples ({span.rows} rows)"
            logger.info("Curriculum phase %s, steps %d–%d", where, span.first_step, span.last_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """At a phase's last step, ask the trainer to evaluate dev and save a checkpoint.

        The run's last step is left to the trainer, which always evaluates and saves it (at the epoch's end, or as
        the last step of a ``steps`` schedule): asking again would evaluate it twice.
        """
        if state.global_step in self._ends and state.global_step < state.max_steps:
            control.should_evaluate = True
            control.should_save = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """At a training log, write the phase number of the step just taken as ``curriculum/phase``."""
        span = self.plan.phase_at(state.global_step)
        if logs and "loss" in logs and span is not None:
            self.writer.add_scalar(PHASE_TAG, span.number, state.global_step)


def _label(span: PhaseSpan, count: int) -> str:
    """Return ``2/3 medium``."""
    return f"{span.number}/{count} {span.name}"


def curriculum_record(trainer: Any) -> dict[str, Any] | None:
    """Return the schedule a trainer trained by for ``metrics.json``, or ``None`` when it had no curriculum.

    Args:
        trainer: The trainer after training (its :class:`CurriculumCallback`, if any, holds the plan).
    """
    callbacks = getattr(getattr(trainer, "callback_handler", None), "callbacks", [])
    plans = [callback.plan for callback in callbacks if isinstance(callback, CurriculumCallback)]
    return plans[0].to_record() if plans else None
