from __future__ import annotations

import math
import random

import numpy as np
import pytest
import pytrec_eval

from embedtune.config.metric_names import DEFAULT_METRICS, parse_metric
from embedtune.evaluation.metrics import (
    evaluate_run,
    evaluate_run_per_query,
    trec_ranking,
    truncate_run,
)

# --- A hand-computed three-query example -----------------------------------------------------------------------
#
# q1 (graded): qrels d1=3, d2=2, d3=0, d4=1 (3 relevant docs); ranking d3, d1, d5 (unjudged), d2; d4 not retrieved.
#   DCG@10  = 0/log2(2) + 3/log2(3) + 0/log2(4) + 2/log2(5)            (trec_eval: gain = rel, discount log2(rank+1))
#   IDCG@10 = 3/log2(2) + 2/log2(3) + 1/log2(4)                        (ideal order 3, 2, 1)
#   nDCG@10 = 2.754142 / 4.761860 = 0.578376
#   AP@100  = (1/2 + 2/4) / 3 = 1/3   (hits at ranks 2 and 4; d4 never retrieved, still in the denominator)
#   recall@10 = recall@100 = 2/3, RR@10 = 1/2 (first relevant at rank 2)
# q2: one relevant doc r, at rank 3 of 4.
#   nDCG@10 = (1/log2(4)) / (1/log2(2)) = 1/2, AP@100 = 1/3, recall@10 = recall@100 = 1, RR@10 = 1/3
# q3: one relevant doc r, at rank 11 (below ten unjudged docs).
#   nDCG@10 = 0, AP@100 = 1/11, recall@10 = 0, recall@100 = 1, RR@10 = 0 (rank 11 is past the cut-off)

Q1_NDCG = (3 / math.log2(3) + 2 / math.log2(5)) / (3 + 2 / math.log2(3) + 1 / math.log2(4))

HAND_QRELS = {
    "q1": {"d1": 3, "d2": 2, "d3": 0, "d4": 1},
    "q2": {"r": 1, "n1": 0},
    "q3": {"r": 2},
}
HAND_RUN = {
    "q1": {"d3": 0.9, "d1": 0.8, "d5": 0.7, "d2": 0.6},
    "q2": {"a": 0.9, "b": 0.8, "r": 0.7, "c": 0.6},
    "q3": {**{f"x{i:02d}": 1.0 - i / 100 for i in range(10)}, "r": 0.05},
}
HAND_PER_QUERY = {
    "q1": {"ndcg@10": Q1_NDCG, "map@100": 1 / 3, "recall@10": 2 / 3, "recall@100": 2 / 3, "mrr@10": 1 / 2},
    "q2": {"ndcg@10": 1 / 2, "map@100": 1 / 3, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1 / 3},
    "q3": {"ndcg@10": 0.0, "map@100": 1 / 11, "recall@10": 0.0, "recall@100": 1.0, "mrr@10": 0.0},
}


def test_q1_ndcg_hand_value():
    assert Q1_NDCG == pytest.approx(0.578376, abs=1e-6)


def test_per_query_hand_computed():
    per_query = evaluate_run_per_query(HAND_QRELS, HAND_RUN, DEFAULT_METRICS)
    assert set(per_query) == {"q1", "q2", "q3"}
    for qid, expected in HAND_PER_QUERY.items():
        assert per_query[qid] == pytest.approx(expected, abs=1e-9), qid


