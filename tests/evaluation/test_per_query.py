from __future__ import annotations

import random

import pytest

from embedtune.config.metric_names import DEFAULT_METRICS
from embedtune.evaluation.metrics import average_per_query, evaluate_run, evaluate_run_per_query

METRICS = [*DEFAULT_METRICS, "precision@5"]


def mean_of(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per_query.values()))
    return {key: sum(values[key] for values in per_query.values()) / len(per_query) for key in keys}


def random_case(seed: int) -> tuple[dict, dict]:
    """Random graded qrels and a run, with queries lacking relevant docs, missing from the run, or ranked empty."""
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(40)]
    qrels, run = {}, {}
    for q in range(rng.randint(3, 25)):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 6))
        qrels[qid] = {doc: rng.choice([0, 0, 1, 2, 3]) for doc in judged}
        kind = rng.random()
        if kind < 0.15:
            continue  # missing from the run
        if kind < 0.25:
            run[qid] = {}  # empty ranking
            continue
        run[qid] = {doc: round(rng.random(), 2) for doc in rng.sample(docs, rng.randint(1, 30))}
    qrels.setdefault("q0", {})["d0"] = 1  # at least one relevant document somewhere
    run["unjudged"] = {"d1": 1.0}
    return qrels, run


@pytest.mark.parametrize("seed", range(25))
def test_evaluate_run_is_the_mean_of_per_query(seed):
    qrels, run = random_case(seed)
    per_query = evaluate_run_per_query(qrels, run, METRICS)
    assert set(per_query) == set(qrels)  # every judged query, none of the run's unjudged ones
    assert evaluate_run(qrels, run, METRICS) == pytest.approx(mean_of(per_query), abs=1e-12)
    assert average_per_query(qrels, per_query) == evaluate_run(qrels, run, METRICS)


def test_missing_empty_and_unjudged_queries_count_zero_and_stay_in_the_mean():
    qrels = {
        "ranked": {"r": 1},
        "missing": {"r": 1},
        "empty": {"r": 2},
        "no-relevant": {"r": 0, "s": -1},
    }
    run = {"ranked": {"r": 1.0, "x": 0.5}, "empty": {}, "no-relevant": {"r": 1.0}}
    per_query = evaluate_run_per_query(qrels, run, METRICS)
    assert per_query["ranked"]["ndcg@10"] == pytest.approx(1.0)
    for qid in ("missing", "empty", "no-relevant"):
        assert per_query[qid] == dict.fromkeys(METRICS, 0.0)
    means = evaluate_run(qrels, run, METRICS)
    assert means["ndcg@10"] == pytest.approx(1 / 4)
    assert means == pytest.approx(mean_of(per_query))


def test_per_query_keys_follow_the_metrics_order_normalised():
    per_query = evaluate_run_per_query({"q": {"d": 1}}, {"q": {"d": 1.0}}, ["MRR@10", " nDCG@10", "mrr@10"])
    assert list(per_query["q"]) == ["mrr@10", "ndcg@10"]
    assert list(evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, ["MRR@10", " nDCG@10"])) == ["mrr@10", "ndcg@10"]


def test_average_per_query_needs_a_relevant_document():
    qrels = {"q": {"d": 0}}
    per_query = evaluate_run_per_query(qrels, {"q": {"d": 1.0}})
    with pytest.raises(ValueError, match="no query"):
        average_per_query(qrels, per_query)


def test_evaluator_keeps_last_per_query(tiny_model_dir, tiny_beir):
    from embedtune.data.beir import load_beir
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.models.loading import load_model

    beir = load_beir(tiny_beir, splits=["test"])
    qrels = {**beir.qrels["test"], "q0": {"d1": 0}}  # a judged query without a relevant document
    evaluator = RetrievalEvaluator(beir.corpus, beir.queries, qrels, name="test", progress=False)
    assert evaluator.last_per_query == {}
    means = evaluator(load_model(str(tiny_model_dir)))
    per_query = evaluator.last_per_query
    assert set(per_query) == set(qrels)
    assert per_query["q0"] == dict.fromkeys(DEFAULT_METRICS, 0.0)
    assert means == pytest.approx({f"test_{key}": value for key, value in mean_of(per_query).items()})
