"""Give every training example a curriculum phase, easy to hard (Bengio et al., 2009, "Curriculum learning").

A phase comes from the record's ``phase`` field, or from the difficulty of its mined negatives:
``d = max(neg_scores) - max(pos_scores)`` (higher is harder: the hardest negative scores close to, or above, the best
positive), cut into phases at ``curriculum.thresholds`` or into equal-size quantiles. Everything here runs before
any model loads, so a bad phase or unscored data is one clear error and leaves no run folder behind.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embedtune.config import CurriculumConfig, ExperimentConfig
from embedtune.data.pairs import PairExample
from embedtune.data.prepare import PreparedData
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError, shorten

SOURCE_PHASE = "phase"
"""Resolved source: each record's ``phase`` field."""
SOURCE_DIFFICULTY = "difficulty"
"""Resolved source: the mined scores of each record's positives and negatives."""

Unit = TrainingExample | PairExample
"""What gets a phase: a (query, positives, negatives) record, or a labelled pair."""


@dataclass(frozen=True)
class PhaseAssignment:
    """The phase of every training example.

    Attributes:
        source: How phases were assigned: :data:`SOURCE_PHASE` or :data:`SOURCE_DIFFICULTY` (``auto`` resolved).
        phases: Phase names in training order (``curriculum.phases``).
        phase_of: Per example, in input order, the index of its phase in ``phases``.
        thresholds: The difficulty cut points used, one fewer than ``phases`` (phase ``i`` holds
            ``thresholds[i-1] < d <= thresholds[i]``); for equal-size phases, the largest difficulty of each phase
            but the last. ``None`` for :data:`SOURCE_PHASE`.
        difficulties: Per example, ``d``; ``None`` for :data:`SOURCE_PHASE`.
    """

    source: str
    phases: tuple[str, ...]
    phase_of: tuple[int, ...]
    thresholds: tuple[float, ...] | None = None
    difficulties: tuple[float, ...] | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Phase name -> number of examples in it, in phase order (empty phases included, as 0)."""
        counts = dict.fromkeys(self.phases, 0)
        for index in self.phase_of:
            counts[self.phases[index]] += 1
        return counts

    def members(self, phase: int) -> list[int]:
        """Return the indices of the examples in phase ``phase`` (an index into ``phases``), in input order."""
        return [example for example, index in enumerate(self.phase_of) if index == phase]


def check_curriculum(config: ExperimentConfig, data: PreparedData) -> PhaseAssignment | None:
    """Assign the phases of a run's training data when ``curriculum.enabled``; call it before any model loads.

    The training units are the labelled pairs of a pairs file (``data.train_pairs``), else the training examples.

    Args:
        config: The run's settings.
        data: The prepared data.

    Returns:
        The assignment, or ``None`` when the curriculum is off.

    Raises:
        DataError: as :func:`assign_phases`, naming the training file (or the data folder).
    """
    if not config.curriculum.enabled:
        return None
    origin = config.data.train_file or config.data.path or "training data"
    units: Sequence[Unit] = data.train_pairs if data.train_pairs is not None else data.train_examples
    return assign_phases(units, config.curriculum, origin)


def assign_phases(units: Sequence[Unit], config: CurriculumConfig, origin: str | Path) -> PhaseAssignment:
    """Assign each example a phase of ``config.phases``, deterministically (no randomness involved).

    Source ``phase``: the record's ``phase`` field, which every record needs. Source ``difficulty``:
    ``d = max(neg_scores) - max(pos_scores)`` per example, cut at ``config.thresholds`` (``d <= thresholds[0]`` is
    the first phase), or, without thresholds, sorted stably by ``(d, input index)`` and cut into phases of equal
    size (the first ``n % k`` phases one example larger): terciles for three phases. Source ``auto``: ``phase``
    when every record has one, else ``difficulty``.

    Args:
        units: Training examples (:class:`TrainingExample`) or labelled pairs (:class:`PairExample`, which have no
            scores, so only a ``phase`` source fits them); at least one.
        config: The curriculum settings.
        origin: The training file (or folder) named in errors.

    Returns:
        The assignment: one phase index per unit, in input order.

    Raises:
        DataError: at field ``phase`` when source ``phase`` finds a record without a phase or with one not in
            ``config.phases`` (naming it and the allowed phases); at ``neg_scores`` when source ``difficulty``
            finds records without mined scores (telling the user to run ``embedtune mine``), or gets labelled
            pairs.
    """
    has_phase = [unit.phase is not None for unit in units]
    source = config.source
    if source == "auto":
        source = SOURCE_PHASE if all(has_phase) else SOURCE_DIFFICULTY
    phases = tuple(config.phases)
    if source == SOURCE_PHASE:
        return PhaseAssignment(SOURCE_PHASE, phases, _phases_from_fields(units, phases, origin))
    difficulties = _difficulties(units, origin, auto=config.source == "auto", with_phase=sum(has_phase))
    if config.thresholds is not None:
        thresholds = tuple(float(value) for value in config.thresholds)
        phase_of = tuple(bisect.bisect_left(thresholds, d) for d in difficulties)
    else:
        phase_of, thresholds = _equal_size_phases(difficulties, len(phases))
    return PhaseAssignment(SOURCE_DIFFICULTY, phases, phase_of, thresholds, difficulties)


def difficulty(example: TrainingExample) -> float | None:
    """``max(neg_scores) - max(pos_scores)``: how close the hardest mined negative comes to the best positive.

    Returns:
        The difficulty (higher is harder; above 0, a negative outscores every positive); ``-inf`` for a mined example
        left without negatives (every candidate fell outside the rank window or margins: it trains on in-batch
        negatives alone, the easiest case); ``None`` when the example has no scored positive (it was never mined).
    """
    if not example.pos_scores:
        return None
    if not example.neg_scores:
        return -math.inf
    return float(max(example.neg_scores)) - float(max(example.pos_scores))


def _phases_from_fields(units: Sequence[Unit], phases: tuple[str, ...], origin: str | Path) -> tuple[int, ...]:
    """Each unit's phase index from its ``phase`` field."""
    missing = [unit for unit in units if unit.phase is None]
    if missing:
        message = (
            f"curriculum.source=phase needs a phase on every training record; {len(missing)} of {len(units)} have "
            f"none (first: query {_query(missing[0])}); allowed phases: {', '.join(phases)}"
        )
        raise DataError(origin, None, "phase", message)
    index = {name: position for position, name in enumerate(phases)}
    for unit in units:
        if unit.phase not in index:
            count = sum(other.phase == unit.phase for other in units)
            message = (
                f"phase {shorten(unit.phase)} ({count} record(s), first: query {_query(unit)}) is not one of "
                f"curriculum.phases: {', '.join(phases)}"
            )
            raise DataError(origin, None, "phase", message)
    return tuple(index[unit.phase] for unit in units)


