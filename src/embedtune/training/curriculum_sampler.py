"""The batch sampler of a curriculum run: it yields the planned batches in order, the same every epoch.

:meth:`embedtune.training.curriculum.CurriculumPlan.configure` sets :class:`OrderedBatches` as the trainer's
``batch_sampler``; the plan (which rows, in which batches) is made in :mod:`embedtune.training.curriculum`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler


class OrderedBatches:
    """The trainer's ``batch_sampler`` setting for a curriculum: a callable building a :class:`OrderedBatchSampler`.

    sentence-transformers calls it as ``OrderedBatches(...)(dataset, batch_size=..., drop_last=...,
    valid_label_columns=..., generator=..., seed=...)``; it is a plain object (not a closure) so that the
    arguments stay picklable in checkpoints.

    Args:
        batch_sizes: Size of each batch, in order.
    """

    def __init__(self, batch_sizes: Sequence[int]) -> None:
        self.batch_sizes = list(batch_sizes)

    def __call__(self, dataset: Dataset, **kwargs: Any) -> OrderedBatchSampler:
        """Return the sampler over ``dataset``, which must be the plan's ordered dataset."""
        return OrderedBatchSampler(dataset, batch_sizes=self.batch_sizes, **kwargs)


class OrderedBatchSampler(DefaultBatchSampler):
    """Yield consecutive index ranges of the given sizes: the planned batches, in order, the same every epoch.

    Args:
        dataset: The ordered dataset (``sum(batch_sizes)`` rows).
        batch_size: The trainer's batch size (the planned batches are at most this long).
        drop_last: Ignored, like the trainer's other keyword arguments (``generator``, ``seed`` ...): the plan
            decides every batch and nothing is shuffled here.
        batch_sizes: Size of each batch, in order.

    Raises:
        ValueError: if the batches do not cover exactly the dataset's rows.
    """

    def __init__(
        self, dataset: Dataset, batch_size: int, drop_last: bool, *, batch_sizes: Sequence[int], **ignored: Any
    ) -> None:
        super().__init__(dataset, batch_size, drop_last)
        if sum(batch_sizes) != len(dataset):
            raise ValueError(f"the curriculum's batches cover {sum(batch_sizes)} rows, the dataset has {len(dataset)}")
        self.bounds = np.cumsum([0, *batch_sizes]).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        """Yield each batch's row indices."""
        for start, end in zip(self.bounds, self.bounds[1:], strict=False):
            yield list(range(start, end))

    def __len__(self) -> int:
        """Return the number of batches."""
        return len(self.bounds) - 1
