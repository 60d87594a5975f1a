"""Paired significance of a difference between two systems' per-query scores.

Two systems evaluated on the same queries give one score per query each; what matters is the per-query difference
``d_i = b_i - a_i``. This module reports its mean with a bootstrap 95 % percentile interval, a two-sided paired
randomisation (permutation) test and the paired t-test, as recommended for IR evaluation by Smucker, Allan and
Carterette (2007), "A comparison of statistical significance tests for information retrieval evaluation", CIKM:
the randomisation test is the reference, the t-test agrees with it closely, the sign and Wilcoxon tests do not.

The bootstrap, the randomisation test and the t-test are scipy.stats' (``bootstrap``, ``permutation_test``,
``ttest_rel``), vectorised and seeded, so a comparison is reproducible; the randomisation test is exact (all ``2**n``
sign patterns) when ``resamples >= 2**n``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import bootstrap, permutation_test, ttest_rel

from embedtune.config.metric_names import display_name

TIE_TOLERANCE = 1e-9
"""Per-query differences with ``|d| <= TIE_TOLERANCE`` are ties, and are taken as exactly 0 by the tests."""

CONFIDENCE = 0.95
"""Coverage of the bootstrap interval of the mean difference."""

_MAX_CHUNK_ELEMENTS = 1 << 22
"""Largest resamples x queries block drawn at once (about 32 MB of float64), bounding memory on large query sets."""


@dataclass(frozen=True)
class PairedComparison:
    """System b against system a on one metric, query by query.

    Attributes:
        metric: Metric name as given, e.g. ``"ndcg@10"``.
        queries: Number of paired queries ``n``.
        mean_a: Mean of a's scores.
        mean_b: Mean of b's scores.
        mean_diff: ``mean_b - mean_a`` (positive: b is better).
        ci_low: Lower end of the bootstrap 95 % percentile interval of the mean difference.
        ci_high: Upper end of that interval.
        p_permutation: Two-sided p-value of the paired randomisation test: the share of random sign flips of the
            differences whose mean is at least as far from 0 as the observed one, ``(count + 1) / (resamples + 1)``.
        p_ttest: Two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``): 1.0 when every difference is 0
            (a tie), 0.0 when every difference is the same non-zero value, NaN with a single query.
        wins: Queries where b beats a by more than :data:`TIE_TOLERANCE`.
        losses: Queries where a beats b by more than :data:`TIE_TOLERANCE`.
        ties: The other queries (``wins + losses + ties == queries``).
        alpha: Significance level ``significant`` is judged at.
        labels: Names of a and b in :attr:`verdict`, e.g. ``("base", "fine-tuned")``.
        resamples: Resamples drawn by the bootstrap and by the randomisation test.
        seed: Seed of those draws.
    """

    metric: str
    queries: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_permutation: float
    p_ttest: float
    wins: int
    losses: int
    ties: int
    alpha: float = 0.05
    labels: tuple[str, str] = ("base", "fine-tuned")
    resamples: int = 10_000
    seed: int = 0

    @property
    def significant(self) -> bool:
        """Whether the randomisation test rejects "no difference" at ``alpha`` (``p_permutation < alpha``)."""
        return self.p_permutation < self.alpha

    @property
    def verdict(self) -> str:
        """One plain line, e.g.

        ``fine-tuned vs base: nDCG@10 +0.0481 (95 % CI +0.0270 … +0.0690), 98 wins / 41 losses / 161 ties,
        p = 0.0002 (permutation), 0.0003 (t-test): significant at 0.05``.
        """
        name_a, name_b = self.labels
        counts = f"{_count(self.wins, 'win')} / {_count(self.losses, 'loss')} / {_count(self.ties, 'tie')}"
        p_values = f"p {_p_value(self.p_permutation)} (permutation), {_p_value(self.p_ttest, bare=True)} (t-test)"
        outcome = "significant" if self.significant else "not significant"
        return (
            f"{name_b} vs {name_a}: {_metric_label(self.metric)} {self.mean_diff:+.4f} "
            f"({CONFIDENCE * 100:g} % CI {self.ci_low:+.4f} … {self.ci_high:+.4f}), {counts}, {p_values}: "
            f"{outcome} at {self.alpha:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return every field plus ``significant`` and ``verdict``, JSON-ready (``labels`` a list, NaN as ``None``)."""
        record = asdict(self)
        record["labels"] = list(self.labels)
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[key] = None
        record["significant"] = self.significant
        record["verdict"] = self.verdict
        return record


