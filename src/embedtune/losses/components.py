"""Running means of a loss's parts (each direction, regularisers, masked counts), read by the logging callback."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor


class LossComponents:
    """Accumulate named scalars over the steps between two log lines and hand out their means.

    A loss adds each part it computes (``add("infonce_q2p", value)``); the trainer's logging callback calls
    :meth:`pop_means` at each logging step. Tensors are detached and summed where they are (on the GPU during GPU
    training), so a training step never waits for the device; :meth:`pop_means` reads them all at once.

    Diagnostics that cost work of their own (alignment, uniformity, spread) are computed only when
    :attr:`measuring` is true: the logging callback sets it for the steps that will be logged, so such a part's mean
    is over the logged steps. It is true by default, for losses used outside the trainer.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor | float] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self.measuring = True

    def add(self, name: str, value: Tensor | float) -> None:
        """Add one observation of ``name`` (a scalar tensor, kept on its device, or a number)."""
        value = value.detach().float() if isinstance(value, Tensor) else float(value)
        self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._counts[name] += 1

    def pop_means(self) -> dict[str, float]:
        """Return ``name -> mean`` since the last call and start over; empty when nothing was added.

        This is the one place the parts are copied to the host (one copy per device).
        """
        values = dict.fromkeys(self._sums, 0.0)
        by_device: dict[torch.device, list[str]] = defaultdict(list)
        for name, total in self._sums.items():
            if isinstance(total, Tensor):
                by_device[total.device].append(name)
            else:
                values[name] = total
        for names in by_device.values():
            values.update(zip(names, torch.stack([self._sums[name] for name in names]).tolist(), strict=True))
        means = {name: values[name] / self._counts[name] for name in values}
        self._sums.clear()
        self._counts.clear()
        return means
