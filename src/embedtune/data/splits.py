"""Deterministic train/dev query splits, so checkpoints are chosen on dev and never on test."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

from embedtune.data.types import Qrels, RetrievalSet

TRAIN_SPLIT = "train"
DEV_SPLIT = "dev"


def split_dev_queries(
    query_ids: Iterable[str], dev_fraction: float = 0.1, seed: int = 42
) -> tuple[list[str], list[str]]:
    """Carve a dev set out of query ids, deterministically.

    The unique ids are sorted, shuffled with ``random.Random(seed)``, and the first ``dev_size`` become dev, where
    ``dev_size = max(1, round(n * dev_fraction))``, capped at ``n - 1`` so train is never empty. The result depends
    only on the set of ids and the seed, not on their input order.

    Args:
        query_ids: Query ids to split (duplicates are ignored).
        dev_fraction: Fraction of the ids to put in dev, strictly between 0 and 1.
        seed: Seed of the shuffle.

    Returns:
        ``(train_ids, dev_ids)``: disjoint, each sorted, together holding every input id.

    Raises:
        ValueError: if ``dev_fraction`` is not strictly between 0 and 1, or there are fewer than 2 unique ids.
    """
    if isinstance(dev_fraction, bool) or not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must be strictly between 0 and 1, got {dev_fraction!r}")
    shuffled = sorted(set(query_ids))
    if len(shuffled) < 2:
        raise ValueError(f"need at least 2 query ids to carve out a dev split, got {len(shuffled)}")
    random.Random(seed).shuffle(shuffled)
    dev_size = min(len(shuffled) - 1, max(1, round(len(shuffled) * dev_fraction)))
    return sorted(shuffled[dev_size:]), sorted(shuffled[:dev_size])


def _subset(qrels: Qrels, query_ids: Iterable[str]) -> Qrels:
    """Copy the judgements of ``query_ids`` out of ``qrels``."""
    return {query_id: dict(qrels[query_id]) for query_id in query_ids}


def with_dev_split(retrieval_set: RetrievalSet, dev_fraction: float = 0.1, seed: int = 42) -> RetrievalSet:
    """Return the set with a ``dev`` qrels split carved out of the ``train`` queries, unless it already has one.

    Args:
        retrieval_set: The set to split.
        dev_fraction: Fraction of the train queries to move to dev (see :func:`split_dev_queries`).
        seed: Seed of the split.

    Returns:
        ``retrieval_set`` itself if it has a ``dev`` split; otherwise a new set (sharing corpus and queries) whose
        ``train`` qrels hold the remaining train queries and ``dev`` qrels the carved-out ones, other splits copied
        unchanged.

    Raises:
        ValueError: if the set has no ``train`` split, ``dev_fraction`` or the number of train queries is invalid
            (see :func:`split_dev_queries`), or a query id ends up in two splits (e.g. train and test overlapped).
    """
    if DEV_SPLIT in retrieval_set.qrels:
        return retrieval_set
    if TRAIN_SPLIT not in retrieval_set.qrels:
        raise ValueError(
            f"cannot carve out a dev split: no '{TRAIN_SPLIT}' qrels (splits: {sorted(retrieval_set.qrels)})"
        )
    train_qrels = retrieval_set.qrels[TRAIN_SPLIT]
    train_ids, dev_ids = split_dev_queries(train_qrels, dev_fraction=dev_fraction, seed=seed)
    qrels = {split: _subset(judged, judged) for split, judged in retrieval_set.qrels.items()}
    qrels[TRAIN_SPLIT] = _subset(train_qrels, train_ids)
    qrels[DEV_SPLIT] = _subset(train_qrels, dev_ids)
    result = RetrievalSet(
        corpus=retrieval_set.corpus, queries=retrieval_set.queries, qrels=qrels, source=retrieval_set.source
    )
    assert_disjoint_splits(result)
    return result


def assert_disjoint_splits(retrieval_set: RetrievalSet) -> None:
    """Check that no query id is judged in more than one qrels split.

    Args:
        retrieval_set: The set to check.

    Raises:
        ValueError: naming the first overlapping pair of splits (in sorted order), how many ids they share and one
            example id.
    """
    for first, second in itertools.combinations(sorted(retrieval_set.qrels), 2):
        shared = retrieval_set.qrels[first].keys() & retrieval_set.qrels[second].keys()
        if shared:
            raise ValueError(
                f"qrels splits '{first}' and '{second}' share {len(shared)} query id(s), e.g. {min(shared)!r}"
            )
