"""The sink, exactly once in effect: SIGKILLed between insert and commit (several times),
or with ClickHouse inserts failing for a while, every table ends with the counts and sums
of the reference — no duplicates, no gaps."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from streams.demo import wait_accounted, wait_views
from streams.simulate import Simulation
from streams.wiring import rules

from .. import harness
from ..harness import traffic, wait_ledger
from ..reference import expected_from
from .conftest import Running

pytestmark = pytest.mark.integration


def assert_tables_exact(stack: Running, sim: Simulation, stats: dict) -> None:
    expected = expected_from(sim.messages or [], rules(stack.settings))
    harness.assert_tables_exact(stack, sim.messages or [], expected.facts, stats)


def test_a_sink_killed_between_insert_and_commit_duplicates_nothing(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=1, sink=False, sink_batch_rows=250)
    sim = traffic(stack, 3000, seed=61)
    views = wait_views(stack.views, 3000, timeout=120)
    assert views["facts"] > 2000
    # three sinks in a row, each dying after its 2nd, 3rd, 1st batch: inserted, not committed
    for k in (2, 3, 1):
        doomed = stack.start_extra_sink(f"sink-kill{k}", OMNI_SINK_FAULTS=f"kill_after_insert={k}")
        deadline = time.monotonic() + 90
        while doomed.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        assert doomed.exit_code == -9, doomed.tail()
        assert "killed between insert and commit" in doomed.log_path.read_text()
    stack.start_sink()
    stats = wait_accounted(stack.views, stack.endpoints, 3000, timeout=120)
    wait_ledger(stack, stats)
    assert_tables_exact(stack, sim, stats)


def test_failing_inserts_pause_the_sink_and_lose_nothing(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=1, sink=False, sink_batch_rows=250)
    sink = stack.start_extra_sink("sink-failing", OMNI_SINK_FAULTS="fail_inserts_s=6")
    stack.use_sink(sink.wait_healthy(90))
    sim = traffic(stack, 2000, seed=62)
    stats = wait_accounted(stack.views, stack.endpoints, 2000, timeout=180)
    wait_ledger(stack, stats)
    log = sink.log_path.read_text()
    assert "inserts failing (injected)" in log and "retrying in" in log
    assert sink.alive  # paused and resumed, never died
    assert_tables_exact(stack, sim, stats)
