"""WiSE-FT at the end of a run (``train.interpolation``): how much of the fine-tuning the shipped model keeps.

The best dev checkpoint is mixed with the base model (:func:`~embedtune.models.interpolation.interpolate_weights`)
at each share ``α`` that ``train.interpolation`` names; with ``auto`` every share of ``train.interpolation_grid`` is
ranked on the whole dev corpus and the best wins (ties to the smaller share, the one closer to the base). The winner
then faces the base model under the run's selection rule like any checkpoint
(:func:`embedtune.training.selection.decide_on_dev`). With dev carved by document (``data.dev_split_by``, or
``data.test_split_by``, which it follows by default) dev holds only documents that were never training positives, so
``auto`` picks the share that serves new documents best.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.config import ExperimentConfig
from embedtune.config.metric_names import display_name
from embedtune.data.types import EvalSplit
from embedtune.models.interpolation import interpolate_weights
from embedtune.runs import Selection
from embedtune.training.selection import dev_evaluator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interpolated:
    """The candidate that competes with the base model, and how it was interpolated.

    Attributes:
        model: The best checkpoint itself (no interpolation) or its interpolation with the base.
        record: ``{"setting", "alpha", "grid": [{"alpha", <metric>}]}`` for ``metrics.json``, or ``None``.
    """

    model: SentenceTransformer
    record: dict[str, Any] | None = None

    def annotate(self, selection: Selection) -> Selection:
        """Return ``selection`` with the interpolation recorded and named in its verdict (unchanged without one)."""
        if self.record is None:
            return selection
        verdict = f"{selection.verdict}; candidate: WiSE-FT α = {self.record['alpha']:g} of the checkpoint"
        return replace(selection, verdict=verdict, interpolation=self.record)


def interpolate_on_dev(
    config: ExperimentConfig,
    dev: EvalSplit,
    base: SentenceTransformer,
    tuned: SentenceTransformer,
    cache: EmbeddingCache | None = None,
) -> Interpolated:
    """Interpolate the best checkpoint with the base model as ``train.interpolation`` says, choosing α on dev.

    Args:
        config: The run's settings (``train.interpolation``, ``train.interpolation_grid``, ``train.primary_metric``,
            ``eval.batch_size``, ``eval.precision``).
        dev: The dev split; with several shares each one ranks its whole corpus once.
        base: The untouched base model.
        tuned: The best checkpoint (left unchanged).
        cache: Embedding cache for the interpolated models' embeddings (``None``: encode without one).

    Returns:
        ``tuned`` itself with no record for ``none``; the model at the fixed share; or, for ``auto``, the share of the
        grid with the highest mean dev ``train.primary_metric`` (ties to the smaller share).
    """
    alphas = config.train.interpolation_alphas
    if alphas is None:
        return Interpolated(tuned)
    record: dict[str, Any] = {"setting": config.train.interpolation, "alpha": alphas[0], "grid": []}
    if len(alphas) == 1:
        logger.info("WiSE-FT: the candidate is the checkpoint interpolated with the base at α = %g", alphas[0])
        return Interpolated(_interpolate(base, tuned, alphas[0]), record)
    primary = config.train.primary_metric.lower()
    evaluator = dev_evaluator(config, dev, metrics=[primary], cache=cache)
    best_model, best_score = tuned, float("-inf")
    for alpha in alphas:
        model = _interpolate(base, tuned, alpha)
        score = evaluator(model)[f"dev_{primary}"]
        record["grid"].append({"alpha": alpha, primary: score})
        logger.info("WiSE-FT α = %g: dev %s %.4f (whole corpus)", alpha, display_name(primary), score)
        if score > best_score:  # alphas ascend: a tie keeps the smaller share
            best_model, best_score, record["alpha"] = model, score, alpha
    logger.info("WiSE-FT: α = %g is best on dev", record["alpha"])
    return Interpolated(best_model, record)


def _interpolate(base: SentenceTransformer, tuned: SentenceTransformer, alpha: float) -> SentenceTransformer:
    return tuned if alpha == 1.0 else interpolate_weights(base, tuned, alpha)
