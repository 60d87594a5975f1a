"""The wall-time budget of `embedtune tune`."""

import pytest

from embedtune.config import ConfigError
from embedtune.tuning.budget import Budget, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("20m", 1200), ("1.5h", 5400), ("600", 600), (" 2 m ", 120)]
)
def test_parse_duration(text: str, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "ten minutes", "-5m", "5d"])
def test_parse_duration_refuses_anything_else(text: str):
    with pytest.raises(ConfigError, match="--budget"):
        parse_duration(text)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_trial_starts_only_when_one_like_the_finished_ones_ends_in_time():
    clock = Clock()
    budget = Budget(60, clock)
    assert budget.fits([])  # nothing finished yet: the first trial starts
    clock.now += 20
    assert budget.fits([10, 30, 20])  # median 20 s <= 40 s left
    clock.now += 25
    assert not budget.fits([10, 30, 20])  # 15 s left
    assert budget.fits([5, 30, 10])  # median 10 s
    assert budget.expected([5, 30, 10]) == 10 and budget.expected([]) is None
    clock.now += 20
    assert not budget.fits([]) and budget.left < 0
