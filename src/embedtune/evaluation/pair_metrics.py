"""Pair diagnostics: how well a model's cosine scores separate relevant from non-relevant labelled pairs.

For labelled pairs (:class:`~embedtune.data.pairs.PairExample`, label in ``[0, 1]``, relevant when the label is at
least :data:`~embedtune.data.pairs.RELEVANT_LABEL`) the model scores each pair by the cosine of its query-side and
passage-side embeddings. The decision threshold is chosen on dev (the F1-maximising score) and applied unchanged
to test, so the test F1 and accuracy are honest; every other figure is computed on test alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from embedtune.data.pairs import RELEVANT_LABEL, PairExample
from embedtune.models.batch_size import encode_in_batches

DEFAULT_MIN_AUC = 0.70
"""ROC AUC a model must reach on test for its pair diagnostics to pass."""
DEFAULT_MIN_F1 = 0.70
"""F1 (at the dev-chosen threshold) a model must reach on test for its pair diagnostics to pass."""


@dataclass(frozen=True)
class PairMetrics:
    """Pair diagnostics of one model on the test pairs, with the threshold chosen on dev.

    Attributes:
        spearman: Spearman rank correlation of the scores with the graded labels, in ``[-1, 1]``; ``None`` when it
            is undefined (every score equal).
        roc_auc: Area under the ROC curve of the scores against the binarised labels, in ``[0, 1]``.
        f1: F1 of the relevant class when a pair counts as relevant if its score is ``>= threshold``.
        accuracy: Fraction of pairs classified correctly at ``threshold``.
        threshold: The cosine threshold, chosen on dev by :func:`best_threshold`.
        separability: ``(mean score of positives - mean score of negatives) / pooled standard deviation``
            (Cohen's d, sample variances); ``None`` when the pooled deviation is zero or undefined (under 3 pairs).
        n_pairs: Number of test pairs.
        passed: ``roc_auc >= min_auc and f1 >= min_f1``.
        min_auc: The ROC AUC needed to pass.
        min_f1: The F1 needed to pass.
    """

    spearman: float | None
    roc_auc: float
    f1: float
    accuracy: float
    threshold: float
    separability: float | None
    n_pairs: int
    passed: bool
    min_auc: float = DEFAULT_MIN_AUC
    min_f1: float = DEFAULT_MIN_F1

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON content (every field by name; ``None`` for an undefined figure)."""
        return asdict(self)


def score_pairs(model: Any, pairs: Sequence[PairExample], batch_size: int | None = None) -> np.ndarray:
    """Score labelled pairs by cosine similarity: ``text1`` as a query, ``text2`` as a document.

    Each distinct ``text1`` is encoded once with ``model.encode_query`` and each distinct ``text2`` once with
    ``model.encode_document`` (so the model's query and document prompts apply).

    Args:
        model: A ``SentenceTransformer`` (anything with ``encode_query`` and ``encode_document``).
        pairs: The pairs to score, at least one.
        batch_size: Texts per forward pass (>= 1); ``None`` sizes it for the device
            (:func:`~embedtune.models.batch_size.encode_in_batches`).

    Returns:
        Float64 array of shape ``(len(pairs),)``: the cosine of pair ``i`` in ``[-1, 1]``, in the pairs' order; a
        zero embedding scores 0.

    Raises:
        ValueError: if ``pairs`` is empty or ``batch_size`` is below 1.
    """
    if not pairs:
        raise ValueError("no pairs to score")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    queries = list(dict.fromkeys(pair.text1 for pair in pairs))
    documents = list(dict.fromkeys(pair.text2 for pair in pairs))

    def encode_both(size: int) -> tuple[np.ndarray, np.ndarray]:
        options = {"batch_size": size, "convert_to_numpy": True, "show_progress_bar": False}
        return model.encode_query(queries, **options), model.encode_document(documents, **options)

    query_output, document_output = encode_in_batches(model, batch_size, encode_both)
    query_vectors, document_vectors = _unit_rows(query_output), _unit_rows(document_output)
    query_rows = {text: row for row, text in enumerate(queries)}
    document_rows = {text: row for row, text in enumerate(documents)}
    left = query_vectors[[query_rows[pair.text1] for pair in pairs]]
    right = document_vectors[[document_rows[pair.text2] for pair in pairs]]
    return np.clip(np.einsum("ij,ij->i", left, right), -1.0, 1.0)


def best_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float:
    """Choose the score threshold that maximises F1 on these pairs (meant for dev).

    A pair is predicted relevant when its score is ``>= threshold``; the candidates are the distinct scores. When
    several thresholds give the same F1 the highest wins (the strictest rule that does as well).

    Args:
        scores: Pair scores, shape ``(n,)``, finite.
        labels: Graded labels in ``[0, 1]``, shape ``(n,)``; ``>= RELEVANT_LABEL`` counts as relevant.

    Returns:
        The chosen threshold (one of ``scores``).

    Raises:
        ValueError: if the inputs are empty, differ in length or hold a non-finite score, or no pair is relevant
            (F1 is then zero at every threshold).
    """
    scores, relevant = _checked(scores, labels, "pairs")
    if not relevant.any():
        raise ValueError("cannot choose a threshold: no pair is relevant (label >= 0.5), so F1 is 0 at any threshold")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_relevant = scores[order], relevant[order]
    true_positives = np.cumsum(sorted_relevant)
    predicted = np.arange(1, len(scores) + 1)
    # the last position of each distinct score: predicting "relevant" for every score >= that value
    last = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    f1 = 2 * true_positives[last] / (predicted[last] + relevant.sum())
    best = last[np.flatnonzero(f1 == f1.max())[0]]  # scores descend, so the first best is the highest threshold
    return float(sorted_scores[best])


def pair_diagnostics(
    dev_scores: Sequence[float] | np.ndarray,
    dev_labels: Sequence[float] | np.ndarray,
    test_scores: Sequence[float] | np.ndarray,
    test_labels: Sequence[float] | np.ndarray,
    min_auc: float = DEFAULT_MIN_AUC,
    min_f1: float = DEFAULT_MIN_F1,
) -> PairMetrics:
    """Compute the pair diagnostics of one model: threshold chosen on dev, every figure measured on test.

    Args:
        dev_scores: Dev pair scores, shape ``(n_dev,)`` (e.g. from :func:`score_pairs`).
        dev_labels: Dev graded labels in ``[0, 1]``, shape ``(n_dev,)``.
        test_scores: Test pair scores, shape ``(n_test,)``.
        test_labels: Test graded labels in ``[0, 1]``, shape ``(n_test,)``.
        min_auc: ROC AUC needed on test to pass.
        min_f1: F1 at the dev threshold needed on test to pass.

    Returns:
        The :class:`PairMetrics` on test.

    Raises:
        ValueError: if a split is empty, its scores and labels differ in length, a score is not finite, or a split
            holds only relevant or only non-relevant pairs (ROC AUC and the threshold need both classes).
    """
    _checked(dev_scores, dev_labels, "dev pairs", both_classes=True)
    scores, relevant = _checked(test_scores, test_labels, "test pairs", both_classes=True)
    threshold = best_threshold(dev_scores, dev_labels)
    predicted = scores >= threshold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input and answers nan, turned into None below
        rho = float(spearmanr(scores, np.asarray(test_labels, dtype=float)).statistic)
    auc = float(roc_auc_score(relevant, scores))
    f1 = float(f1_score(relevant, predicted, zero_division=0.0))
    return PairMetrics(
        spearman=None if math.isnan(rho) else rho,
        roc_auc=auc,
        f1=f1,
        accuracy=float(accuracy_score(relevant, predicted)),
        threshold=threshold,
        separability=separability(scores, relevant),
        n_pairs=len(scores),
        passed=auc >= min_auc and f1 >= min_f1,
        min_auc=min_auc,
        min_f1=min_f1,
    )


def separability(scores: np.ndarray, relevant: np.ndarray) -> float | None:
    """Cohen's d of positives vs negatives: ``(mean_pos - mean_neg) / pooled_std``.

    Args:
        scores: Pair scores, shape ``(n,)``.
        relevant: Booleans, shape ``(n,)``, with both classes present.

    Returns:
        The standardised difference (unitless); ``None`` when the pooled sample standard deviation
        ``sqrt(((n_pos - 1) var_pos + (n_neg - 1) var_neg) / (n - 2))`` is zero or undefined (``n < 3``).
    """
    positives, negatives = scores[relevant], scores[~relevant]
    dof = len(scores) - 2
    if dof < 1:
        return None
    pooled = (positives.var() * len(positives) + negatives.var() * len(negatives)) / dof
    if pooled <= 0:
        return None
    return float((positives.mean() - negatives.mean()) / math.sqrt(pooled))


def _checked(
    scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray, what: str, both_classes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one split; returns ``(scores as float64, relevant as bool)``, each of shape ``(n,)``."""
    scores_array = np.asarray(scores, dtype=float).reshape(-1)
    labels_array = np.asarray(labels, dtype=float).reshape(-1)
    if len(scores_array) == 0:
        raise ValueError(f"{what}: no pairs")
    if len(scores_array) != len(labels_array):
        raise ValueError(f"{what}: {len(scores_array)} scores but {len(labels_array)} labels")
    if not np.isfinite(scores_array).all():
        raise ValueError(f"{what}: scores must be finite numbers")
    relevant = labels_array >= RELEVANT_LABEL
    if both_classes and (relevant.all() or not relevant.any()):
        kind = "relevant (label >= 0.5)" if relevant.all() else "non-relevant (label < 0.5)"
        raise ValueError(
            f"{what}: all {len(relevant)} pairs are {kind}; ROC AUC and the F1 threshold are undefined with a single "
            "class — the split needs both relevant and non-relevant pairs"
        )
    return scores_array, relevant


def _unit_rows(vectors: Any) -> np.ndarray:
    """Embeddings as float64 rows of unit length, shape ``(n, dim)``; a zero row stays zero."""
    matrix = np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
