"""Retrieval metrics (nDCG, MAP, recall, precision, MRR at a cut-off) computed by ``pytrec_eval``.

The maths is trec_eval's, reached through :class:`pytrec_eval.RelevanceEvaluator`; this module only maps metric
names, truncates runs for MRR@k, and averages over queries the way ``trec_eval -c`` does.

Conventions:
    * Every query with at least one judgement in the qrels counts, as in trec_eval (which averages over every query
      of its qrels file): a query whose judgements are all non-relevant (relevance <= 0) scores 0 on every metric
      and stays in the mean. A query id with no judgement at all cannot appear in a qrels file and is ignored.
    * A judged query missing from the run, or with an empty ranking, scores 0 on every metric (``trec_eval -c``).
    * Documents are ranked as trec_eval ranks them: score descending, ties broken by document id descending
      (byte-wise string comparison), whatever order the run dict holds them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytrec_eval

from embedtune.config.metric_names import DEFAULT_METRICS, parse_metric
from embedtune.data.types import Qrels

Run = dict[str, dict[str, float]]
"""Retrieval results: query id -> document id -> score (higher ranks first)."""

_TREC_MEASURES: dict[str, str] = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}
"""Metric family -> trec_eval measure taking the cut-off as its parameter (``ndcg_cut.7`` -> ``ndcg_cut_7``)."""


def evaluate_run(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Score a run against qrels: the mean of each metric over the judged queries, as ``trec_eval -c`` computes it.

    Every query of ``qrels`` with at least one judgement is in the mean; one without a relevant document (all
    relevance <= 0), one missing from ``run`` or one with an empty ranking scores 0 on every metric. Queries of
    ``run`` absent from ``qrels`` are ignored.

    Args:
        qrels: Query id -> document id -> graded relevance.
        run: Query id -> document id -> score.
        metrics: Metric names accepted by :func:`parse_metric`.

    Returns:
        Metric name as given, stripped and lower-cased (e.g. ``"ndcg@10"``) -> mean value in [0, 1].

    Raises:
        ValueError: if a metric name is not supported, or no query of ``qrels`` has a relevant document.
    """
    return average_per_query(qrels, evaluate_run_per_query(qrels, run, metrics))


def average_per_query(qrels: Qrels, per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average per-query scores (from :func:`evaluate_run_per_query` on ``qrels``) into ``trec_eval -c`` means.

    :func:`evaluate_run` is this applied to :func:`evaluate_run_per_query`; callers that keep the per-query scores
    (:class:`~embedtune.evaluation.retrieval_evaluator.RetrievalEvaluator`) use it to get the means without scoring
    the run twice.

    Args:
        qrels: The judgements the scores were computed against (only checked for a relevant document).
        per_query: Query id -> metric name -> value, one entry per judged query of ``qrels``, every entry with the
            same metric names.

    Returns:
        Metric name -> mean over the entries of ``per_query``, metric names in the entries' order.

    Raises:
        ValueError: if no query of ``qrels`` has a relevant document (relevance > 0), or ``per_query`` is empty.
    """
    if not _queries_with_relevant_docs(qrels) or not per_query:
        raise ValueError("no query in qrels has a relevant document (relevance > 0); nothing to average")
    keys = list(next(iter(per_query.values())))
    return {key: sum(values[key] for values in per_query.values()) / len(per_query) for key in keys}


def evaluate_run_per_query(
    qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, dict[str, float]]:
    """Score a run per query, for every query of ``qrels`` with at least one judgement.

    Args:
        qrels: Query id -> document id -> graded relevance.
        run: Query id -> document id -> score.
        metrics: Metric names accepted by :func:`parse_metric`.

    Returns:
        Query id -> metric name (stripped, lower-cased) -> value. Every judged query of ``qrels`` is present; one
        missing from ``run`` or without a relevant document has 0.0 for every metric.

    Raises:
        ValueError: if a metric name is not supported.
    """
    parsed = {key: parse_metric(key) for key in _metric_keys(metrics)}
    judged = [qid for qid, docs in qrels.items() if docs]
    clean_qrels = {qid: {doc: int(rel) for doc, rel in qrels[qid].items()} for qid in judged}
    clean_run = _clean_run(run, judged)
    results: dict[str, dict[str, float]] = {qid: dict.fromkeys(parsed, 0.0) for qid in judged}
    _fill_trec_measures(results, clean_qrels, clean_run, parsed)
    _fill_mrr(results, clean_qrels, clean_run, parsed)
    return results


def trec_ranking(scores: Mapping[str, float]) -> list[str]:
    """Order document ids as trec_eval does: score descending, ties by document id descending.

    Args:
        scores: Document id -> score for one query.

    Returns:
        Document ids, best first.
    """
    by_doc_descending = sorted(scores, reverse=True)
    return sorted(by_doc_descending, key=lambda doc: -scores[doc])


def truncate_run(run: Run, k: int) -> Run:
    """Keep each query's top ``k`` documents, ranked as trec_eval ranks them (see :func:`trec_ranking`).

    Args:
        run: Query id -> document id -> score.
        k: Number of documents to keep per query (>= 1).

    Returns:
        A new run with at most ``k`` documents per query.
    """
    return {qid: {doc: scores[doc] for doc in trec_ranking(scores)[:k]} for qid, scores in run.items()}


def _metric_keys(metrics: Iterable[str]) -> list[str]:
    """Normalise metric names (strip, lower-case) and drop duplicates, keeping the first occurrence's order."""
    return list(dict.fromkeys(name.strip().lower() for name in metrics))


def _queries_with_relevant_docs(qrels: Qrels) -> list[str]:
    """Ids of the queries with at least one document of relevance > 0."""
    return [qid for qid, docs in qrels.items() if any(rel > 0 for rel in docs.values())]


def _clean_run(run: Run, query_ids: Iterable[str]) -> Run:
    """Restrict ``run`` to ``query_ids`` with plain ``float`` scores (pytrec_eval rejects numpy scalars)."""
    return {qid: {doc: float(score) for doc, score in run[qid].items()} for qid in query_ids if run.get(qid)}


def _fill_trec_measures(
    results: dict[str, dict[str, float]], qrels: Qrels, run: Run, parsed: Mapping[str, tuple[str, int]]
) -> None:
    """Write the nDCG/MAP/recall/precision values that pytrec_eval computes into ``results`` (in place)."""
    wanted = {key: (_TREC_MEASURES[family], k) for key, (family, k) in parsed.items() if family != "mrr"}
    if not wanted or not run:
        return
    measures = {f"{measure}.{k}" for measure, k in wanted.values()}
    evaluated = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    for qid, values in evaluated.items():
        for key, (measure, k) in wanted.items():
            results[qid][key] = values[f"{measure}_{k}"]


def _fill_mrr(
    results: dict[str, dict[str, float]], qrels: Qrels, run: Run, parsed: Mapping[str, tuple[str, int]]
) -> None:
    """Write MRR@k values into ``results`` (in place): trec_eval's ``recip_rank`` on the run cut to its top k."""
    if not run:
        return
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    for key, (family, k) in parsed.items():
        if family != "mrr":
            continue
        for qid, values in evaluator.evaluate(truncate_run(run, k)).items():
            results[qid][key] = values["recip_rank"]
