"""`omni dlq ls/show/replay` on real dead letters, and the invalid-share guard stopping a
worker fed by a misconfigured producer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from connectors.embedded import start_worker
from connectors.kafka import TouchpointProducer
from schemas.topics import topic_for
from streams.demo import wait_views
from streams.simulate import Simulation

from .conftest import Running

pytestmark = pytest.mark.integration


def omni(
    stack: Running, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        env={**stack.env, **(env or {})},
        timeout=120,
    )


def test_dead_letters_are_listed_shown_and_replayed_after_a_fix(
    run_stack: Callable[..., Running],
) -> None:
    # the workers accept events up to a day old; an import of older history is refused...
    stack = run_stack(workers=1, sink=False, max_event_age_days=1)
    sim = Simulation(
        200,
        seed=9,
        duplicate_share=0,
        malformed_share=0,
        start=datetime.now(UTC) - timedelta(days=3),
    )
    old = [m.record for m in sim][:5]
    now = Simulation(10, seed=10)  # another seed: other event ids
    recent = [now.livestream_click(m) for m in now.members[:5]]
    with TouchpointProducer(
        stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix
    ) as producer:
        for record in [*old, *recent]:
            producer.send(record)
    stats = wait_views(stack.views, 10, timeout=60)
    assert (stats["processed"], stats["dead_lettered"]) == (5, 5)

    listed = omni(stack, "dlq", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    summary = json.loads(listed.stdout)
    assert summary["total"] == 5
    assert summary["by_reason"] == [
        {
            "topic": topic_for(stack.settings.topic_prefix, "inventory_adjustment"),
            "reason": "too_old",
            "count": 5,
        }
    ]
    ref = summary["latest"][0]["ref"]
    shown = json.loads(omni(stack, "dlq", "show", ref, "--json").stdout)
    assert shown["reason"] == "too_old" and shown["field"] == "envelope.event_time"
    assert shown["decodes"] == "decodes now as inventory_adjustment"

    # ...until the operator widens the window; then the letters are replayed
    stack.workers[0].stop(30)
    widened = {**stack.env, "OMNI_MAX_EVENT_AGE_DAYS": "30"}
    stack.adopt(start_worker(widened, stack.logs, index=2, wait=90))
    replay = omni(stack, "dlq", "replay", "--reason", "too_old")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 5 dead letters" in replay.stdout
    stats = wait_views(stack.views, 15, timeout=60)
    assert (stats["processed"], stats["dead_lettered"]) == (10, 5)
    assert stats.get("type:inventory_adjustment") == 5, sorted(stats.items())


def test_a_flood_of_invalid_messages_stops_the_worker_with_a_clear_error(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=1, sink=False, dlq_guard_window=100, dlq_max_invalid_share=0.5)
    producer = Producer({"bootstrap.servers": stack.endpoints.kafka_bootstrap})
    topic = topic_for(stack.settings.topic_prefix, "app_order")
    for n in range(300):
        producer.produce(topic, value=b'{"order_id": "%d"}' % n)  # JSON where Avro belongs
    producer.flush(10)
    worker = stack.workers[0]
    deadline = time.monotonic() + 60
    while worker.alive and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.exit_code == 78
    log = worker.log_path.read_text()
    assert "a producer is probably misconfigured" in log
    assert "left unacknowledged" in log
    # the guard decides once it has seen a fifth of its window (20 messages): a smaller
    # first batch was dead-lettered as usual; the batch that tripped it was neither
    # counted nor acknowledged
    assert stack.views.stats().get("dead_lettered", 0) < 100 // 5
