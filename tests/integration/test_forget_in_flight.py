"""`omni forget` while the person's fact is in the sink's open batch: the rows land after
the erasure, and the sink deletes them again before it commits the batch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from connectors.kafka import TouchpointProducer
from streams import reads

from ..harness import sink_stats
from ..unit.factories import envelope, phone, store_scan
from .conftest import Running

pytestmark = pytest.mark.integration


def _erase_while_in_flight(stack: Running, phone_number: str) -> None:
    """The person's fact is applied in Redis and on the facts topic, in the sink's open
    batch (not yet in ClickHouse), when `omni forget` erases them."""
    now = datetime.now(UTC)
    record = store_scan(
        envelope=envelope(
            [phone(phone_number)],
            event_time=now - timedelta(seconds=5),
            produced_time=now - timedelta(seconds=4),
            event_id=f"evt-{phone_number}",
        )
    )
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix) as p:
        p.send(record)
    deadline = time.monotonic() + 60
    while stack.views.member("oneid:O1") is None:
        assert time.monotonic() < deadline, "the worker never applied the event"
        time.sleep(0.2)
    assert sink_stats(stack)["batches"] == 0  # still in the sink's open batch
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "forget", f"phone:{phone_number}", "--yes",
         "--json"], capture_output=True, text=True, env=stack.env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["one_id"] == "O1"


def _rows_of_o1_once_a_batch_landed(stack: Running) -> tuple[int, int]:
    deadline = time.monotonic() + 60
    while sink_stats(stack)["batches"] == 0:  # the batch lands after the erasure
        assert time.monotonic() < deadline, "the sink never flushed"
        time.sleep(0.5)
    return (
        reads.scalar(stack.endpoints, "SELECT count() FROM touchpoint_facts WHERE one_id = 'O1'"),
        reads.scalar(stack.endpoints, "SELECT count() FROM points_ledger WHERE one_id = 'O1'"),
    )


def test_forget_leaves_no_fact_of_the_person_that_was_still_in_flight(
    run_stack: Callable[..., Running],
) -> None:
    # the sink holds a batch up to 12 s (OMNI_SINK_BATCH_SECONDS)
    stack = run_stack(workers=1, sink_batch_seconds=12.0)
    _erase_while_in_flight(stack, "13912345678")
    # before: (1, 1), the fact and its ledger entry, for good
    assert _rows_of_o1_once_a_batch_landed(stack) == (0, 0)
    assert sink_stats(stack)["rows_erased_late"] == 2


def test_a_sink_that_did_not_serve_the_erasure_watches_it_too(
    run_stack: Callable[..., Running],
) -> None:
    """The sink dies before its batch lands; the next one reads the batch again and
    learns of the erasure from ClickHouse's erasures, as any sink does of an erasure
    made without it (a ClickHouse server's, or another sink's)."""
    stack = run_stack(workers=1, sink_batch_seconds=12.0)
    _erase_while_in_flight(stack, "13912345679")
    assert stack.sink is not None
    stack.sink.kill()
    stack.start_sink()
    assert _rows_of_o1_once_a_batch_landed(stack) == (0, 0)
    assert sink_stats(stack)["rows_erased_late"] == 2
