"""The sink, exactly once in effect: SIGKILLed between insert and commit (several times),
or with ClickHouse inserts failing for a while, every table ends with the counts and sums
of the reference — no duplicates, no gaps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.clickhouse import Warehouse
from schemas.codec import encode
from streams.demo import wait_accounted, wait_views
from streams.simulate import Simulation
from streams.sink import FactSink
from streams.wiring import facts_topic, rules

from .. import harness
from ..harness import endpoints_of, traffic, wait_ledger
from ..reference import expected_from
from .conftest import Running
from .test_sink_records import fact

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


def test_a_rebalance_while_inserts_wait_gives_the_batch_to_the_next_owner(
    make_settings: Callable[..., Any],
) -> None:
    """Two sinks in one group (one process: embedded ClickHouse has one owner) while
    inserts fail: the second one joining takes the first's partitions in the middle of its
    retries. The first gives its batch up uncommitted instead of holding the rebalance (or,
    as it did, dying of the batch emptied under it); once ClickHouse is back every record
    is in, once."""
    settings = make_settings(sink_batch_rows=1000, consumer_session_timeout_s=6)
    endpoints = endpoints_of(settings)
    warehouse = Warehouse.connect(settings.clickhouse_dsn)
    warehouse.migrate()
    warehouse.fail_inserts = True  # the adapter's drill: ClickHouse down
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap})
    for n in range(1, 41):
        producer.produce(
            facts_topic(settings),
            value=encode("touchpoint_fact", fact(n)),
            key=f"e{n}".encode(),
            partition=n % settings.topic_partitions,
        )
    assert producer.flush(30) == 0
    stop, errors = threading.Event(), []

    def run(sink: FactSink) -> threading.Thread:
        def target() -> None:
            try:
                sink.run(stop)
            except BaseException as exc:  # what would end a sink process
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    first, second = FactSink(settings, endpoints, warehouse), None
    threads = [run(first)]
    try:
        until(lambda: first.stats["insert_retries"] >= 2, 60, first.stats)
        second = FactSink(settings, endpoints, warehouse)  # joins the group
        threads.append(run(second))
        until(lambda: first.stats.get("batches_given_up") == 1 or errors, 60, first.stats)
        assert not errors, repr(errors)
        warehouse.fail_inserts = False  # ClickHouse is back
        count = "SELECT count() FROM touchpoint_facts FINAL"
        until(
            lambda: warehouse.query(count).rows[0][0] == 40,
            30,
            lambda: (
                first.stats,
                second.stats,
                first.pending,
                second.pending,
                first.ranges,
                second.ranges,
            ),
        )
        time.sleep(2)  # whatever would land twice lands by now
        assert warehouse.query(count).rows[0][0] == 40
        assert warehouse.query("SELECT count() FROM touchpoint_facts").rows[0][0] in (40, 80)
        assert not errors, repr(errors)
        assert all(t.is_alive() for t in threads)
        assert first.stats["batches_given_up"] == 1
        assert first.stats["rows_written"] + second.stats["rows_written"] >= 40
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        warehouse.close()


def until(done: Callable[[], object], timeout: float, what: object) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out: {what() if callable(what) else what}"
        time.sleep(0.1)
