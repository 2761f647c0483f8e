"""Real worker and sink processes over simulated traffic: every message is accounted for,
exactly as a plain-Python reference computed from the same messages says."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import fastavro
import pytest
from confluent_kafka import Consumer, Producer

from connectors.kafka import TouchpointProducer
from schemas.codec import SINGLE_OBJECT_MAGIC
from schemas.contract import contract
from schemas.models import AppOrder, OrderStatus
from schemas.topics import topic_for
from streams import reads
from streams.demo import publish, wait_accounted, wait_views
from streams.simulate import Simulation
from streams.wiring import dlq_topic, rules

from ..reference import expected_from
from .conftest import Running

pytestmark = pytest.mark.integration


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        got.extend(m for m in consumer.consume(500, 0.5) if m.error() is None)
    consumer.close()
    return got


def test_every_message_is_accounted_for_exactly(run_stack: Callable[..., Running]) -> None:
    stack = run_stack(workers=1)
    sim = Simulation(1500, seed=11, duplicate_share=0.05, malformed_share=0.04, keep_messages=True)
    endpoints = stack.endpoints
    with TouchpointProducer(endpoints.kafka_bootstrap, stack.settings.topic_prefix) as producer:
        publish(sim, producer, stack.settings.topic_prefix)
    assert sim.messages is not None
    expected = expected_from(sim.messages, rules(stack.settings))
    assert expected.malformed > 0 and expected.duplicates > 0

    stats = wait_accounted(stack.views, endpoints, expected.produced, timeout=120)

    assert stats["processed"] + stats["dead_lettered"] == expected.produced
    assert stats["dead_lettered"] == expected.malformed
    assert stats["duplicates"] == expected.duplicates
    assert stats["facts"] == expected.facts
    assert stats["clickhouse_rows"] == expected.facts
    assert stats["points_total"] == expected.points_total
    assert stats["members"] == expected.members
    assert {
        k.removeprefix("type:"): v for k, v in stats.items() if k.startswith("type:")
    } == expected.per_type
    # facts carry their OneID, and each event is in ClickHouse once
    assert reads.scalar(
        endpoints, "SELECT count() FROM touchpoint_facts FINAL WHERE one_id = ''"
    ) == (
        expected.per_type.get("order_status", 0) + expected.per_type.get("inventory_adjustment", 0)
    )
    assert (
        reads.scalar(endpoints, "SELECT uniqExact(event_id) FROM touchpoint_facts")
        == expected.facts
    )
    # every order status found its order; cancellations took back exactly the order's points
    configured = rules(stack.settings)
    granted: dict[str, int] = {}
    cancelled: set[str] = set()
    for msg in sim.messages:
        if isinstance(msg.record, AppOrder):
            granted[msg.record.order_id] = configured.points_for_payment(msg.record.paid_amount)
        elif isinstance(msg.record, OrderStatus) and msg.record.status == "cancelled":
            cancelled.add(msg.record.order_id)
    assert cancelled
    assert stats["orders"] == expected.per_type["app_order"]
    assert stats["orders_cancelled"] == len(cancelled)
    assert (
        stats["orders_cancelled"] + stats["orders_fulfilled"] == expected.per_type["order_status"]
    )
    assert stats["points_reversed"] == sum(granted[o] for o in cancelled)
    assert not list(stack.views.client.scan_iter(match=stack.views.prefix + "op:*"))
    # every malformed message is in the dead-letter topic, with its provenance
    letters = read_all(endpoints.kafka_bootstrap, dlq_topic(stack.settings), expected.malformed)
    assert len(letters) == expected.malformed
    for letter in letters:
        headers = dict(letter.headers())
        assert headers["omni.original.topic"].decode().startswith(stack.settings.topic_prefix)
        assert int(headers["omni.original.offset"]) >= 0
        assert headers["omni.error.reason"]


def test_a_plain_kafka_client_message_is_processed_like_ours(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=1, sink=False)
    sim = Simulation(30, seed=5, duplicate_share=0, malformed_share=0)
    records = [m.record for m in sim]
    info = contract().schema("inventory_adjustment")
    producer = Producer({"bootstrap.servers": stack.endpoints.kafka_bootstrap})
    for record in records:
        assert record is not None
        body = io.BytesIO()
        fastavro.schemaless_writer(body, info.parsed, record.to_avro())
        producer.produce(
            topic_for(stack.settings.topic_prefix, "inventory_adjustment"),
            value=SINGLE_OBJECT_MAGIC + info.fingerprint + body.getvalue(),
        )
    producer.flush(10)
    stats = wait_views(stack.views, 30, timeout=60)
    assert stats["processed"] == 30
    assert stats.get("dead_lettered", 0) == 0
    assert stats["type:inventory_adjustment"] == 30