def test_mean_hand_computed():
    result = evaluate_run(HAND_QRELS, HAND_RUN)
    assert list(result) == list(DEFAULT_METRICS)
    assert result["ndcg@10"] == pytest.approx((Q1_NDCG + 0.5 + 0.0) / 3)
    assert result["map@100"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 11) / 3)
    assert result["recall@10"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["recall@100"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert result["mrr@10"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)


def test_precision_hand_computed():
    # q1 top 3: d3 (0), d1 (3), d5 (unjudged) -> P@3 = 1/3; q2 top 3: a, b, r -> 1/3; q3 top 3: all unjudged -> 0.
    result = evaluate_run(HAND_QRELS, HAND_RUN, ["precision@3", "Precision@5"])
    assert result["precision@3"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    # P@5: q1 has 2 relevant of 5 (only 4 retrieved, trec_eval still divides by 5), q2 1/5, q3 0.
    assert result["precision@5"] == pytest.approx((2 / 5 + 1 / 5 + 0) / 3)


def test_missing_query_counts_as_zero():
    qrels = {**HAND_QRELS, "q4": {"z": 1}}
    per_query = evaluate_run_per_query(qrels, HAND_RUN, DEFAULT_METRICS)
    assert per_query["q4"] == dict.fromkeys(DEFAULT_METRICS, 0.0)
    result = evaluate_run(qrels, HAND_RUN)
    assert result["ndcg@10"] == pytest.approx((Q1_NDCG + 0.5 + 0.0 + 0.0) / 4)
    assert result["recall@100"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)


def test_empty_ranking_counts_as_zero():
    qrels = {**HAND_QRELS, "q4": {"z": 1}}
    run = {**HAND_RUN, "q4": {}}
    assert evaluate_run(qrels, run)["mrr@10"] == pytest.approx((1 / 2 + 1 / 3 + 0 + 0) / 4)


def test_whole_run_empty_gives_zeros():
    assert evaluate_run(HAND_QRELS, {}) == dict.fromkeys(DEFAULT_METRICS, 0.0)


def test_query_without_relevant_docs_counts_as_zero_like_trec_eval():
    qrels = {**HAND_QRELS, "q5": {"d1": 0, "d2": 0}, "q6": {}}
    run = {**HAND_RUN, "q5": {"d1": 1.0}, "q6": {"d1": 1.0}}
    per_query = evaluate_run_per_query(qrels, run, DEFAULT_METRICS)
    assert set(per_query) == {"q1", "q2", "q3", "q5"}
    assert per_query["q5"] == dict.fromkeys(DEFAULT_METRICS, 0.0)
    hand = evaluate_run(HAND_QRELS, HAND_RUN)
    assert evaluate_run(qrels, run) == pytest.approx({key: value * 3 / 4 for key, value in hand.items()})


def test_queries_only_in_run_are_ignored():
    run = {**HAND_RUN, "extra": {"d1": 1.0}}
    assert evaluate_run(HAND_QRELS, run) == pytest.approx(evaluate_run(HAND_QRELS, HAND_RUN))


def test_no_relevant_docs_at_all_raises():
    with pytest.raises(ValueError, match="no query"):
        evaluate_run({"q": {"d": 0}}, {"q": {"d": 1.0}})


def test_metric_keys_are_lower_cased_as_given():
    result = evaluate_run(HAND_QRELS, HAND_RUN, ["NDCG@10", "MRR@10", "ndcg@10"])
    assert list(result) == ["ndcg@10", "mrr@10"]
    assert result["ndcg@10"] == pytest.approx((Q1_NDCG + 0.5) / 3)


def test_numpy_scores_and_relevances_accepted():
    qrels = {qid: {doc: np.int64(rel) for doc, rel in docs.items()} for qid, docs in HAND_QRELS.items()}
    run = {qid: {doc: np.float32(s) for doc, s in docs.items()} for qid, docs in HAND_RUN.items()}
    assert evaluate_run(qrels, run) == pytest.approx(evaluate_run(HAND_QRELS, HAND_RUN))


# --- Ties --------------------------------------------------------------------------------------------------------


def test_trec_ranking_breaks_ties_by_doc_id_descending():
    assert trec_ranking({"a": 1.0, "b": 1.0, "c": 1.0, "z": 0.5, "y": 2.0}) == ["y", "c", "b", "a", "z"]
    # Byte-wise string order, not numeric: "d9" > "d2" > "d10".
    assert trec_ranking({"d10": 1.0, "d9": 1.0, "d2": 1.0}) == ["d9", "d2", "d10"]


def test_truncate_run_keeps_trec_top_k():
    assert truncate_run({"q": {"a": 1.0, "b": 1.0, "c": 0.5}}, 1) == {"q": {"b": 1.0}}


@pytest.mark.parametrize(
    ("relevant", "scores"),
    [
        ("b", {"a": 1.0, "b": 1.0, "c": 1.0}),
        ("a", {"a": 1.0, "b": 1.0, "c": 1.0}),
        ("d10", {"d9": 1.0, "d10": 1.0, "d2": 1.0}),
        ("d2", {"d9": 0.5, "d10": 0.5, "d2": 0.5, "x": 0.9}),
    ],
)
def test_tie_order_matches_pytrec_eval(relevant, scores):
    # Untruncated, our ordering must agree with trec_eval's own recip_rank on tied scores.
    qrels = {"q": {relevant: 1}}
    direct = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate({"q": scores})["q"]["recip_rank"]
    rank = trec_ranking(scores).index(relevant) + 1
    assert direct == pytest.approx(1 / rank)
    assert evaluate_run(qrels, {"q": scores}, ["mrr@10"])["mrr@10"] == pytest.approx(direct)


def test_mrr_cut_off_falls_inside_a_tie():
    # trec_eval order for the tie is c, b, a.
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert evaluate_run({"q": {"a": 1}}, run, ["mrr@2", "mrr@3"]) == pytest.approx({"mrr@2": 0.0, "mrr@3": 1 / 3})
    assert evaluate_run({"q": {"c": 1}}, run, ["mrr@1"]) == {"mrr@1": 1.0}
    assert evaluate_run({"q": {"b": 1}}, run, ["mrr@1"]) == {"mrr@1": 0.0}


def test_mrr_cut_off_ties_with_numeric_looking_ids():
    run = {"q": {"d10": 1.0, "d9": 1.0, "d2": 1.0}}  # trec_eval order: d9, d2, d10
    assert evaluate_run({"q": {"d10": 1}}, run, ["mrr@2", "mrr@3"]) == pytest.approx({"mrr@2": 0.0, "mrr@3": 1 / 3})


# --- Cut-offs outside trec_eval's defaults ---------------------------------------------------------------------


def test_non_default_cut_offs_match_direct_pytrec_eval():
    measures = {"ndcg_cut.7", "map_cut.3", "recall.3", "P.7"}
    direct = pytrec_eval.RelevanceEvaluator(HAND_QRELS, measures).evaluate(HAND_RUN)
    ours = evaluate_run_per_query(HAND_QRELS, HAND_RUN, ["ndcg@7", "map@3", "recall@3", "precision@7"])
    for qid in HAND_QRELS:
        assert ours[qid]["ndcg@7"] == pytest.approx(direct[qid]["ndcg_cut_7"])
        assert ours[qid]["map@3"] == pytest.approx(direct[qid]["map_cut_3"])
        assert ours[qid]["recall@3"] == pytest.approx(direct[qid]["recall_3"])
        assert ours[qid]["precision@7"] == pytest.approx(direct[qid]["P_7"])


def test_non_default_cut_offs_hand_computed():
    # q1 top 3: d3 (0), d1 (3), d5 -> DCG@3 = 3/log2(3); IDCG@3 = 3 + 2/log2(3) + 1/log2(4).
    # recall@3 = 1/3; AP@3 = (1/2) / 3 (trec_eval's map_cut divides by all relevant docs).
    # q2 top 3: a, b, r -> nDCG@3 = 1/log2(4) = 1/2; recall@3 = 1; AP@3 = 1/3.  q3: all zero at 3.
    per_query = evaluate_run_per_query(HAND_QRELS, HAND_RUN, ["ndcg@3", "recall@3", "map@3"])
    assert per_query["q1"]["ndcg@3"] == pytest.approx((3 / math.log2(3)) / (3 + 2 / math.log2(3) + 0.5))
    assert per_query["q1"]["recall@3"] == pytest.approx(1 / 3)
    assert per_query["q1"]["map@3"] == pytest.approx(1 / 6)
    assert per_query["q2"] == pytest.approx({"ndcg@3": 0.5, "recall@3": 1.0, "map@3": 1 / 3})
    assert per_query["q3"] == {"ndcg@3": 0.0, "recall@3": 0.0, "map@3": 0.0}


# --- parse_metric ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ndcg@10", ("ndcg", 10)),
        ("NDCG@10", ("ndcg", 10)),
        ("Map@100", ("map", 100)),
        ("recall@1", ("recall", 1)),
        ("precision@7", ("precision", 7)),
        ("MRR@10", ("mrr", 10)),
    ],
)
def test_parse_metric_accepts(name, expected):
    assert parse_metric(name) == expected


@pytest.mark.parametrize(
    "name", ["ndcg", "ndcg@", "ndcg@0", "ndcg@-1", "ndcg@1.5", "ndcg@k", "P@10", "f1@10", "mrr10", "@10", ""]
)
def test_parse_metric_rejects(name):
    with pytest.raises(ValueError, match="accepted forms"):
        parse_metric(name)


def test_evaluate_run_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unsupported metric"):
        evaluate_run(HAND_QRELS, HAND_RUN, ["ndcg@0"])


# --- Randomised comparison against pytrec_eval and an independent MRR ------------------------------------------


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(40)]  # d1, d10, d2 ... exercise byte-wise tie order
    qrels, run = {}, {}
    for q in range(25):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[qid] = {doc: rng.randint(0, 3) for doc in judged}
        if rng.random() < 0.15:
            continue  # judged query missing from the run
        retrieved = rng.sample(docs, rng.randint(0, 40))
        run[qid] = {doc: rng.randint(0, 8) / 4 for doc in retrieved}  # few distinct scores -> many ties
    qrels["no_relevant"] = {"d1": 0, "d2": 0}
    run["no_relevant"] = {"d1": 1.0}
    run["not_judged"] = {"d1": 1.0}
    return qrels, run


