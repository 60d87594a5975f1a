"""Batches of similar length that keep the no-duplicates guarantee: less padding, the same in-batch negatives rule.

Each column of a batch is padded to its longest text, so a batch mixing a 20-token and a 256-token passage pays for
256 twice. :class:`LengthGroupedBatchSampler` shuffles the rows, cuts the order into windows of
``WINDOW_BATCHES`` batches, sorts each window by length, fills batches in that order with sentence-transformers'
no-duplicates rule (a row sharing a text with the batch waits for a later one) and shuffles each run of
``WINDOW_BATCHES`` batches. Batches stay random in what they hold beyond length; across windows the order is random.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

WINDOW_BATCHES = 32
"""Batches per sorted window: larger groups lengths more tightly and makes batch order less random."""


class LengthGroupedBatchSampler(NoDuplicatesBatchSampler):
    """sentence-transformers' no-duplicates batch sampler with batches of rows of similar length.

    Args:
        dataset: The training dataset; every text column's length (in characters) is summed per row.
        batch_size: Rows per batch.
        drop_last: Drop the last incomplete batch of each pass.
        valid_label_columns: Columns that hold labels, not texts (left out of lengths and duplicate checks).
        generator: Random generator of the shuffles (reseeded with ``seed + epoch`` each epoch).
        seed: Seed of the shuffles.
        **kwargs: Passed to :class:`~sentence_transformers.base.sampler.NoDuplicatesBatchSampler`.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed, **kwargs)
        first = self.dataset[0] if len(self.dataset) else {}
        texts = [name for name in self.dataset.column_names if isinstance(first.get(name), str)]
        self.lengths = np.zeros(len(self.dataset), dtype=np.int64)
        for name in texts:
            self.lengths += np.fromiter((len(text) for text in self.dataset[name]), np.int64, len(self.dataset))

    def _iter_one_pass(
        self,
        get_sample_values: Callable[[int], Any],
        has_overlap: Callable[[Any, set], bool],
    ) -> Iterator[list[int]]:
        """Yield one pass of batches: shuffled windows, each sorted by length, filled without duplicates."""
        order = torch.randperm(len(self.dataset), generator=self.generator).numpy()
        window = WINDOW_BATCHES * self.batch_size
        sorted_windows = [
            rows[np.argsort(self.lengths[rows], kind="stable")]
            for rows in (order[start : start + window] for start in range(0, len(order), window))
        ]
        rows = np.concatenate(sorted_windows).tolist() if sorted_windows else []
        batches = list(self._fill(rows, get_sample_values, has_overlap))
        for start in range(0, len(batches), WINDOW_BATCHES):
            group = batches[start : start + WINDOW_BATCHES]
            for position in torch.randperm(len(group), generator=self.generator).tolist():
                yield group[position]

    def _fill(
        self, rows: list[int], get_sample_values: Callable[[int], Any], has_overlap: Callable[[Any, set], bool]
    ) -> Iterator[list[int]]:
        """Cut ``rows`` into batches in order; a row sharing a text with its batch waits for the next batches."""
        waiting: deque[int] = deque()  # deferred rows, tried first by each new batch
        position = 0
        while position < len(rows) or waiting:
            batch: list[int] = []
            values: set = set()
            for _ in range(len(waiting)):
                row = waiting.popleft()
                if len(batch) < self.batch_size and not has_overlap(row_values := get_sample_values(row), values):
                    batch.append(row)
                    values.update(row_values)
                else:
                    waiting.append(row)
            while len(batch) < self.batch_size and position < len(rows):
                row, position = rows[position], position + 1
                row_values = get_sample_values(row)
                if has_overlap(row_values, values):
                    waiting.append(row)
                    continue
                batch.append(row)
                values.update(row_values)
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch
