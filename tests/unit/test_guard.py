"""The invalid-share guard judges the last ``window`` messages in the order they came."""

from __future__ import annotations

import random

import pytest

from streams.core.guard import InvalidShareExceeded, InvalidShareGuard
from streams.settings import Settings


def stream(share: float, n: int, seed: int = 3) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < share for _ in range(n)]


def batches(flags: list[bool], size: int) -> list[list[bool]]:
    return [flags[i : i + size] for i in range(0, len(flags), size)]


@pytest.mark.parametrize("size", [100, 1000, 2000, 5000])
def test_a_mostly_invalid_stream_trips_it_whatever_the_batch_size(size: int) -> None:
    # the defaults: a window of 1,000 messages, batches of up to 2,000 (before: the
    # invalid flags of a batch were counted first, so a batch longer than the window
    # left only its valid tail in it, and 70 % invalid never tripped)
    settings = Settings()
    guard = InvalidShareGuard(settings.dlq_max_invalid_share, settings.dlq_guard_window)
    with pytest.raises(InvalidShareExceeded, match="messages were invalid"):
        for batch in batches(stream(0.7, 20_000), size):
            guard.check(batch)


@pytest.mark.parametrize("size", [100, 2000])
def test_a_tenth_invalid_never_trips_it(size: int) -> None:
    guard = InvalidShareGuard(0.5, 1000)
    for batch in batches(stream(0.1, 20_000), size):
        guard.check(batch)


def test_a_batch_that_trips_it_is_not_recorded() -> None:
    guard = InvalidShareGuard(0.5, 10, min_messages=4)
    guard.check([False] * 6)
    with pytest.raises(InvalidShareExceeded, match="7 of the last 10"):
        guard.check([True] * 7)
    guard.check([True] * 4)  # 4 of 10: the refused batch was not kept
    with pytest.raises(InvalidShareExceeded):
        guard.check([True] * 2)


def test_it_waits_for_a_fifth_of_its_window() -> None:
    guard = InvalidShareGuard(0.5, 100)
    guard.check([True] * 19)  # fewer than 20 seen: no verdict yet
    with pytest.raises(InvalidShareExceeded, match="20 of the last 20"):
        guard.check([True])
