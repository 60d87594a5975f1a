import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from embedtune.data.pairs import PairExample
from embedtune.evaluation.pair_metrics import PairMetrics, best_threshold, pair_diagnostics, score_pairs


def random_split(rng, n):
    labels = rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], size=n)
    scores = 0.5 * labels + rng.normal(0, 0.25, size=n)
    return scores, labels


def brute_force_threshold(scores, labels):
    relevant = labels >= 0.5
    candidates = sorted(set(scores.tolist()), reverse=True)
    f1s = [f1_score(relevant, scores >= t) for t in candidates]
    return candidates[int(np.argmax(f1s))]  # first maximum = highest threshold


@pytest.mark.parametrize("seed", range(5))
def test_figures_match_scipy_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    dev_scores, dev_labels = random_split(rng, 80)
    test_scores, test_labels = random_split(rng, 120)
    metrics = pair_diagnostics(dev_scores, dev_labels, test_scores, test_labels)
    threshold = brute_force_threshold(dev_scores, dev_labels)
    relevant = test_labels >= 0.5
    assert metrics.threshold == threshold
    assert metrics.spearman == pytest.approx(spearmanr(test_scores, test_labels).statistic)
    assert metrics.roc_auc == pytest.approx(roc_auc_score(relevant, test_scores))
    assert metrics.f1 == pytest.approx(f1_score(relevant, test_scores >= threshold))
    assert metrics.accuracy == pytest.approx(accuracy_score(relevant, test_scores >= threshold))
    assert metrics.n_pairs == 120


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    scores, labels = random_split(rng, 60)
    scores = np.round(scores, 1)  # many ties between scores
    assert best_threshold(scores, labels) == brute_force_threshold(scores, labels)


def test_best_threshold_tie_goes_to_the_higher_threshold():
    # F1 at 0.9 is 2/3 (1 of 1 predicted right, 1 of 2 found), at 0.6 it is 4/6 = 2/3 too
    assert best_threshold([0.9, 0.8, 0.7, 0.6], [1, 0, 0, 1]) == 0.9


def test_threshold_is_chosen_on_dev_not_test():
    dev_scores, dev_labels = [0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0]
    test_scores, test_labels = [0.7, 0.6, 0.5, 0.1], [1, 1, 0, 0]
    assert best_threshold(test_scores, test_labels) == 0.6  # what test alone would pick: F1 1.0
    metrics = pair_diagnostics(dev_scores, dev_labels, test_scores, test_labels)
    assert metrics.threshold == 0.8
    assert metrics.f1 == 0.0 and metrics.accuracy == 0.5  # nothing on test reaches 0.8
    assert metrics.roc_auc == 1.0  # threshold-free figures are unaffected
    assert not metrics.passed


def test_separability_is_cohens_d_with_pooled_sample_std():
    scores = np.array([0.9, 0.7, 0.8, 0.2, 0.4, 0.1, 0.3])
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    positives, negatives = scores[:3], scores[3:]
    pooled = math.sqrt(
        ((len(positives) - 1) * positives.var(ddof=1) + (len(negatives) - 1) * negatives.var(ddof=1))
        / (len(scores) - 2)
    )
    metrics = pair_diagnostics(scores, labels, scores, labels)
    assert metrics.separability == pytest.approx((positives.mean() - negatives.mean()) / pooled)


def test_constant_scores_give_undefined_spearman_and_separability():
    metrics = pair_diagnostics([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], [0.5, 0.5, 0.5], [1, 0, 0])
    assert metrics.spearman is None and metrics.separability is None
    assert metrics.roc_auc == 0.5 and not metrics.passed
    assert metrics.to_dict()["spearman"] is None


def perfect_split():
    return [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]


def test_pass_and_fail_at_the_minimums():
    scores, labels = perfect_split()
    # test: AUC 0.75 (3 of 4 positive-negative orderings right), F1 2/3 at the dev threshold 0.8
    test_scores, test_labels = [0.9, 0.3, 0.5, 0.1], [1, 1, 0, 0]
    metrics = pair_diagnostics(scores, labels, test_scores, test_labels)
    assert metrics.threshold == 0.8
    assert metrics.roc_auc == pytest.approx(0.75) and metrics.f1 == pytest.approx(2 / 3)
    assert not pair_diagnostics(scores, labels, test_scores, test_labels).passed  # F1 2/3 < 0.70
    assert pair_diagnostics(scores, labels, test_scores, test_labels, min_auc=0.75, min_f1=0.66).passed
    assert not pair_diagnostics(scores, labels, test_scores, test_labels, min_auc=0.76, min_f1=0.5).passed
    assert not pair_diagnostics(scores, labels, test_scores, test_labels, min_auc=0.5, min_f1=0.67).passed
    recorded = metrics.to_dict()
    assert recorded["min_auc"] == 0.70 and recorded["min_f1"] == 0.70 and recorded["passed"] is False
    assert set(recorded) >= {"spearman", "roc_auc", "f1", "accuracy", "threshold", "separability", "n_pairs"}
    assert PairMetrics(**recorded) == metrics


@pytest.mark.parametrize("labels", [[1, 1, 0.5], [0, 0.2, 0.4]])
@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_single_class_split_is_a_plain_error(labels, split):
    good_scores, good_labels = perfect_split()
    args = [good_scores, good_labels, good_scores, good_labels]
    args[0 if split == "dev" else 2], args[1 if split == "dev" else 3] = [0.3, 0.2, 0.1], labels
    with pytest.raises(ValueError, match=rf"{split} pairs: all 3 pairs are .*undefined with a single class"):
        pair_diagnostics(*args)


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="no pairs"):
        best_threshold([], [])
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        best_threshold([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="finite"):
        best_threshold([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="no pair is relevant"):
        best_threshold([0.1, 0.2], [0, 0.3])


class CountingModel:
    """Wraps a SentenceTransformer and records every text it encodes, per side."""

    def __init__(self, model):
        self.model, self.queries, self.documents = model, [], []

    def encode_query(self, texts, **kwargs):
        self.queries += texts
        return self.model.encode_query(texts, **kwargs)

    def encode_document(self, texts, **kwargs):
        self.documents += texts
        return self.model.encode_document(texts, **kwargs)


def test_score_pairs_is_the_cosine_of_query_and_document_embeddings(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.prompts = {"query": "what ", "document": "the "}
    pairs = [
        PairExample("red apple", "sweet fruit", 1.0),
        PairExample("red apple", "fast car", 0.0),
        PairExample("blue sea", "sweet fruit", 0.3),
        PairExample("fast car", "red apple", 0.8),
    ]
    counting = CountingModel(model)
    scores = score_pairs(counting, pairs, batch_size=2)
    assert sorted(counting.queries) == ["blue sea", "fast car", "red apple"]  # each distinct text once per side
    assert sorted(counting.documents) == ["fast car", "red apple", "sweet fruit"]
    assert scores.shape == (4,)
    for pair, score in zip(pairs, scores, strict=True):
        query = model.encode_query(pair.text1)
        document = model.encode_document(pair.text2)
        expected = float(np.dot(query, document) / (np.linalg.norm(query) * np.linalg.norm(document)))
        assert score == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="no pairs"):
        score_pairs(model, [])