def _reference_mrr(qrels: dict, run: dict, k: int) -> float:
    per_query = []
    for qid, judged in qrels.items():
        relevant = {doc for doc, rel in judged.items() if rel > 0}
        ranked = sorted(run.get(qid, {}).items(), key=lambda item: (item[1], item[0]), reverse=True)
        top = [doc for doc, _ in ranked[:k]]
        per_query.append(next((1 / (i + 1) for i, doc in enumerate(top) if doc in relevant), 0.0))
    return sum(per_query) / len(per_query)


@pytest.mark.parametrize("seed", range(8))
def test_random_matches_direct_pytrec_eval(seed):
    qrels, run = _random_case(seed)
    judged = [qid for qid, docs in qrels.items() if docs]
    measures = {
        "ndcg_cut.10": "ndcg@10",
        "map_cut.100": "map@100",
        "recall.10": "recall@10",
        "recall.100": "recall@100",
    }
    direct = pytrec_eval.RelevanceEvaluator(qrels, set(measures)).evaluate(run)
    ours = evaluate_run(qrels, run)
    for measure, name in measures.items():
        key = measure.replace(".", "_")
        expected = sum(direct[qid][key] for qid in judged if qid in direct) / len(judged)
        assert abs(ours[name] - expected) <= 1e-6, (name, ours[name], expected)
    for k in (1, 3, 10):
        assert abs(evaluate_run(qrels, run, [f"mrr@{k}"])[f"mrr@{k}"] - _reference_mrr(qrels, run, k)) <= 1e-9


def test_random_cases_exercise_ties_missing_and_unjudged_queries():
    for seed in range(8):
        qrels, run = _random_case(seed)
        assert any(qid not in run for qid in qrels), seed
        assert any(len(set(scores.values())) < len(scores) for scores in run.values()), seed
