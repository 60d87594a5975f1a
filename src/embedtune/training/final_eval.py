"""The end-of-run comparison of the base and the selected model: report split, forgetting check, pair diagnostics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.data.eval_splits import parse_dataset_spec
from embedtune.data.pairs import PairExample
from embedtune.data.types import EvalSplit
from embedtune.evaluation.pair_metrics import pair_diagnostics, score_pairs
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.evaluation.significance import compare_per_query
from embedtune.runs import ExtraReport

logger = logging.getLogger(__name__)


@dataclass
class Figures:
    """What one model scored: means on the report split, its per-query figures, and each extra dataset's means.

    Attributes:
        report: Metric -> mean on the reported split.
        per_query: Query id -> metric -> value on the reported split.
        scores: ``{"positive": [...], "negative": [...]}`` similarities on the reported split (relevant pairs; hard
            non-relevant documents in each top 10).
        extra: Extra dataset (as configured) -> metric -> mean.
    """

    report: dict[str, float]
    per_query: dict[str, dict[str, float]]
    scores: dict[str, list[float]]
    extra: dict[str, dict[str, float]] = field(default_factory=dict)


class FinalEvaluation:
    """Evaluate a model on the reported split (whole corpus) and on every ``eval.extra_datasets`` entry.

    Args:
        config: The run's settings (metrics, primary metric, batch size, forgetting threshold).
        report_split: The split reported at the end (test, or dev as the selection split).
        extra_splits: Out-of-domain splits for the forgetting check.
        truncate_dims: Matryoshka dimensions to report nDCG@10 at, or ``None``.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        report_split: EvalSplit,
        extra_splits: list[EvalSplit],
        truncate_dims: list[int] | None = None,
    ) -> None:
        self.config = config
        self.primary = config.train.primary_metric.lower()
        self.report_evaluator = self._evaluator(report_split, truncate_dims)
        self.extra_evaluators = {split.name: self._evaluator(split, None) for split in extra_splits}
        self.extra_split_names = {split.name: parse_dataset_spec(split.name)[1] for split in extra_splits}
        self.cache = EmbeddingCache.from_settings(config.eval.cache_dir, config.eval.cache_max_gb)

    def _evaluator(self, split: EvalSplit, truncate_dims: list[int] | None) -> RetrievalEvaluator:
        return RetrievalEvaluator(
            split.corpus,
            split.queries,
            split.qrels,
            metrics=self.config.eval.metrics,
            primary_metric=self.primary,
            batch_size=self.config.eval.batch_size,
            truncate_dims=truncate_dims,
            precision=self.config.eval.precision,
        )

    def evaluate(self, model: SentenceTransformer, label: str, cache: EmbeddingCache | None = None) -> Figures:
        """Evaluate ``model`` everywhere, logging what is being evaluated (``label``: "base", "fine-tuned").

        The base model's embeddings go through the embedding cache (the same base model is evaluated by every run).
        A fine-tuned model's go to ``cache`` when given (a run's scratch cache, which holds what the dev confirmation
        encoded with the same model); this is the model the run ships, so they are then copied into the embedding
        cache, where ``embedtune eval``, ``mine --teacher`` and ``index build`` of the saved model find them.
        """
        cache = self.cache if label == "base" else cache
        for evaluator in (self.report_evaluator, *self.extra_evaluators.values()):
            evaluator.cache = cache
        logger.info("Evaluating the %s model (%d documents)", label, len(self.report_evaluator.corpus))
        report = self.report_evaluator(model)
        per_query = dict(self.report_evaluator.last_per_query)
        scores = dict(self.report_evaluator.last_score_distribution)
        extra = {}
        for name, evaluator in self.extra_evaluators.items():
            logger.info("Evaluating the %s model on %s (forgetting check)", label, name)
            extra[name] = evaluator(model)
        if cache is not None and self.cache is not None and cache is not self.cache:
            self.cache.adopt(cache, model, self.config.eval.precision)
        return Figures(report, per_query, scores, extra)

    def significance(self, base: Figures, tuned: Figures) -> dict[str, Any]:
        """Compare fine-tuned with base query by query on the primary metric; log the verdict line.

        Returns:
            :meth:`~embedtune.evaluation.significance.PairedComparison.to_dict` (with its ``verdict``).
        """
        metric = self.primary
        comparison = compare_per_query(
            {qid: scores[metric] for qid, scores in base.per_query.items()},
            {qid: scores[metric] for qid, scores in tuned.per_query.items()},
            metric=metric,
        )
        logger.info("%s", comparison.verdict)
        return comparison.to_dict()

    def pair_diagnostics(
        self, eval_pairs: dict[str, list[PairExample]], base: SentenceTransformer, tuned: SentenceTransformer
    ) -> dict[str, Any]:
        """Pair metrics of both models: the F1 threshold chosen on the dev pairs, every figure on the reported pairs.

        Args:
            eval_pairs: ``{"dev": [...], "report": [...]}`` labelled pairs.
            base: The base model.
            tuned: The selected model (may be the base model).

        Returns:
            ``{"base": PairMetrics.to_dict(), "fine_tuned": PairMetrics.to_dict()}``.

        Raises:
            ValueError: if a split's pairs are all relevant or all non-relevant.
        """
        result = {}
        for label, model in (("base", base), ("fine_tuned", tuned)):
            scores = {
                role: score_pairs(model, pairs, self.config.eval.batch_size) for role, pairs in eval_pairs.items()
            }
            labels = {role: np.array([pair.label for pair in pairs]) for role, pairs in eval_pairs.items()}
            metrics = pair_diagnostics(scores["dev"], labels["dev"], scores["report"], labels["report"])
            logger.info("Pair diagnostics (%s): %s", label, metrics.to_dict())
            result[label] = metrics.to_dict()
        return result

    def extra_reports(self, base: Figures, tuned: Figures) -> list[ExtraReport]:
        """Compare base and fine-tuned on each extra dataset; log a warning for each drop beyond the threshold."""
        threshold = self.config.eval.forgetting_threshold
        reports = []
        for name, base_scores in base.extra.items():
            tuned_scores = tuned.extra[name]
            drop = base_scores[self.primary] - tuned_scores[self.primary]
            forgetting = drop > threshold
            if forgetting:
                logger.warning(
                    "FORGETTING: %s drops by %.4f on %s (base %.4f -> fine-tuned %.4f; threshold %.4f)",
                    self.primary,
                    drop,
                    name,
                    base_scores[self.primary],
                    tuned_scores[self.primary],
                    threshold,
                )
            split = self.extra_split_names[name]
            reports.append(ExtraReport(name, split, base_scores, tuned_scores, round(drop, 6), forgetting))
        return reports


def per_query_record(split: str, base: Figures, tuned: Figures, seen: set[str] | None = None) -> dict[str, Any]:
    """Build the content of the run folder's ``per_query.json``: every metric per query, base and fine-tuned.

    Args:
        split: The reported split's name.
        base: The base model's figures.
        tuned: The selected model's figures.
        seen: Ids of the queries whose relevant documents were training positives
            (:func:`embedtune.evaluation.seen_unseen.seen_queries`), or ``None`` when not known.

    Returns:
        ``{"split": str, "base": {qid: {metric: value}}, "fine_tuned": {qid: {metric: value}}, "seen": [qid]}``
        (``seen`` only when given).
    """
    record = {"split": split, "base": base.per_query, "fine_tuned": tuned.per_query}
    if seen is not None:
        record["seen"] = sorted(seen & set(base.per_query))
    return record


def score_distribution_record(base: Figures, tuned: Figures) -> dict[str, Any]:
    """Build the content of ``score_distributions.json``: positive and hard-negative similarities, both models.

    Returns:
        ``{"base": {"positive": [...], "negative": [...]}, "fine_tuned": {...}}``.
    """
    return {"base": base.scores, "fine_tuned": tuned.scores}
