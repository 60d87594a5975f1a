"""Which in-batch candidates are false negatives: texts or documents that are actually relevant to the query.

The trainer's batches hold text only, so the training dataset carries each row's index in its label column and a
:class:`FalseNegativeTable`, built from the same rows, knows every row's candidates and every query's relevant set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
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
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
            IndexError: if a row index is outside the table (on CUDA, a device-side assertion).
        """
        candidates, relevant, width = self._tensors(rows.device)  # (rows, C, K), (rows, M); -1 pads both
        index = rows.long()
        batch = index.size(0)
        batch_candidates = candidates[index, :num_columns]  # (batch, C', K)
        if batch_candidates.size(1) < num_columns:  # no row of the table has that many columns
            missing = num_columns - batch_candidates.size(1)
            batch_candidates = F.pad(batch_candidates, (0, 0, 0, missing), value=-1)
        # Membership of (query i, key) pairs, coded i * width + key and found by binary search: no host sync.
        queries = torch.arange(batch, device=rows.device)
        query_keys = relevant[index]  # (batch, M)
        wanted = torch.where(query_keys >= 0, queries[:, None] * width + query_keys, -1).flatten().sort().values
        asked = queries[:, None, None, None] * width + batch_candidates[None]  # (batch_i, batch_j, C', K)
        asked = torch.where(batch_candidates[None] >= 0, asked, -2)
        found = wanted[torch.searchsorted(wanted, asked).clamp_max(wanted.numel() - 1)] == asked
        mask = found.any(-1).permute(0, 2, 1).reshape(batch, num_columns * batch)  # [i, c * batch + j]
        mask[queries, queries] = False
        return mask

    def _tensors(self, device: torch.device) -> tuple[Tensor, Tensor, int]:
        """Return the table on ``device`` (built once per device): padded candidate and relevant keys, code width.

        The width exceeds every key, so ``i * width + key`` names one (query, key) pair.
        """
        if device not in self._on_device:
            columns = max((len(row) for row in self.candidate_keys), default=1)
            per_candidate = max((len(keys) for row in self.candidate_keys for keys in row), default=1)
            per_query = max((len(keys) for keys in self.relevant_keys), default=1)
            candidates = [
                [_padded(keys, per_candidate) for keys in row] + [[-1] * per_candidate] * (columns - len(row))
                for row in self.candidate_keys
            ]
            relevant = [_padded(keys, per_query) for keys in self.relevant_keys]
            largest = max((key for row in candidates for keys in row for key in keys), default=-1)
            largest = max([largest, *(max(keys) for keys in relevant)])
            self._on_device[device] = (
                torch.tensor(candidates, dtype=torch.long).view(len(self), columns, per_candidate).to(device),
                torch.tensor(relevant, dtype=torch.long).view(len(self), per_query).to(device),
                largest + 1,
            )
        return self._on_device[device]


def _padded(keys: frozenset[int], length: int) -> list[int]:
    return sorted(keys) + [-1] * (length - len(keys))


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