def _difficulties(units: Sequence[Unit], origin: str | Path, auto: bool, with_phase: int) -> tuple[float, ...]:
    """Each unit's difficulty, or a DataError telling the user how to get scores."""
    fallback = "set a phase on every record and curriculum.source=phase"
    if auto and with_phase:
        fallback = f"give every record a phase ({with_phase} of {len(units)} have one)"
    if any(isinstance(unit, PairExample) for unit in units):
        message = f"curriculum by difficulty needs mined scores, which labelled pairs do not have: {fallback}"
        raise DataError(origin, None, "neg_scores", message)
    values = [difficulty(unit) for unit in units]
    unscored = [unit for unit, value in zip(units, values, strict=True) if value is None]
    if unscored:
        message = (
            "curriculum by difficulty needs mined scores (pos_scores, and neg_scores for its negatives) on every "
            f"training record; {len(unscored)} of {len(units)} have none (first: query {_query(unscored[0])}). "
            f"Run `embedtune mine` to score each positive and negative with a model, or {fallback}"
        )
        raise DataError(origin, None, "neg_scores", message)
    return tuple(value for value in values if value is not None)


def _equal_size_phases(difficulties: Sequence[float], count: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Cut the stable ``(d, index)`` order into ``count`` equal-size phases; return phases and the cuts used."""
    order = sorted(range(len(difficulties)), key=lambda index: (difficulties[index], index))
    base, extra = divmod(len(order), count)
    phase_of = [0] * len(order)
    thresholds: list[float] = []
    start = 0
    for phase in range(count):
        end = start + base + (1 if phase < extra else 0)
        for index in order[start:end]:
            phase_of[index] = phase
        if phase < count - 1:
            last = order[end - 1] if end > 0 else order[0]
            thresholds.append(float(difficulties[last]))
        start = end
    return tuple(phase_of), tuple(thresholds)


def _query(unit: Unit) -> str:
    """Return the query text of a unit, quoted and shortened for a message."""
    return shorten(unit.query if isinstance(unit, TrainingExample) else unit.text1)
