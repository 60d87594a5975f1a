"""Loop-by-loop references for the InfoNCE objectives, written from the definitions (shared by the loss tests).

A candidate of query i is named ``(c, j)``: column ``c`` of the candidates (0 = positives, k = negative_k) and batch
row ``j``; query i's target is ``(0, i)``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch

from embedtune.losses.false_negatives import FalseNegativeTable


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a.tolist(), b.tolist()
    dot = sum(u * v for u, v in zip(x, y, strict=True))
    return dot / (math.sqrt(sum(u * u for u in x)) * math.sqrt(sum(v * v for v in y)))


def random_columns(batch: int, num_negatives: int, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    """``2 + num_negatives`` columns of random unit vectors, ``(batch, dim)`` each."""
    generator = torch.Generator().manual_seed(seed)
    columns = []
    for _ in range(2 + num_negatives):
        column = torch.randn(batch, dim, generator=generator)
        columns.append(column / column.norm(dim=1, keepdim=True))
    return columns


def with_rows(weights: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Labels as the trainer passes them: ``[row index, weights...]`` (float32, like the dataset's label column)."""
    rows = list(range(weights.shape[0])) if rows is None else list(rows)
    return torch.cat([torch.tensor(rows, dtype=weights.dtype).unsqueeze(1), weights], dim=1)


def query_to_candidates_loss(
    columns: Sequence[torch.Tensor],
    weights: Sequence[Sequence[float]] | None,
    scale: float,
    masked: Collection[tuple[int, int, int]] = (),
) -> float:
    """Mean over queries of ``-log(exp(s(q_i, p_i)) / sum of w * exp(s(q_i, c)) over the kept candidates)``.

    Kept: every candidate but those in ``masked`` (triples ``(i, c, j)``) and those of a padding slot (weight 0,
    gone for every query); the target ``(0, i)`` is always kept. Query i's own negatives carry its weights, every
    other candidate weight 1.
    """
    queries, candidate_columns = columns[0], columns[1:]
    batch = queries.shape[0]
    total = 0.0
    for i in range(batch):
        target = scale * cosine(queries[i], candidate_columns[0][i])
        denominator = 0.0
        for c, column in enumerate(candidate_columns):
            for j in range(batch):
                if (c, j) != (0, i):
                    if (i, c, j) in masked:
                        continue
                    if c >= 1 and weights is not None and weights[j][c - 1] == 0:
                        continue
                weight = weights[i][c - 1] if c >= 1 and j == i and weights is not None else 1.0
                denominator += weight * math.exp(scale * cosine(queries[i], column[j]))
        total += -(target - math.log(denominator))
    return total / batch


def passage_to_query_loss(
    columns: Sequence[torch.Tensor], scale: float, masked: Collection[tuple[int, int]] = ()
) -> float:
    """Mean over passages of ``-log softmax_j s(p_i, q_j)``, without the queries ``(i, j)`` in ``masked`` (j != i)."""
    queries, positives = columns[0], columns[1]
    batch = queries.shape[0]
    total = 0.0
    for i in range(batch):
        kept = [j for j in range(batch) if j == i or (i, j) not in masked]
        logits = {j: scale * cosine(positives[i], queries[j]) for j in kept}
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits.values())))
    return total / batch


def hand_table(rows: Sequence[tuple[Sequence[str | set[str]], set[str]]]) -> FalseNegativeTable:
    """A false-negative table from readable names: per row, its candidates' names and its query's relevant names.

    A candidate is one name (its text) or a set of names (text and document id); equal names are equal keys.
    """
    keys: dict[str, int] = {}

    def ids(names: str | set[str]) -> frozenset[int]:
        return frozenset(keys.setdefault(name, len(keys)) for name in ({names} if isinstance(names, str) else names))

    return FalseNegativeTable(
        [tuple(ids(candidate) for candidate in candidates) for candidates, _ in rows],
        [ids(relevant) for _, relevant in rows],
    )


def mask_from(triples: Collection[tuple[int, int, int]], batch: int, num_columns: int) -> torch.Tensor:
    """The loss's ``(batch, num_columns * batch)`` layout of a set of ``(i, c, j)`` triples."""
    mask = torch.zeros(batch, num_columns * batch, dtype=torch.bool)
    for i, c, j in triples:
        mask[i, c * batch + j] = True
    return mask


def guide_flagged(
    guide_columns: Sequence[torch.Tensor], margin: float, strategy: str = "absolute"
) -> tuple[set[tuple[int, int, int]], set[tuple[int, int]]]:
    """Candidates (and, passage to query, queries) the guide scores above its threshold, targets excluded.

    The threshold is the positive's guide similarity ``p`` minus ``margin`` (``"absolute"``) or minus ``|p| * margin``
    (``"relative"``: ``p * (1 - margin)`` as documented for ``loss.guide_margin_strategy`` when ``p >= 0``; for a
    negative ``p`` the threshold still lies below the positive, as in sentence-transformers' GISTEmbedLoss).

    Returns:
        ``(query triples (i, c, j), passage pairs (i, j))``.
    """
    queries, candidate_columns = guide_columns[0], guide_columns[1:]
    batch = queries.shape[0]
    query_flags = set()
    passage_flags = set()
    for i in range(batch):
        positive = cosine(queries[i], candidate_columns[0][i])
        threshold = positive - margin if strategy == "absolute" else positive - abs(positive) * margin
        for c, column in enumerate(candidate_columns):
            for j in range(batch):
                if (c, j) != (0, i) and cosine(queries[i], column[j]) > threshold:
                    query_flags.add((i, c, j))
        for j in range(batch):
            if j != i and cosine(candidate_columns[0][i], queries[j]) > threshold:
                passage_flags.add((i, j))
    return query_flags, passage_flags


def reference_mask(table: FalseNegativeTable, rows: Sequence[int], num_columns: int) -> torch.Tensor:
    """The false-negative mask by plain loops over the table's sets (see ``query_to_candidates_mask``)."""
    batch = len(rows)
    mask = torch.zeros(batch, num_columns * batch, dtype=torch.bool)
    for i, query_row in enumerate(rows):
        for j, row in enumerate(rows):
            for column, keys in enumerate(table.candidate_keys[row][:num_columns]):
                mask[i, column * batch + j] = bool(keys & table.relevant_keys[query_row]) and (i, column, j) != (
                    i,
                    0,
                    i,
                )
    return mask
