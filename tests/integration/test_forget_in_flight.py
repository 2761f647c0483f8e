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


def test_forget_leaves_no_fact_of_the_person_that_was_still_in_flight(
    run_stack: Callable[..., Running],
) -> None:
    # the sink holds a batch up to 12 s (OMNI_SINK_BATCH_SECONDS): the person's fact is
    # applied in Redis and on the facts topic, not yet in ClickHouse, when they are erased
    stack = run_stack(workers=1, sink_batch_seconds=12.0)
    now = datetime.now(UTC)
    record = store_scan(
        envelope=envelope(
            [phone("13912345678")],
            event_time=now - timedelta(seconds=5),
            produced_time=now - timedelta(seconds=4),
            event_id="evt-forget-in-flight",
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
        [sys.executable, "-m", "streams.cli", "forget", "phone:13912345678", "--yes", "--json"],
        capture_output=True, text=True, env=stack.env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["one_id"] == "O1"
    deadline = time.monotonic() + 60
    while sink_stats(stack)["batches"] == 0:  # the batch lands after the erasure
        assert time.monotonic() < deadline, "the sink never flushed"
        time.sleep(0.5)
    left = reads.scalar(stack.endpoints, "SELECT count() FROM touchpoint_facts WHERE one_id = 'O1'")
    ledger = reads.scalar(stack.endpoints, "SELECT count() FROM points_ledger WHERE one_id = 'O1'")
    # before: (1, 1), the fact and its ledger entry, for good
    assert (left, ledger) == (0, 0), "rows of an erased person landed after `omni forget`"
    assert sink_stats(stack)["rows_erased_late"] == 2
