"""An event is judged by when its message reached Kafka, not by when a worker takes it.

A batch applied to the views by one worker, which dies before its facts are out, is
redelivered to the partition's next owner: the views answer "replay" and the facts are
emitted again (streams/pipeline.py). Were the next owner to judge the event's age by its
own clock, an event at the edge of OMNI_MAX_EVENT_AGE_DAYS could turn into a dead letter
on the second delivery, and the facts of an event whose points were granted would never
reach ClickHouse. The same clock keeps a backlog left while the workers were down from
being aged out by the wait."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.dlq import read_letters
from connectors.kafka import DeadLetter
from schemas.codec import encode
from schemas.topics import input_topics, topic_for
from streams.demo import wait_views
from streams.pipeline import Inbound, TouchpointPipeline
from streams.settings import Settings
from streams.wiring import dlq_topic, rules, views

from ..harness import endpoints_of
from ..unit.factories import envelope, store_scan
from .conftest import Running

pytestmark = pytest.mark.integration


class Crash(Exception):
    """The worker process dying between the Redis apply and the facts flush."""


class Output:
    def __init__(self, crash: bool = False) -> None:
        self.crash = crash
        self.facts_out: list[dict[str, Any]] = []
        self.letters: list[DeadLetter] = []

    def dead_letters(self, letters: list[DeadLetter], now: datetime) -> None:
        self.letters.extend(letters)

    def facts(self, records_by_type: dict[str, list[dict[str, Any]]]) -> None:
        if self.crash:
            raise Crash("killed before the facts were delivered")
        self.facts_out.extend(records_by_type["touchpoint_fact"])


def test_a_batch_redelivered_past_the_age_limit_still_emits_its_facts(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    endpoints = endpoints_of(settings)
    t0 = datetime.now(UTC).replace(microsecond=0)
    # 30 s inside the age limit when the first worker takes it, a minute later 30 s past
    event_time = t0 - timedelta(days=settings.max_event_age_days) + timedelta(seconds=30)
    record = store_scan(envelope=envelope(event_time=event_time, event_id="evt-edge-1"))
    topic = topic_for(settings.topic_prefix, "store_scan")
    value = encode("store_scan", record.to_avro())
    batch = [Inbound(topic, 0, 0, b"S001", value, int(t0.timestamp() * 1000))]

    def worker(output: Output, clock: datetime) -> TouchpointPipeline:
        return TouchpointPipeline(
            input_topics(settings.topic_prefix), rules(settings), views(settings, endpoints),
            output, clock=lambda: clock,  # type: ignore[arg-type]
        )  # fmt: skip

    with pytest.raises(Crash):
        worker(Output(crash=True), t0).process(batch)
    applied = views(settings, endpoints).stats()
    assert (applied["processed"], applied["facts"]) == (1, 1)

    second = Output()
    report = worker(second, t0 + timedelta(seconds=60)).process(batch)
    assert dict(report.outcomes) == {"replay": 1}
    assert [f["event_id"] for f in second.facts_out] == ["evt-edge-1"]
    assert second.letters == []
    assert views(settings, endpoints).stats()["processed"] == 1


def test_a_worker_judges_age_by_the_kafka_timestamp_it_can_believe(
    run_stack: Callable[..., Running],
) -> None:
    """The age limit at one day. An event 30 hours old whose message reached Kafka 12
    hours ago (a backlog) is applied; the same age sent now is too old; so is one whose
    producer stamped the message with the event's own time, three years back (a timestamp
    more than a day old is not believed: streams/core/plan.py ``received_at``). A current
    event whose message says 1970 is applied all the same."""
    stack = run_stack(workers=1, sink=False, max_event_age_days=1)
    now = datetime.now(UTC)
    cases = [  # (event time, message timestamp, expected)
        (now - timedelta(hours=30), now - timedelta(hours=12), "processed"),
        (now - timedelta(hours=30), None, "too_old"),
        (now - timedelta(days=3 * 365), now - timedelta(days=3 * 365), "too_old"),
        (now - timedelta(seconds=5), datetime.fromtimestamp(0, UTC), "processed"),
    ]
    topic = topic_for(stack.settings.topic_prefix, "store_scan")
    producer = Producer({"bootstrap.servers": stack.endpoints.kafka_bootstrap})
    for n, (event_time, stamp, _) in enumerate(cases):
        record = store_scan(envelope=envelope(event_time=event_time, event_id=f"evt-{n}"))
        extra = {} if stamp is None else {"timestamp": int(stamp.timestamp() * 1000)}
        value = encode("store_scan", record.to_avro())
        producer.produce(topic, value=value, key=b"S001", partition=0, **extra)
    assert producer.flush(30) == 0
    stats = wait_views(stack.views, len(cases), timeout=60)
    assert (stats["processed"], stats["dead_lettered"]) == (2, 2)
    letters = read_letters(stack.endpoints.kafka_bootstrap, dlq_topic(stack.settings))
    got = {letter.original_offset: letter.reason for letter in letters}
    assert got == {n: want for n, (_, _, want) in enumerate(cases) if want != "processed"}
