"""The largest amounts the contract allows, on real processes: two orders of
999,999,999,999.99 yuan in one minute, at 150 points a yuan, then one cancelled. Every
sum is past what the script's number formatting (14 digits) and the per-minute record's
first decimal(14, 2) could carry; each must arrive exact, and the worker keep going."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connectors.kafka import TouchpointProducer
from schemas.models import OrderStatusKind
from streams import reads
from streams.demo import wait_accounted

from ..unit.factories import app_order, app_user, envelope, line, order_status
from .conftest import Running

pytestmark = pytest.mark.integration
LARGEST = Decimal("999999999999.99")


def test_the_largest_amounts_are_carried_exactly(run_stack: Callable[..., Running]) -> None:
    stack = run_stack(workers=1, sink=True, points_per_yuan=150)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    person = [app_user("app_big")]
    orders = [
        app_order(
            envelope=envelope(identifiers=person, event_id=f"big-{n}", event_time=now),
            order_id=f"ORD-BIG-{n}",
            lines=[line("SKU-BIG", 1, str(LARGEST))],
            total_amount=LARGEST,
            discount_amount=Decimal("0.00"),
            paid_amount=LARGEST,
        )
        for n in (1, 2)
    ]
    cancel = order_status(
        envelope=envelope(identifiers=[], event_id="big-3", event_time=now),
        order_id="ORD-BIG-1",
        status=OrderStatusKind.cancelled,
    )
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix) as p:
        for record in [*orders, cancel]:
            p.send(record)
    stats = wait_accounted(stack.views, stack.endpoints, 3, timeout=90)
    assert (stats["processed"], stats["facts"], stats["clickhouse_rows"]) == (3, 3, 3)

    each = 999_999_999_999 * 150  # 149,999,999,999,850: 15 digits
    member = stack.views.member("app:app_big")
    assert member is not None and member["points"] == each  # 2 earned, 1 taken back
    facts = reads.query(
        stack.endpoints,
        "SELECT toString(sum(points)) FROM touchpoint_facts FINAL WHERE order_id LIKE 'ORD-BIG-%'",
    ).rows[0]
    assert int(facts[0]) == 2 * each
    ledger = reads.query(
        stack.endpoints,
        "SELECT rule, toString(sum(points)) FROM points_ledger FINAL GROUP BY rule ORDER BY rule",
    ).rows
    assert [(r[0], int(r[1])) for r in ledger] == [
        ("earn:app_order", 2 * each),
        ("reverse:cancelled", -each),
    ]
    minute = reads.query(
        stack.endpoints,
        "SELECT toString(sum(gmv)), sum(orders) FROM touchpoint_minute FINAL "
        "WHERE touchpoint_type = 'app_order'",
    ).rows[0]
    assert (Decimal(minute[0]), int(minute[1])) == (2 * LARGEST, 2)
