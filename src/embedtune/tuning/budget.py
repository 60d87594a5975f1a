"""The wall-time budget of ``embedtune tune``: a study starts a trial only when it is expected to finish in time."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Sequence

from embedtune.config import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """Read ``"90s"``, ``"20m"``, ``"1.5h"`` or plain seconds (``"600"``) as seconds.

    Raises:
        ConfigError: ``--budget: ...`` when the text is not such a duration or is not positive.
    """
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"--budget: expected a positive duration like 90s, 20m or 1.5h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Budget:
    """Wall time left to a study in this process, and whether one more trial fits.

    Args:
        seconds: The budget, from now.
        clock: Seconds since an arbitrary origin (``time.monotonic``; tests pass a fake).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._started = clock()

    @property
    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self._clock() - self._started

    @property
    def left(self) -> float:
        """Seconds left (negative once spent)."""
        return self.seconds - self.elapsed

    def fits(self, durations: Sequence[float]) -> bool:
        """Whether a trial expected to last like those already finished ends within the budget.

        The expectation is the median duration of the finished trials (pruned ones included: a new trial may be
        pruned as well); with none finished yet, any trial fits while budget is left.

        Args:
            durations: Wall seconds of the study's finished trials.
        """
        expected = statistics.median(durations) if durations else 0.0
        return self.left > 0 and expected <= self.left

    def expected(self, durations: Sequence[float]) -> float | None:
        """Return the expected duration of the next trial in seconds, ``None`` before any trial finished."""
        return statistics.median(durations) if durations else None
