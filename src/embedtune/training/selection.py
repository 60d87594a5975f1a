"""Choose the run's model on dev: the best fine-tuned checkpoint, or the untouched base model when none beats it.

Two steps. The dev history (evaluations on the dev pool during training) names the best checkpoint. Then that
checkpoint and the base model are compared query by query on the whole dev corpus (:func:`confirm_on_dev`): the
pool holds the base model's near misses but not the checkpoint's own, so on the pool a checkpoint can only look
better than it is; the whole corpus has no such tilt. The checkpoint is kept only if its mean gain there exceeds
``train.selection_min_delta`` and, unless ``train.selection_alpha`` is none, a paired randomisation test over the dev
queries (Smucker, Allan & Carterette, CIKM 2007) finds it better at that level. The verdict and ``metrics.json``
name the rule that decided.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.config.metric_names import display_name
from embedtune.data.types import EvalSplit
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.evaluation.significance import PairedComparison, compare_per_query
from embedtune.runs import CHOSEN_BASE, CHOSEN_FINE_TUNED, Selection

logger = logging.getLogger(__name__)


def dev_evaluator(
    config: ExperimentConfig,
    split: EvalSplit,
    corpus: dict[str, str] | None = None,
    *,
    metrics: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    progress: bool | None = None,
) -> RetrievalEvaluator:
    """Build the evaluator every dev comparison of a run uses, so that each model that competes is scored alike.

    Args:
        config: The run's configuration: its ``eval.batch_size``, ``eval.precision``, ``eval.metrics`` and
            ``train.primary_metric`` are used.
        split: The dev split: its queries and qrels.
        corpus: Document id -> text to rank: a dev pool, or ``None`` for the split's whole corpus.
        metrics: Metric names to compute; ``None``: ``eval.metrics``.
        cache: Embedding cache the evaluator encodes through (``None``: encode everything).
        progress: Show progress bars; ``None`` shows them when stderr is a terminal.

    Returns:
        A :class:`~embedtune.evaluation.retrieval_evaluator.RetrievalEvaluator` named ``dev`` (its results are
        ``dev_<metric>``).
    """
    return RetrievalEvaluator(
        split.corpus if corpus is None else corpus,
        split.queries,
        split.qrels,
        name="dev",
        metrics=config.eval.metrics if metrics is None else metrics,
        primary_metric=config.train.primary_metric,
        batch_size=config.eval.batch_size,
        progress=progress,
        cache=cache,
        precision=config.eval.precision,
    )


@dataclass(frozen=True)
class SelectionRule:
    """When a fine-tuned checkpoint replaces the base model.

    Attributes:
        min_delta: The mean dev gain of the primary metric must be larger than this (>= 0).
        alpha: Level of the paired randomisation test the gain must pass, or ``None`` for no test.
    """

    min_delta: float = 0.0
    alpha: float | None = 0.05

    def describe(self, where: str) -> str:
        """Return the rule in words, e.g. ``"Δ > 0 and paired randomisation test p < 0.05 on <where>"``."""
        test = "" if self.alpha is None else f" and paired randomisation test p < {self.alpha:g}"
        return f"Δ > {self.min_delta:g}{test} on {where}"

    def accepts(self, delta: float, comparison: PairedComparison | None) -> bool:
        """Whether a checkpoint with mean gain ``delta`` (and its paired ``comparison``) beats the base model."""
        if delta <= self.min_delta:
            return False
        return self.alpha is None or (comparison is not None and comparison.p_permutation < self.alpha)


def dev_history(log_history: list[dict[str, Any]], primary: str, metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Extract the dev evaluations from the trainer's log history, in order.

    Args:
        log_history: ``trainer.state.log_history``; dev evaluations carry ``eval_dev_<metric>`` keys.
        primary: The primary metric, e.g. ``"ndcg@10"``.
        metrics: The order of the metrics in each entry (``eval.metrics``; others follow as logged). A resumed run's
            log history comes back from ``trainer_state.json`` with its keys sorted, so the order is set here.

    Returns:
        ``[{"step": int, "epoch": float, "<metric>": value, ...}]``; the first entry (step 0) is the untouched model.
    """
    rank = {name.lower(): index for index, name in enumerate(metrics)}
    history = []
    for entry in log_history:
        if f"eval_dev_{primary}" in entry:
            logged = [(k.removeprefix("eval_dev_"), v) for k, v in entry.items() if k.startswith("eval_dev_")]
            logged.sort(key=lambda item: rank.get(item[0], len(rank)))  # stable: unranked keep their order
            history.append({"step": entry["step"], "epoch": round(entry.get("epoch") or 0.0, 4), **dict(logged)})
    return history


def best_checkpoint(history: list[dict[str, Any]], primary: str) -> dict[str, Any]:
    """Return the history entry of the best fine-tuned checkpoint by ``primary`` (the earliest among equals).

    Raises:
        ValueError: if the history has no step-0 evaluation or no fine-tuned evaluation.
    """
    if not history or history[0]["step"] != 0:
        raise ValueError("dev history has no evaluation of the untouched model at step 0")
    if len(history) < 2:
        raise ValueError("dev history has no evaluation of a fine-tuned checkpoint")
    return max(history[1:], key=lambda entry: (entry[primary], -entry["step"]))


