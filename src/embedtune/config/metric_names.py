"""Metric names as a user writes them (``ndcg@10``, ``MRR@10``): parsing, the defaults and their display spelling.

They live in config because settings (``eval.metrics``, ``train.selection_metric``) are checked against them before
anything loads; :mod:`embedtune.evaluation.metrics` computes the metrics they name.
"""

from __future__ import annotations

import re

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "map@100", "recall@10", "recall@100", "mrr@10")
"""Metrics reported when none are asked for."""

_METRIC_PATTERN = re.compile(r"^(ndcg|map|recall|precision|mrr)@([1-9][0-9]*)$")
_ACCEPTED_FORMS = "ndcg@k, map@k, recall@k, precision@k, mrr@k (k a positive integer, case-insensitive)"


def parse_metric(name: str) -> tuple[str, int]:
    """Split a metric name such as ``"nDCG@10"`` into its family and cut-off.

    Args:
        name: ``<family>@<k>`` with family one of ndcg, map, recall, precision, mrr (any case) and k >= 1.

    Returns:
        ``(family, k)`` with the family lower-cased, e.g. ``("ndcg", 10)``.

    Raises:
        ValueError: if ``name`` is not one of the accepted forms.
    """
    match = _METRIC_PATTERN.match(name.strip().lower())
    if match is None:
        raise ValueError(f"unsupported metric {name!r}; accepted forms: {_ACCEPTED_FORMS}")
    return match.group(1), int(match.group(2))


_DISPLAY_FAMILIES = {"ndcg": "nDCG", "map": "MAP", "recall": "Recall", "precision": "P", "mrr": "MRR"}


def display_name(name: str) -> str:
    """Return the field's spelling of a metric name: ``"ndcg@10"`` -> ``"nDCG@10"``, ``"mrr@10"`` -> ``"MRR@10"``.

    Raises:
        ValueError: if ``name`` is not a supported metric (see :func:`parse_metric`).
    """
    family, k = parse_metric(name)
    return f"{_DISPLAY_FAMILIES[family]}@{k}"
