"""Deterministic, leak-free query splits: seeded carving, hash splits and checks that no query is in two splits."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from embedtune.data.types import Qrels
from embedtune.errors import DataError, shorten

TRAIN_SPLIT = "train"
DEV_SPLIT = "dev"
TEST_SPLIT = "test"

Item = TypeVar("Item")


def normalize_query(text: str) -> str:
    """Return the form under which two query texts count as the same query: whitespace collapsed, casefolded.

    Args:
        text: A query text.

    Returns:
        ``text`` with every run of whitespace replaced by one space, stripped and casefolded, so that
        ``"What  is X?"`` and ``"what is x?"`` compare equal.
    """
    return " ".join(text.split()).casefold()


def carve_queries(
    keys: Iterable[str], fraction: float, seed: int, *, setting: str = "fraction"
) -> tuple[list[str], list[str]]:
    """Carve a share of the keys (query ids or normalised query texts) out, deterministically.

    The unique keys are sorted, shuffled with ``random.Random(seed)``, and the first ``size`` are carved out, where
    ``size = max(1, round(n * fraction))``, capped at ``n - 1`` so the rest is never empty. The result depends only
    on the set of keys and the seed, not on their input order.

    Args:
        keys: Keys to split (duplicates are ignored).
        fraction: Share of the keys to carve out, strictly between 0 and 1.
        seed: Seed of the shuffle.
        setting: Name of the setting ``fraction`` came from, used in error messages (e.g. ``"dev_fraction"``).

    Returns:
        ``(rest, carved)``: disjoint, each sorted, together holding every input key.

    Raises:
        ValueError: if ``fraction`` is not strictly between 0 and 1 (booleans and NaN included), or there are
            fewer than 2 unique keys.
    """
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"{setting} must be strictly between 0 and 1, got {fraction!r}")
    shuffled = sorted(set(keys))
    if len(shuffled) < 2:
        raise ValueError(f"need at least 2 distinct queries to carve a share out ({setting}), got {len(shuffled)}")
    random.Random(seed).shuffle(shuffled)
    size = min(len(shuffled) - 1, max(1, round(len(shuffled) * fraction)))
    return sorted(shuffled[size:]), sorted(shuffled[:size])


def split_dev_queries(
    query_ids: Iterable[str], dev_fraction: float = 0.1, seed: int = 42
) -> tuple[list[str], list[str]]:
    """Carve a dev set out of query ids, deterministically: :func:`carve_queries` with the ``dev_fraction`` setting.

    Args:
        query_ids: Query ids to split (duplicates are ignored).
        dev_fraction: Fraction of the ids to put in dev, strictly between 0 and 1.
        seed: Seed of the shuffle.

    Returns:
        ``(train_ids, dev_ids)``: disjoint, each sorted, together holding every input id.

    Raises:
        ValueError: if ``dev_fraction`` is not strictly between 0 and 1, or there are fewer than 2 unique ids.
    """
    return carve_queries(query_ids, dev_fraction, seed, setting="dev_fraction")


def group_by_normalized_text(queries: Mapping[str, str]) -> dict[str, list[str]]:
    """Group query ids whose texts are equal once normalised (see :func:`normalize_query`).

    Carving whole groups keeps two spellings of one question out of two different splits.

    Args:
        queries: Query id -> query text.

    Returns:
        Normalised text -> the sorted ids holding it, keys in sorted order.
    """
    groups: dict[str, list[str]] = {}
    for query_id, text in queries.items():
        groups.setdefault(normalize_query(text), []).append(query_id)
    return {key: sorted(groups[key]) for key in sorted(groups)}


def check_disjoint_splits(qrels: Mapping[str, Qrels], files: Mapping[str, Path]) -> None:
    """Check that no query id is judged in more than one split, whatever splits a data set ships.

    Args:
        qrels: Split name -> its judgements.
        files: Split name -> the qrels file it was read from (named in the error).

    Raises:
        DataError: for the first overlapping pair of splits (in sorted order): located at the first split's file,
            field ``query-id``, naming the other file, how many ids they share and one example id.
    """
    for first, second in itertools.combinations(sorted(qrels), 2):
        shared = qrels[first].keys() & qrels[second].keys()
        if shared:
            message = (
                f"split '{first}' shares {len(shared)} query id(s) with split '{second}' ({files[second]}), "
                f"e.g. {shorten(min(shared))}: a query must be judged in one split only"
            )
            raise DataError(files[first], None, "query-id", message)


def hash_split(key: str, names: Sequence[str], fractions: Sequence[float]) -> str:
    """Assign a key to a named split by a stable hash (SHA-256), so equal keys always share a split.

    Args:
        key: What decides the split, e.g. a top-level package name.
        names: Split names, e.g. ``("train", "dev", "test")``.
        fractions: Expected share of keys per split, in the order of ``names``.

    Returns:
        One of ``names``.

    Raises:
        ValueError: if ``fractions`` is not one non-negative number per name, summing to 1.
    """
    check_fractions(names, fractions)
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in zip(names, fractions, strict=True):
        cumulative += fraction
        if position < cumulative:
            return name
    return names[-1]


def group_by_hash_split(
    items: Iterable[Item], key: Callable[[Item], str], names: Sequence[str], fractions: Sequence[float]
) -> dict[str, list[Item]]:
    """Group items by the :func:`hash_split` of their key, so items sharing a key (a package...) share a split.

    Args:
        items: Items to group; their order is kept within each split.
        key: Returns the key that decides an item's split.
        names: Split names.
        fractions: Expected share of keys per split, in the order of ``names``.

    Returns:
        Split name -> its items, one entry per name (possibly empty).

    Raises:
        ValueError: if ``fractions`` is invalid (see :func:`check_fractions`).
    """
    check_fractions(names, fractions)
    groups: dict[str, list[Item]] = {name: [] for name in names}
    for item in items:
        groups[hash_split(key(item), names, fractions)].append(item)
    return groups


def seeded_sample(items: Iterable[Item], limit: int | None, seed: int, key: Callable[[Item], str]) -> list[Item]:
    """Sample at most ``limit`` items, deterministically whatever their input order.

    Args:
        items: Candidates; they are sorted by ``key`` before sampling.
        limit: Most items to keep; ``None`` keeps all.
        seed: Seed of the ``random.Random`` used for sampling.
        key: Sort key of an item (unique keys make the result independent of the input order).

    Returns:
        The sampled items, sorted by ``key``.
    """
    ordered = sorted(items, key=key)
    if limit is None or len(ordered) <= limit:
        return ordered
    return sorted(random.Random(seed).sample(ordered, limit), key=key)


def check_fractions(names: Sequence[str], fractions: Sequence[float]) -> None:
    """Check that ``fractions`` gives one non-negative share per split name and that the shares sum to 1.

    Args:
        names: Split names.
        fractions: One share per name.

    Raises:
        ValueError: naming the offending fractions.
    """
    if len(fractions) != len(names) or any(fraction < 0 for fraction in fractions):
        raise ValueError(f"fractions must be {len(names)} non-negative numbers, got {tuple(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {tuple(fractions)} (sum {sum(fractions)})")
