"""streams/gc_tuning.py: thresholds set, startup frozen, pauses observed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams import gc_tuning, metrics


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if gc_tuning._observe in gc.callbacks:
        gc.callbacks.remove(gc_tuning._observe)


def _pauses(generation: str) -> float:
    return metrics.GC_PAUSE_SECONDS.labels(generation)._sum.get()


def test_tune_freezes_startup_and_raises_the_threshold(restore_gc: None) -> None:
    gc_tuning.tune(50_000)
    assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_freeze_count() > 1000  # everything imported so far
    assert gc.callbacks.count(gc_tuning._observe) == 1


def test_pauses_are_observed_by_generation(restore_gc: None) -> None:
    gc_tuning.tune(50_000)
    before = _pauses("0"), _pauses("2")
    gc.collect(0)
    gc.collect(2)
    assert _pauses("0") > before[0] and _pauses("2") > before[1]


def test_zero_keeps_python_defaults(restore_gc: None) -> None:
    threshold = gc.get_threshold()
    gc_tuning.tune(0)
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
