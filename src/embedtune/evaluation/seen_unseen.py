"""Memorisation vs generalisation: split a comparison by whether a query's relevant documents were trained on.

A fine-tuned retriever can gain on a held-out query in two ways: by matching a new query to its document better, or
by having learned *which documents* get asked about — when the query's relevant document was a positive of some
training query. On SciFact, 196 of the 300 test claims have such a *seen* relevant abstract, and nearly all of every
measured gain is on them. This module splits the reported queries into

- **seen**: some relevant document (judgement > 0) was a training positive (same document id, or the same text), and
- **unseen**: none was,

and runs the paired comparison (:func:`embedtune.evaluation.significance.compare_per_query`) on each group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from embedtune.data.beir import load_beir
from embedtune.data.training_file import load_triplets
from embedtune.data.types import EvalSplit, TrainingExample
from embedtune.evaluation.compare import VERDICT_METRIC
from embedtune.evaluation.significance import compare_per_query

GROUPS = ("seen", "unseen")


def training_positives(examples: Iterable[TrainingExample]) -> tuple[set[str], set[str]]:
    """Return ``(document ids, texts)`` of every training positive (texts with runs of whitespace collapsed)."""
    ids: set[str] = set()
    texts: set[str] = set()
    for example in examples:
        ids.update(example.pos_ids)
        texts.update(_normal(text) for text in example.pos)
    return ids, texts


def seen_queries(split: EvalSplit, positives: tuple[set[str], set[str]]) -> set[str]:
    """Return the ids of ``split``'s queries with a relevant document that was a training positive.

    Args:
        split: The evaluated split (its qrels and corpus).
        positives: :func:`training_positives` of the run's training data.

    Returns:
        Query ids; a document counts as seen when its id is a training positive's id or its text equals one's.
    """
    ids, texts = positives
    seen = set()
    for query_id, judgements in split.qrels.items():
        relevant = [doc for doc, grade in judgements.items() if grade > 0]
        if any(doc in ids or _normal(split.corpus.get(doc, "")) in texts for doc in relevant):
            seen.add(query_id)
    return seen


def split_comparison(
    base: Mapping[str, Mapping[str, float]],
    tuned: Mapping[str, Mapping[str, float]],
    seen: set[str],
    metric: str,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Compare fine-tuned with base on the seen and on the unseen queries separately.

    Args:
        base: Query id -> metric -> value of the base model (a run's ``per_query``).
        tuned: The same for the fine-tuned model.
        seen: Ids of the seen queries (:func:`seen_queries`).
        metric: The metric compared, e.g. ``"ndcg@10"``.
        alpha: Significance level of each group's test.

    Returns:
        ``{"metric", "seen": comparison or None, "unseen": comparison or None, "seen_queries": [ids], "verdict"}``;
        a group without queries is ``None``; each comparison is
        :meth:`~embedtune.evaluation.significance.PairedComparison.to_dict`.
    """
    record: dict[str, Any] = {"metric": metric}
    for group in GROUPS:
        ids = sorted(qid for qid in base if (qid in seen) == (group == "seen"))
        if not ids:
            record[group] = None
            continue
        comparison = compare_per_query(
            {qid: base[qid][metric] for qid in ids}, {qid: tuned[qid][metric] for qid in ids}, metric, alpha=alpha
        )
        record[group] = comparison.to_dict()
    record["seen_queries"] = sorted(seen & set(base))
    record["verdict"] = memorisation_verdict(record)
    return record


def memorisation_verdict(record: Mapping[str, Any]) -> str:
    """One plain line on where the gain is, from a :func:`split_comparison` record.

    A gain significant on seen queries only reads: the model learned which documents are relevant, not how to match
    new ones.
    """
    seen, unseen = record["seen"], record["unseen"]
    parts = "; ".join(_group_summary(group, record[group]) for group in GROUPS)
    seen_gain = seen is not None and seen["significant"] and seen["mean_diff"] > 0
    unseen_gain = unseen is not None and unseen["significant"] and unseen["mean_diff"] > 0
    if seen is None or unseen is None:
        only = "unseen" if seen is None else "seen"
        gain = unseen_gain if seen is None else seen_gain
        return f"{parts}: every reported query is {only}; {'a significant gain' if gain else 'no significant gain'}"
    if seen_gain and not unseen_gain:
        meaning = (
            "the gain is on queries whose relevant documents were training positives only: the model learned which "
            "documents are relevant, not (measurably) how to match new ones"
        )
    elif unseen_gain:
        meaning = "the gain reaches queries whose relevant documents were never trained on"
    else:
        meaning = "no significant gain on either group"
    return f"{parts}: {meaning}"


def _group_summary(group: str, comparison: Mapping[str, Any] | None) -> str:
    if comparison is None:
        return f"{group}: no queries"
    p_value = comparison["p_permutation"]
    return f"{group} ({comparison['queries']} queries) Δ {comparison['mean_diff']:+.4f}, p = {p_value:.2g}"


def _normal(text: str) -> str:
    return " ".join(text.split())


def load_training_positives(path: str | Path) -> tuple[set[str], set[str]]:
    """Read the training positives of ``embedtune eval --train-data``: a BEIR folder's train split or a training file.

    Args:
        path: A BEIR folder (its ``qrels/train.tsv`` judgements > 0 are the positives, by document id and text) or a
            JSONL training file (each record's ``pos``).

    Returns:
        ``(document ids, texts)`` as :func:`training_positives`.

    Raises:
        embedtune.errors.DataError: naming the file, line and field, if the data cannot be read or is invalid.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        return training_positives(load_triplets(path))
    beir = load_beir(path, splits=["train"])
    ids = {doc for judgements in beir.qrels["train"].values() for doc, grade in judgements.items() if grade > 0}
    return ids, {_normal(beir.corpus[doc]) for doc in ids if doc in beir.corpus}


def add_to_eval_results(results: Any, positives: tuple[set[str], set[str]]) -> None:
    """Give every dataset of ``embedtune eval``'s results its seen/unseen comparison of each model with the baseline.

    Args:
        results: :class:`embedtune.evaluation.compare.EvalResults` with a baseline; each dataset result gets
            ``seen_unseen``: one :func:`split_comparison` record per model (on the verdict metric).
        positives: :func:`load_training_positives` of the training data.
    """
    for result in results.datasets:
        if result.baseline is None:
            continue
        seen = seen_queries(result.dataset.data, positives)
        result.seen_unseen = [
            split_comparison(result.baseline, scores, seen, VERDICT_METRIC, alpha=results.alpha)
            for scores in result.models
        ]
