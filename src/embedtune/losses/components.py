"""Running means of a loss's parts (each direction, regularisers, masked counts), read by the logging callback."""

from __future__ import annotations

from collections import defaultdict

from torch import Tensor


class LossComponents:
    """Accumulate named scalars over the steps between two log lines and hand out their means.

    A loss adds each part it computes (``add("infonce_q2p", value)``); the trainer's logging callback calls
    :meth:`pop_means` at each logging step. Values are detached and moved to Python floats, so nothing keeps a graph
    alive.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value: Tensor | float) -> None:
        """Add one observation of ``name`` (a scalar tensor or a number)."""
        self._sums[name] += float(value.detach()) if isinstance(value, Tensor) else float(value)
        self._counts[name] += 1

    def pop_means(self) -> dict[str, float]:
        """Return ``name -> mean`` since the last call and start over; empty when nothing was added."""
        means = {name: self._sums[name] / self._counts[name] for name in self._sums}
        self._sums.clear()
        self._counts.clear()
        return means
