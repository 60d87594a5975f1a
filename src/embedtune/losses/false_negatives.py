"""Which in-batch candidates are false negatives: texts or documents that are actually relevant to the query.

The trainer's batches hold text only, so the training dataset carries each row's index in its label column and a
:class:`FalseNegativeTable`, built from the same rows, knows every row's candidates and every query's relevant set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

FLOAT32_EXACT_INTEGERS = 2**24
"""Row indices travel in the float32 label tensor, which holds every integer exactly only up to 2**24."""


@dataclass(frozen=True)
class FalseNegativeTable:
    """Candidate identities per training row and relevant identities per row's query.

    An identity is an integer key: one per distinct text, and one per distinct document id when the data has ids
    (BEIR qrels), so a candidate matches a query's positives by text *or* by document id.

    Attributes:
        candidate_keys: Row -> one tuple of keys per candidate column ``[positive, negative_1, ..., negative_n]``.
        relevant_keys: Row -> keys of everything relevant to the row's query (all positives of every record with
            the same normalised query text, and their document ids).
    """

    candidate_keys: Sequence[tuple[frozenset[int], ...]]
    relevant_keys: Sequence[frozenset[int]]

    def __post_init__(self) -> None:
        if len(self.candidate_keys) != len(self.relevant_keys):
            raise ValueError("candidate_keys and relevant_keys must have one entry per row")
        if len(self.candidate_keys) > FLOAT32_EXACT_INTEGERS:
            raise ValueError(f"at most {FLOAT32_EXACT_INTEGERS} training rows are supported, got {len(self)}")

    def __len__(self) -> int:
        """Return the number of training rows."""
        return len(self.candidate_keys)

    def query_to_candidates_mask(self, rows: Tensor, num_columns: int) -> Tensor:
        """Mark, for each query of the batch, the candidates relevant to it, except its own positive.

        Args:
            rows: ``(batch,)`` dataset row indices of the batch (any numeric dtype holding integers).
            num_columns: Candidate columns per row, ``1 + n`` (positive and n hard negatives).

        Returns:
            ``(batch, num_columns * batch)`` bool, column-major like the loss's candidates: entry
            ``[i, c * batch + j]`` is True when row j's candidate c is relevant to row i's
            query; ``[i, i]`` (the target) is always False.

        Raises:
            IndexError: if a row index is outside the table.
        """
        indices = [int(row) for row in rows.tolist()]
        batch = len(indices)
        holders: dict[int, list[int]] = defaultdict(list)  # key -> candidate positions holding it
        for j, row in enumerate(indices):
            for column, keys in enumerate(self.candidate_keys[row][:num_columns]):
                for key in keys:
                    holders[key].append(column * batch + j)
        mask = torch.zeros(batch, num_columns * batch, dtype=torch.bool)
        for i, row in enumerate(indices):
            positions = [position for key in self.relevant_keys[row] for position in holders.get(key, ())]
            mask[i, positions] = True
            mask[i, i] = False
        return mask.to(rows.device)


def passage_to_query_mask(query_mask: Tensor) -> Tensor:
    """Derive the passage-to-query mask from the query-to-candidates mask.

    Passage i's candidates in the symmetric term are the batch's queries. Query j is a false negative for passage i
    when passage i is relevant to query j (e.g. two rows of one query with different positives).

    Args:
        query_mask: ``(batch, (1 + n) * batch)`` mask from :meth:`FalseNegativeTable.query_to_candidates_mask`.

    Returns:
        ``(batch, batch)`` bool; the diagonal (each passage's own query) is False.
    """
    batch = query_mask.size(0)
    return query_mask[:, :batch].T.clone()
