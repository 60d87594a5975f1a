"""What a hard-negative mining run produces: the output records, their hardness weights and the run's statistics.

:func:`build_example` turns one query's chosen candidates into a training record (ids, scores rounded to
:data:`SCORE_DIGITS` decimals, ``neg_sources`` for the merged retriever); :func:`hardness_weights` adds
``neg_weights``; :class:`MiningStats` is what :func:`embedtune.mining.mine.mine_hard_negatives` reports besides.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import numpy as np

from embedtune.data.types import TrainingExample
from embedtune.mining.candidates import Candidate, DropCounts, MiningInput, MiningQuery

WEIGHT_MIN, WEIGHT_MAX = 0.5, 2.0
"""Bounds of the hardness weights (:func:`hardness_weights`)."""
SCORE_DIGITS = 6
"""Decimals kept of scores and weights in the output file."""


@dataclass
class MiningStats:
    """What a mining run did: counts, drops by reason, wall time (s) and peak resident memory (bytes)."""

    queries: int
    negatives: int
    queries_without_negatives: int
    skipped_queries: int
    num_docs: int
    retriever: str
    search: str | None
    drops: DropCounts = field(default_factory=DropCounts)
    seconds: float = 0.0
    peak_rss_bytes: int = 0

    @property
    def negatives_per_query(self) -> float:
        """Mean number of negatives per query (0 without queries)."""
        return self.negatives / self.queries if self.queries else 0.0

    def sparse_negatives_hint(self) -> str | None:
        """Explain a run where the score filters left most queries without a negative; ``None`` otherwise.

        The margins and the score cap drop candidates the miner scores near or above a query's positive. When the
        miner ranks the positives low (a base model on a language or domain it reads poorly), that is most
        candidates of most queries, and ``margin_mse`` / ``distill_kl`` drop every record left without a negative.
        """
        filtered = self.drops.margin + self.drops.relative_margin + self.drops.max_score
        if not filtered or 2 * self.queries_without_negatives <= self.queries:
            return None
        share = self.queries_without_negatives / self.queries
        return (
            f"note: {share:.0%} of queries kept no negative: the margin and score filters set aside {filtered:,} "
            "candidates the miner scores near or above their positives, a sign it ranks the positives low. Mine "
            "with a stronger model (--model, e.g. a fine-tuned run or the --teacher) or loosen the filters; "
            "loss.name margin_mse and distill_kl drop every record without a negative."
        )


def hardness_weights(examples: list[TrainingExample], alpha: float = 0.5) -> list[TrainingExample]:
    """Set ``neg_weights`` from the scores: harder negatives (closer below their positive) weigh more.

    ``w = clip(1 - alpha * (g - mean_g) / std_g, 0.5, 2.0)`` with ``g = max(pos_scores) - neg_score``, the mean and
    standard deviation taken over every negative of ``examples``. All weights are 1 when there are fewer than two
    negatives or all gaps are equal; ``alpha = 0`` gives all ones.

    Args:
        examples: Examples with ``pos_scores`` and ``neg_scores``.
        alpha: Weight change per standard deviation of gap, ``>= 0``.

    Returns:
        The examples with ``neg_weights`` (finite, in ``[0.5, 2.0]``, 6 decimals, exact as float32 normals).
    """
    gaps = [[max(ex.pos_scores) - score for score in ex.neg_scores] for ex in examples]
    flat = np.array([gap for row in gaps for gap in row], dtype=np.float64)
    spread = float(flat.std()) if len(flat) > 1 else 0.0
    center = float(flat.mean()) if len(flat) else 0.0
    weighted = []
    for example, row in zip(examples, gaps, strict=True):
        if spread > 0 and np.isfinite(spread):
            weights = np.clip(1 - alpha * (np.array(row) - center) / spread, WEIGHT_MIN, WEIGHT_MAX)
        else:
            weights = np.ones(len(row))
        weighted.append(replace(example, neg_weights=tuple(round(float(w), SCORE_DIGITS) for w in weights)))
    return weighted


def peak_rss_bytes() -> int:
    """Return this process's peak resident memory so far, in bytes (``ru_maxrss``); 0 where it is unknown (Windows)."""
    try:
        import resource  # POSIX only: absent on Windows
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def build_example(
    query: MiningQuery, pos_scores: list[float], chosen: list[Candidate], data: MiningInput, with_sources: bool
) -> TrainingExample:
    """Build the output example of one query.

    Args:
        query: The mined query.
        pos_scores: Score of each of its positives, in ``query.pos`` order.
        chosen: The negatives selected for it, in output order.
        data: The corpus the candidates' rows index.
        with_sources: Whether to write ``neg_sources`` (the merged retriever).

    Returns:
        The record, scores rounded to :data:`SCORE_DIGITS` decimals.
    """
    return TrainingExample(
        query=query.text,
        pos=query.pos,
        neg=tuple(data.texts[c.row] for c in chosen),
        pos_ids=query.pos_ids,
        neg_ids=tuple(data.doc_ids[c.row] for c in chosen),
        pos_scores=tuple(round(score, SCORE_DIGITS) for score in pos_scores),
        neg_scores=tuple(round(c.score, SCORE_DIGITS) for c in chosen),
        neg_sources=tuple(c.sources for c in chosen) if with_sources else (),
        query_id=query.query_id,
        phase=query.phase,
    )