def confirm_on_dev(
    dev: EvalSplit,
    base: SentenceTransformer,
    tuned: SentenceTransformer,
    primary: str,
    batch_size: int | None,
    caches: tuple[EmbeddingCache | None, EmbeddingCache | None] = (None, None),
    alpha: float = 0.05,
    precision: str = "fp32",
) -> PairedComparison:
    """Evaluate the base model and the best checkpoint on the whole dev corpus and compare them query by query.

    Args:
        dev: The dev split (its whole corpus is ranked).
        base: The untouched base model.
        tuned: The best checkpoint.
        primary: The primary metric, e.g. ``"ndcg@10"``.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        caches: Embedding caches for the base model's and the checkpoint's embeddings (``None``: encode all).
        alpha: Level the comparison's ``significant`` is judged at.
        precision: Autocast precision both models encode at (see :func:`~embedtune.models.precision.inference_dtype`).

    Returns:
        The checkpoint (b) against the base model (a) on ``primary``.
    """
    evaluator = RetrievalEvaluator(
        dev.corpus,
        dev.queries,
        dev.qrels,
        name="dev",
        metrics=[primary],
        primary_metric=primary,
        batch_size=batch_size,
        precision=precision,
    )
    scores = []
    for model, cache in zip((base, tuned), caches, strict=True):
        evaluator.cache = cache
        evaluator(model)
        scores.append({query: values[primary] for query, values in evaluator.last_per_query.items()})
    return compare_per_query(scores[0], scores[1], metric=primary, alpha=alpha, labels=("base", "checkpoint"))


def select_model(
    history: list[dict[str, Any]],
    primary: str,
    rule: SelectionRule | None = None,
    confirmation: PairedComparison | None = None,
    where: str = "the dev pool",
) -> Selection:
    """Keep the best dev checkpoint if it beats the base model by ``rule``; keep the base model otherwise.

    Ties go to the base model (fine-tuning must earn its place), and among fine-tuned checkpoints to the earliest.

    Args:
        history: Output of :func:`dev_history`; entry 0 must be the step-0 (untouched model) evaluation.
        primary: The primary metric.
        rule: The selection rule; ``None`` accepts any gain (``SelectionRule(0.0, None)``).
        confirmation: :func:`confirm_on_dev` of the best checkpoint; when given, its means decide instead of the
            history's (and its test is the one the rule applies). Without it a rule with a test keeps the base.
        where: What the deciding figures were measured on, for the verdict (e.g. ``"the whole dev corpus"``).

    Returns:
        The selection with its verdict line and rule.

    Raises:
        ValueError: if the history has no step-0 evaluation or no fine-tuned evaluation.
    """
    rule = rule or SelectionRule(0.0, None)
    best = best_checkpoint(history, primary)
    base_dev, best_dev = history[0][primary], best[primary]
    if confirmation is not None:
        base_dev, best_dev = confirmation.mean_a, confirmation.mean_b
    delta = best_dev - base_dev
    shown, described = display_name(primary), rule.describe(where)
    test = (
        "" if confirmation is None else f", p = {confirmation.p_permutation:.2g} over {confirmation.queries} queries"
    )
    record = {"rule": described, "dev_comparison": None if confirmation is None else confirmation.to_dict()}
    if rule.accepts(delta, confirmation):
        verdict = (
            f"fine-tuning beat the base model on dev: {shown} {base_dev:.4f} -> {best_dev:.4f} "
            f"(Δ {delta:+.4f}{test}) at step {best['step']}; model/ is that checkpoint (rule: {described})"
        )
        return Selection(CHOSEN_FINE_TUNED, best["step"], base_dev, best_dev, delta, verdict, **record)
    verdict = (
        f"fine-tuning did not beat the base model on dev: best Δ {shown} {delta:+.4f}{test}; model/ is the base model "
        f"(rule: {described})"
    )
    return Selection(CHOSEN_BASE, None, base_dev, best_dev, delta, verdict, **record)


def decide_on_dev(
    config: ExperimentConfig,
    dev: EvalSplit,
    history: list[dict[str, Any]],
    base: SentenceTransformer,
    tuned: SentenceTransformer,
    caches: tuple[EmbeddingCache | None, EmbeddingCache | None] = (None, None),
) -> Selection:
    """Confirm the best dev checkpoint (``tuned``) against ``base`` on the whole dev corpus, then apply the rule.

    Args:
        config: The run's settings (``train.primary_metric``, ``train.selection_alpha``,
            ``train.selection_min_delta``, ``eval.batch_size``, ``eval.precision``).
        dev: The dev split.
        history: :func:`dev_history` of the training.
        base: The untouched base model.
        tuned: The model holding the best checkpoint of ``history``.
        caches: Embedding caches of the base model and the checkpoint (see :func:`confirm_on_dev`).

    Returns:
        The selection (its ``dev_comparison`` is the whole-corpus comparison).
    """
    train = config.train
    primary = train.primary_metric.lower()
    logger.info("Confirming the best dev checkpoint against the base model on the whole dev corpus")
    alpha = train.selection_alpha or 0.05
    confirmation = confirm_on_dev(
        dev, base, tuned, primary, config.eval.batch_size, caches, alpha=alpha, precision=config.eval.precision
    )
    where = f"the whole dev corpus ({len(dev.corpus)} documents)"
    rule = SelectionRule(train.selection_min_delta, train.selection_alpha)
    selection = select_model(history, primary, rule, confirmation, where)
    (logger.warning if selection.chosen == CHOSEN_BASE else logger.info)("%s", selection.verdict)
    return selection
