"""Real worker and sink processes over simulated traffic: every message is accounted for,
exactly as a plain-Python reference computed from the same messages says."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable

import fastavro
import pytest
from confluent_kafka import Consumer, Producer

from connectors.kafka import TouchpointProducer
from schemas.codec import SINGLE_OBJECT_MAGIC
from schemas.contract import contract
from schemas.models import AppOrder, OrderStatus, RedEnvelopeClaim
from schemas.topics import topic_for
from streams import reads
from streams.core.rules import parse_budgets
from streams.demo import publish, wait_accounted, wait_views
from streams.simulate import Simulation, campaign_budgets
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


def unique_records(sim: Simulation) -> list:
    """The valid records, each event once, in the order they were produced."""
    seen: set[str] = set()
    out = []
    for msg in sim.messages or []:
        if msg.record is not None and msg.record.envelope.event_id not in seen:
            seen.add(msg.record.envelope.event_id)
            out.append(msg.record)
    return out


def test_every_message_is_accounted_for_exactly(run_stack: Callable[..., Running]) -> None:
    stack = run_stack(workers=1, campaign_budgets=campaign_budgets(1500))
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
    # every order status found its order; cancellations took back the order's points,
    # refunds their share of them
    configured = rules(stack.settings)
    orders: dict[str, tuple[int, int]] = {}  # order -> (points, paid cents)
    reversed_points, statuses = 0, Counter[str]()
    claims = Counter[str]()
    for msg in unique_records(sim):
        if isinstance(msg, AppOrder):
            points = configured.points_for_payment(msg.paid_amount)
            orders[msg.order_id] = (points, int(msg.paid_amount * 100))
        elif isinstance(msg, RedEnvelopeClaim):
            claims[msg.campaign_id] += 1
        elif isinstance(msg, OrderStatus):
            statuses[msg.status.value] += 1
            points, paid = orders[msg.order_id]
            if msg.status == "cancelled":
                reversed_points += points
            elif msg.status == "refunded" and msg.refund_amount is not None:
                reversed_points += min(points, points * int(msg.refund_amount * 100) // paid)
    assert statuses["cancelled"] and statuses["refunded"]
    assert stats["orders"] == expected.per_type["app_order"]
    assert stats["orders_cancelled"] == statuses["cancelled"]
    assert stats["orders_fulfilled"] == statuses["picked_up"] + statuses["shipped"]
    assert stats["orders_refunded"] == statuses["refunded"]
    assert stats["points_reversed"] == reversed_points
    # red envelopes: CMP-1 ran out of envelopes, exactly at its budget
    budget = parse_budgets(stack.settings.campaign_budgets)["CMP-1"].claims
    cmp1 = {k.decode(): int(v) for k, v in stack.views.client.hgetall(
        stack.views.prefix + "c:CMP-1").items()}  # fmt: skip
    assert cmp1["claims"] == budget and cmp1["refused"] == claims["CMP-1"] - budget
    assert stats["points_total"] == (
        expected.points_total - stats["claims_refused"] * configured.red_envelope_bonus_points
    )
    # the ledger in ClickHouse adds up to the balances: earned minus taken back
    balance = stats["points_total"] - stats["points_reversed"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # its rows may trail the facts by a sink batch
        ledger = reads.scalar(endpoints, "SELECT sum(points) FROM points_ledger FINAL")
        if ledger == balance:
            break
        time.sleep(0.5)
    assert ledger == balance
    entries = reads.scalar(endpoints, "SELECT count() FROM points_ledger FINAL")
    assert entries > stats["orders"]
    # orders carry the touch they are attributed to, as the views decided. How many find
    # their touch depends on the order the worker reads the six topics in (an order read
    # before its member's click has nothing to be attributed to), so the count may be 0
    # here; the attribution rules themselves: tests/integration/test_orders.py
    attributed = reads.scalar(
        endpoints, "SELECT count() FROM touchpoint_facts FINAL WHERE attribution != ''"
    )
    assert attributed == stats.get("orders_attributed", 0)
    refused_facts = reads.scalar(
        endpoints,
        "SELECT count() FROM touchpoint_facts FINAL WHERE outcome = 'claim_refused' AND points = 0",
    )
    assert refused_facts == stats["claims_refused"]
    # an order-status fact names the status it reports; no other fact names one
    misnamed = reads.scalar(
        endpoints,
        "SELECT countIf((touchpoint_type = 'order_status') != (order_status != ''))"
        " FROM touchpoint_facts FINAL",
    )
    assert misnamed == 0
    named = reads.scalar(
        endpoints, "SELECT count() FROM touchpoint_facts FINAL WHERE order_status = 'cancelled'"
    )
    assert named > 0
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