def compare_per_query(
    a: Mapping[str, float],
    b: Mapping[str, float],
    metric: str = "ndcg@10",
    resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    labels: tuple[str, str] = ("base", "fine-tuned"),
) -> PairedComparison:
    """Compare two systems' per-query scores on one metric with paired tests.

    Method (Smucker, Allan & Carterette 2007, "A comparison of statistical significance tests for information
    retrieval evaluation", CIKM): with ``d_i = b_i - a_i`` over the ``n`` shared queries (``|d_i| <= 1e-9`` taken
    as 0),

    * randomisation test: under "no difference" each ``d_i`` is as likely to have either sign; ``resamples`` random
      sign patterns give the null distribution of ``|mean(d)|``, and the two-sided p-value is
      ``(count of |mean| >= observed + 1) / (resamples + 1)`` (never 0, as a Monte Carlo p-value should be);
    * paired t-test on the same differences (``scipy.stats.ttest_rel``);
    * bootstrap: ``resamples`` resamples of the queries with replacement; the 2.5th and 97.5th percentiles of their
      mean difference are the 95 % interval.

    The queries are paired by id and put in sorted id order first, so the result depends on the scores and the seed
    only, never on the mappings' order.

    Args:
        a: Query id -> score of system a (the reference, e.g. the base model).
        b: Query id -> score of system b (e.g. the fine-tuned model); same query ids as ``a``.
        metric: Name of the metric the scores are, shown in :attr:`PairedComparison.verdict`.
        resamples: Resamples of the bootstrap and of the randomisation test (>= 1).
        seed: Seed of both draws (independent streams derived from it).
        alpha: Significance level, in (0, 1).
        labels: Names of a and b for the verdict line.

    Returns:
        The :class:`PairedComparison` of b against a.

    Raises:
        ValueError: if ``a`` and ``b`` hold different query ids or none, a score is not a finite number,
            ``resamples < 1`` or ``alpha`` is not in (0, 1).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    query_ids = _paired_ids(a, b)
    scores_a = np.array([a[qid] for qid in query_ids], dtype=np.float64)
    scores_b = np.array([b[qid] for qid in query_ids], dtype=np.float64)
    if not (np.isfinite(scores_a).all() and np.isfinite(scores_b).all()):
        raise ValueError(f"{metric}: every per-query score must be a finite number")
    raw = scores_b - scores_a
    ties = np.abs(raw) <= TIE_TOLERANCE
    diffs = np.where(ties, 0.0, raw)
    generator_ci, generator_perm = (np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(2))
    ci_low, ci_high = _bootstrap_interval(diffs, resamples, generator_ci)
    return PairedComparison(
        metric=metric,
        queries=len(query_ids),
        mean_a=float(scores_a.mean()),
        mean_b=float(scores_b.mean()),
        mean_diff=float(scores_b.mean() - scores_a.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        p_permutation=_permutation_p(diffs, resamples, generator_perm),
        p_ttest=_ttest_p(diffs),
        wins=int(((raw > 0) & ~ties).sum()),
        losses=int(((raw < 0) & ~ties).sum()),
        ties=int(ties.sum()),
        alpha=alpha,
        labels=(str(labels[0]), str(labels[1])),
        resamples=resamples,
        seed=seed,
    )


def _paired_ids(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    """Return the shared query ids, sorted; raise ValueError naming a few unpaired ids when the sets differ."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(
            f"the two systems were scored on different queries: {len(only_a)} only in the first "
            f"{_examples(only_a)}, {len(only_b)} only in the second {_examples(only_b)}"
        )
    if not a:
        raise ValueError("no queries to compare")
    return sorted(a)


def _examples(ids: list[str], limit: int = 3) -> str:
    """Format up to ``limit`` ids as ``(e.g. 'q1', 'q2')``, or ``""`` for none."""
    if not ids:
        return ""
    shown = ", ".join(repr(qid) for qid in ids[:limit])
    return f"(e.g. {shown}{', ...' if len(ids) > limit else ''})"


def _bootstrap_interval(diffs: np.ndarray, resamples: int, generator: np.random.Generator) -> tuple[float, float]:
    """Percentile interval (``CONFIDENCE``) of the mean of ``diffs`` (shape ``(n,)``): ``scipy.stats.bootstrap``."""
    if diffs.shape[0] < 2 or not diffs.any():  # one query, or all ties: every resample has the same mean
        mean = float(diffs.mean())
        return mean, mean
    result = bootstrap(
        (diffs,),
        np.mean,
        n_resamples=resamples,
        batch=max(1, _MAX_CHUNK_ELEMENTS // diffs.shape[0]),
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=generator,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _permutation_p(diffs: np.ndarray, resamples: int, generator: np.random.Generator) -> float:
    """Two-sided randomisation-test p-value of ``mean(diffs) != 0`` by sign flips: ``scipy.stats.permutation_test``.

    With one sample and ``permutation_type="samples"`` scipy flips the sign of each difference independently; it
    enumerates all ``2**n`` patterns exactly when ``resamples >= 2**n``, else draws ``resamples`` of them and returns
    the +1-corrected Monte Carlo p-value.
    """
    if diffs.shape[0] < 2 or not diffs.any():  # one query or all ties: every sign pattern is as extreme
        return 1.0
    result = permutation_test(
        (diffs,),
        _mean_of_last_axis,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        batch=max(1, _MAX_CHUNK_ELEMENTS // diffs.shape[0]),
        alternative="two-sided",
        rng=generator,
    )
    return float(result.pvalue)


def _mean_of_last_axis(diffs: np.ndarray, axis: int = -1) -> np.ndarray:
    return diffs.mean(axis=axis)


def _ttest_p(diffs: np.ndarray) -> float:
    """Two-sided paired t-test p-value on ``diffs``, with the degenerate cases decided without scipy's warnings."""
    if not diffs.any():
        return 1.0
    if diffs.shape[0] < 2:
        return math.nan
    if np.ptp(diffs) == 0.0:  # one non-zero difference everywhere: t is infinite
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # precision-loss notes on near-constant differences
        return float(ttest_rel(diffs, np.zeros_like(diffs)).pvalue)


def _metric_label(metric: str) -> str:
    """``"ndcg@10"`` -> ``"nDCG@10"``; a name that is not a retrieval metric is shown as given."""
    try:
        return display_name(metric)
    except ValueError:
        return metric


def _count(number: int, noun: str) -> str:
    """``1 win``, ``2 wins``, ``3 losses``."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun}es" if noun.endswith("s") else f"{number} {noun}s"


def _p_value(p: float, bare: bool = False) -> str:
    """Format a p-value: ``= 0.0002`` / ``< 0.0001`` (``bare``: ``0.0002`` / ``< 0.0001``), ``n/a`` for NaN."""
    if math.isnan(p):
        return "n/a"
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.4f}" if bare else f"= {p:.4f}"
