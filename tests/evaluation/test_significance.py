from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
from scipy import stats

from embedtune.evaluation.significance import PairedComparison, compare_per_query


def scores(values) -> dict[str, float]:
    return {f"q{i:03d}": float(value) for i, value in enumerate(values)}


def exact_permutation_p(diffs: np.ndarray) -> float:
    """Two-sided p over all 2^n sign patterns: share with |sum| >= |observed sum|."""
    observed = abs(diffs.sum())
    patterns = np.array(list(itertools.product((-1.0, 1.0), repeat=len(diffs))))
    return float(np.mean(np.abs(patterns @ diffs) >= observed - 1e-12))


def test_identical_scores_give_p_one_zero_interval_and_all_ties():
    a = scores(np.random.default_rng(0).random(50))
    result = compare_per_query(a, dict(a))
    assert result.p_permutation == 1.0
    assert result.p_ttest == 1.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert result.mean_diff == 0.0
    assert (result.wins, result.losses, result.ties) == (0, 0, 50)
    assert not result.significant
    assert result.verdict.endswith("not significant at 0.05")


def test_planted_consistent_gain_is_significant_by_both_tests():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.2, 0.7, 100)
    b = a + 0.05 + rng.normal(0.0, 0.05, 100)
    result = compare_per_query(scores(a), scores(b))
    assert result.p_permutation < 0.05 and result.p_ttest < 0.05
    assert result.significant
    assert 0.0 < result.ci_low < result.mean_diff < result.ci_high
    assert result.mean_diff == pytest.approx(float(np.mean(b - a)))
    assert result.wins + result.losses + result.ties == result.queries == 100
    assert result.verdict.endswith(": significant at 0.05")


def test_zero_mean_noise_is_not_significant():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.2, 0.7, 200)
    noise = rng.choice([-1.0, 1.0], 200) * rng.uniform(0.01, 0.1, 200)
    result = compare_per_query(scores(a), scores(a + noise - noise.mean()))
    assert not result.significant
    assert result.p_permutation > 0.5 and result.p_ttest > 0.5
    assert result.ci_low < 0.0 < result.ci_high


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_permutation_p_is_close_to_exact_enumeration(seed):
    rng = np.random.default_rng(seed)
    diffs = rng.normal(0.03, 0.1, 10)
    a = rng.uniform(0.2, 0.6, 10)
    exact = exact_permutation_p(diffs)
    result = compare_per_query(scores(a), scores(a + diffs), resamples=20_000, seed=seed)
    # Monte Carlo standard error with 20,000 draws is at most 0.0036; allow about 4 of them.
    assert result.p_permutation == pytest.approx(exact, abs=0.015)


def test_plus_one_correction_floors_the_p_value():
    # 20 positive differences: only the two all-equal-sign patterns reach the observed sum (chance 2 / 2^20), so
    # 99 draws almost surely find none: each one-sided p is (0 + 1) / (99 + 1) and scipy's two-sided p doubles the
    # smaller one.
    a = scores([0.5] * 20)
    b = scores([0.5 + 0.01 * (i + 1) for i in range(20)])
    assert compare_per_query(a, b, resamples=99).p_permutation == pytest.approx(0.02)


def test_ttest_matches_scipy():
    rng = np.random.default_rng(6)
    a = rng.uniform(0.0, 1.0, 80)
    b = np.clip(a + rng.normal(0.02, 0.15, 80), 0.0, 1.0)
    result = compare_per_query(scores(a), scores(b))
    assert result.p_ttest == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-9)


def test_degenerate_ttest_cases():
    constant_gain = compare_per_query(scores([0.25, 0.5, 0.75]), scores([0.5, 0.75, 1.0]))  # every d = 0.25
    assert constant_gain.p_ttest == 0.0
    nearly_constant = compare_per_query(scores([0.1, 0.2, 0.3]), scores([0.2, 0.3, 0.4]))  # d = 0.1 +- rounding
    assert 0.0 <= nearly_constant.p_ttest < 1e-6
    single = compare_per_query({"q": 0.1}, {"q": 0.4})
    assert math.isnan(single.p_ttest)
    assert single.to_dict()["p_ttest"] is None
    assert "n/a (t-test)" in single.verdict


def test_wins_losses_ties_use_a_tolerance():
    a = scores([0.5, 0.5, 0.5, 0.5])
    b = scores([0.6, 0.4, 0.5 + 1e-12, 0.5])
    result = compare_per_query(a, b)
    assert (result.wins, result.losses, result.ties) == (1, 1, 2)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"q1": 0.1, "q2": 0.2}, {"q1": 0.1, "q3": 0.2}),
        ({"q1": 0.1}, {"q1": 0.1, "q2": 0.2}),
        ({}, {}),
    ],
)
def test_mismatched_or_empty_query_sets_raise(a, b):
    with pytest.raises(ValueError, match="different queries|no queries"):
        compare_per_query(a, b)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="resamples"):
        compare_per_query({"q": 0.1}, {"q": 0.2}, resamples=0)
    with pytest.raises(ValueError, match="alpha"):
        compare_per_query({"q": 0.1}, {"q": 0.2}, alpha=1.5)
    with pytest.raises(ValueError, match="finite"):
        compare_per_query({"q": 0.1}, {"q": float("nan")})


def test_result_depends_on_scores_and_seed_not_on_dict_order():
    rng = np.random.default_rng(7)
    a, b = scores(rng.random(60)), scores(rng.random(60))
    keys = list(a)
    random.Random(0).shuffle(keys)
    shuffled_a, shuffled_b = {k: a[k] for k in keys}, {k: b[k] for k in reversed(keys)}
    assert compare_per_query(a, b, seed=11) == compare_per_query(shuffled_a, shuffled_b, seed=11)
    assert compare_per_query(a, b, seed=11) != compare_per_query(a, b, seed=12)


def test_verdict_and_to_dict():
    result = PairedComparison(
        metric="ndcg@10",
        queries=300,
        mean_a=0.6,
        mean_b=0.6481,
        mean_diff=0.0481,
        ci_low=0.027,
        ci_high=0.069,
        p_permutation=0.0002,
        p_ttest=0.0003,
        wins=98,
        losses=41,
        ties=161,
    )
    assert result.verdict == (
        "fine-tuned vs base: nDCG@10 +0.0481 (95 % CI +0.0270 … +0.0690), 98 wins / 41 losses / 161 ties, "
        "p = 0.0002 (permutation), 0.0003 (t-test): significant at 0.05"
    )
    record = json.loads(json.dumps(result.to_dict()))
    assert record["significant"] is True and record["verdict"] == result.verdict
    assert record["labels"] == ["base", "fine-tuned"] and record["mean_diff"] == 0.0481
    labelled = compare_per_query({"q": 0.5}, {"q": 0.4}, labels=("a", "b"), metric="mrr@10", alpha=0.01)
    assert labelled.verdict.startswith("b vs a: MRR@10 -0.1000 (95 % CI -0.1000 … -0.1000), 0 wins / 1 loss / 0 ties")
    assert labelled.verdict.endswith("not significant at 0.01")


@pytest.mark.parametrize("seed", [7, 8])
def test_permutation_p_is_exact_when_resamples_cover_every_sign_pattern(seed):
    rng = np.random.default_rng(seed)
    diffs = rng.normal(0.02, 0.1, 12)
    a = rng.uniform(0.2, 0.6, 12)
    result = compare_per_query(scores(a), scores(a + diffs), resamples=2**12, seed=seed)
    assert result.p_permutation == pytest.approx(exact_permutation_p(diffs), abs=1e-9)
