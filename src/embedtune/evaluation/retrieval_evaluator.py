"""A sentence-transformers evaluator that ranks a corpus and scores the run with trec_eval's metrics."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from torch import Tensor

from embedtune.config.metric_names import DEFAULT_METRICS, parse_metric
from embedtune.data.types import Qrels
from embedtune.evaluation.metrics import (
    average_per_query,
    evaluate_run,
    evaluate_run_per_query,
)
from embedtune.search.retrieve import encode_documents, encode_queries, rank

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache


class RetrievalEvaluator(BaseEvaluator):
    """Rank ``corpus`` for each judged query and compute nDCG@k, MAP@k, Recall@k, MRR@k with pytrec_eval.

    Used by ``SentenceTransformerTrainer`` for dev evaluation (the trainer logs ``eval_<name>_<metric>``) and
    directly for the final base vs fine-tuned comparison.

    Args:
        corpus: Document id -> text.
        queries: Query id -> text (only ids present in ``qrels`` are evaluated).
        qrels: Query id -> document id -> graded relevance.
        name: Prefix of the returned metric names, e.g. ``"dev"`` gives ``"dev_ndcg@10"``.
        metrics: Metric names, see :func:`embedtune.config.metric_names.parse_metric`.
        primary_metric: The metric that selects checkpoints.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        progress: Show encoding progress bars; ``None`` shows them when stderr is a terminal.
        truncate_dims: Matryoshka dimensions: also report ``<primary metric>@<dim>d`` for each dimension smaller than
            the model's, ranking with the first ``dim`` coordinates renormalised (cosine); ``None`` reports none.
        cache: On-disk embedding cache (:class:`~embedtune.cache.EmbeddingCache`): embeddings this exact model
            (weights and encoding settings) made before are read back instead of encoded, new ones are stored.
            ``None`` (the default, and what dev evaluation during training uses) encodes everything. Worth it only
            for a model evaluated again unchanged: a base model, a saved model. A model ending in a head caches its
            encoder's embeddings and applies the head to them.
        devices: Encode in one process per device (:func:`~embedtune.search.encoding.encoding_devices`); ``None``
            encodes in this process.
        precision: Autocast precision of encoding (:func:`~embedtune.models.precision.inference_dtype`), the same
            for every model this evaluator scores.

    Queries and documents are encoded with the model's own prompts (``encode_query``/``encode_document``), so a model
    saved by embedtune with its prefixes needs no prefix settings here.

    Attributes:
        last_per_query: The per-query scores of the latest call, query id -> metric name (lower-cased, unprefixed,
            e.g. ``"ndcg@10"``) -> value, for every judged query of ``qrels`` (``trec_eval -c``: a query without a
            relevant document scores 0); the call's means are their averages. Empty before the first call. Each call
            replaces the dict (it never mutates the previous one), so a caller may keep a reference.
    """

    def __init__(
        self,
        corpus: dict[str, str],
        queries: dict[str, str],
        qrels: Qrels,
        name: str = "",
        metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
        primary_metric: str = "ndcg@10",
        batch_size: int | None = None,
        progress: bool | None = None,
        truncate_dims: list[int] | None = None,
        cache: EmbeddingCache | None = None,
        devices: list[str] | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.queries = {qid: queries[qid] for qid in qrels}
        self.qrels = qrels
        self.name = name
        self.metrics = [m.lower() for m in metrics]
        self.primary_metric = primary_metric.lower()
        self.batch_size = batch_size
        self.progress = progress
        self.top_k = max(parse_metric(m)[1] for m in self.metrics)
        self.truncate_dims = sorted(set(truncate_dims or []), reverse=True)
        self.cache = cache
        self.devices = devices
        self.precision = precision
        self.last_per_query: dict[str, dict[str, float]] = {}
        self.last_score_distribution: dict[str, list[float]] = {}

    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate ``model``; returns metric name (prefixed with ``name``) -> mean value over judged queries.

        Also sets :attr:`last_per_query` to this evaluation's per-query scores (full dimension only) and
        :attr:`last_score_distribution` to the similarity of every judged relevant (query, document) pair
        (``"positive"``) and of every non-relevant document in each query's top 10 (``"negative"``: the hard ones).
        """
        doc_ids, query_ids = list(self.corpus), list(self.queries)
        doc_texts, query_texts = [self.corpus[d] for d in doc_ids], [self.queries[q] for q in query_ids]
        options = (self.batch_size, self.progress, self.cache, self.devices, self.precision)
        docs = encode_documents(model, doc_texts, *options)
        queries = encode_queries(model, query_texts, *options)
        run = rank(queries, docs, query_ids, doc_ids, self.top_k, model.similarity)
        per_query = evaluate_run_per_query(self.qrels, run, self.metrics)
        scores = average_per_query(self.qrels, per_query)
        self.last_per_query = per_query
        self.last_score_distribution = self._score_distribution(model, queries, docs, query_ids, doc_ids, run)
        for dim in self.truncate_dims:
            if dim < docs.size(1):  # cosine on the first dim coordinates: truncate and renormalise
                truncated = rank(queries[:, :dim], docs[:, :dim], query_ids, doc_ids, self.top_k)
                primary = evaluate_run(self.qrels, truncated, [self.primary_metric])[self.primary_metric]
                scores[f"{self.primary_metric}@{dim}d"] = primary
        return self.prefix_name_to_metrics(scores, self.name)

    def _score_distribution(
        self,
        model: SentenceTransformer,
        queries: Tensor,
        docs: Tensor,
        query_ids: list[str],
        doc_ids: list[str],
        run: dict[str, dict[str, float]],
    ) -> dict[str, list[float]]:
        query_row = {qid: i for i, qid in enumerate(query_ids)}
        doc_row = {did: i for i, did in enumerate(doc_ids)}
        pairs = [
            (query_row[qid], doc_row[did])
            for qid, judged in self.qrels.items()
            for did, relevance in judged.items()
            if relevance > 0 and did in doc_row
        ]
        positive = [float(model.similarity(queries[q : q + 1], docs[d : d + 1])) for q, d in pairs]
        negative = [
            score
            for qid, ranking in run.items()
            for did, score in sorted(ranking.items(), key=lambda item: -item[1])[:10]
            if self.qrels.get(qid, {}).get(did, 0) <= 0
        ]
        return {"positive": positive, "negative": negative}


def subsample_corpus(corpus: dict[str, str], qrels: Qrels, max_docs: int | None, seed: int = 0) -> dict[str, str]:
    """Keep every judged document of ``qrels`` plus a seeded random sample of the rest, ``max_docs`` in all.

    Used to make dev evaluation during training affordable on a CPU; the final test evaluation never subsamples.

    Args:
        corpus: Document id -> text.
        qrels: Judgements whose documents must stay.
        max_docs: Size of the result; ``None`` or a size >= ``len(corpus)`` returns ``corpus`` unchanged.
        seed: Seed of the sample.

    Returns:
        Document id -> text, in the original corpus order.
    """
    if max_docs is None or max_docs >= len(corpus):
        return corpus
    judged = {doc_id for judgements in qrels.values() for doc_id in judgements if doc_id in corpus}
    others = sorted(set(corpus) - judged)
    keep = judged | set(random.Random(seed).sample(others, max(0, min(len(others), max_docs - len(judged)))))
    return {doc_id: text for doc_id, text in corpus.items() if doc_id in keep}
