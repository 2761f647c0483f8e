"""What the per-minute aggregates and the stock movements in ClickHouse must hold after a
run, whatever crashed on the way: compared with the pure core's reference and with the
Redis views. Each check returns the differences it found (empty: exact)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from schemas.models import type_name_of
from streams import reads
from streams.core.plan import plan_event
from streams.simulate import SimMessage
from streams.wiring import rules

Bucket = tuple[int, str, str, str]  # minute (epoch s), channel, touchpoint type, store


def _distinct(messages: Sequence[SimMessage]) -> list:
    seen: set[str] = set()
    out = []
    for msg in messages:
        if msg.record is not None and msg.record.envelope.event_id not in seen:
            seen.add(msg.record.envelope.event_id)
            out.append(msg.record)
    return out


def expected_minutes(stack: Any, messages: Sequence[SimMessage]) -> dict[Bucket, dict]:
    """Events, orders, GMV and refunds per bucket from the distinct events through the pure
    core; claims awarded and distinct members from the facts (which claims a budget refuses
    depends on arrival order)."""
    now = datetime.now(UTC)
    configured = rules(stack.settings)
    out: dict[Bucket, dict] = defaultdict(
        lambda: {"events": 0, "orders": 0, "gmv": Decimal(0), "refunds": Decimal(0),
                 "claims": 0, "members": 0}
    )  # fmt: skip
    for record in _distinct(messages):
        plan = plan_event(type_name_of(record), record, configured, now)
        minute = int(plan.event_time.timestamp()) // 60 * 60
        row = out[(minute, plan.channel, plan.touchpoint_type, plan.store_id)]
        row["events"] += 1
        if plan.purchase:
            row["orders"] += 1
            row["gmv"] += plan.amount
        if plan.order_status == "refunded":
            row["refunds"] += plan.amount
    facts = reads.query(
        stack.endpoints,
        "SELECT toUnixTimestamp(toStartOfMinute(toDateTime(event_time, 'UTC'))), channel, "
        "touchpoint_type, store_id, countIf(touchpoint_type = 'red_envelope_claim' AND "
        "outcome != 'claim_refused'), uniqExactIf(one_id, one_id != '') "
        "FROM touchpoint_facts FINAL GROUP BY 1, 2, 3, 4",
    ).rows
    for minute, channel, kind, store, claims, members in facts:
        row = out[(int(minute), channel, kind, store)]
        row["claims"], row["members"] = int(claims), int(members)
    return dict(out)


def live_minutes(stack: Any) -> dict[Bucket, dict]:
    rows = reads.query(
        stack.endpoints,
        "SELECT toUnixTimestamp(minute), channel, touchpoint_type, store_id, events, orders, "
        "gmv, refunds, claims, members FROM touchpoint_minute_live",
    ).rows
    return {
        (int(r[0]), r[1], r[2], r[3]): {
            "events": int(r[4]),
            "orders": int(r[5]),
            "gmv": Decimal(str(r[6])),
            "refunds": Decimal(str(r[7])),
            "claims": int(r[8]),
            "members": int(r[9]),
        }
        for r in rows
    }


def minute_mismatches(stack: Any, messages: Sequence[SimMessage], timeout: float = 60) -> list[str]:
    """Buckets whose ClickHouse row differs from the reference (waiting up to ``timeout``
    for the sink's last batch)."""

    def diff() -> list[str]:
        want, got = expected_minutes(stack, messages), live_minutes(stack)
        return [
            f"{b}: want {want.get(b)} got {got.get(b)}"
            for b in sorted(set(want) | set(got))
            if want.get(b) != got.get(b)
        ]

    return _settled(diff, timeout)


def stock_mismatches(stack: Any, timeout: float = 60) -> list[str]:
    """Stock keys whose movements in ClickHouse do not replay to the Redis view: the
    highest version's state, the sum of the changes, and one row per version (no gap, no
    duplicate)."""
    views = stack.views
    client = views.client

    def diff() -> list[str]:
        redis_stock = {}
        for key in client.scan_iter(match=views.prefix + "s:*", count=1000):
            h = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
            if h.get("v", 0) > 0:
                name = key.decode().removeprefix(views.prefix + "s:")
                redis_stock[name] = (h.get("on_hand", 0), h.get("reserved", 0), h["v"])
        rows = reads.query(
            stack.endpoints,
            "SELECT sku, location, argMax(on_hand, version), argMax(reserved, version), "
            "max(version), count(), sum(on_hand_delta), sum(reserved_delta) "
            "FROM stock_movements FINAL GROUP BY sku, location",
        ).rows
        problems = []
        seen = set()
        for sku, loc, on_hand, reserved, top, n, d_on, d_res in rows:
            name = f"{sku}@{loc}"
            seen.add(name)
            state = (int(on_hand), int(reserved), int(top))
            if redis_stock.get(name) != state:
                problems.append(f"{name}: redis {redis_stock.get(name)} clickhouse {state}")
            if int(n) != int(top):
                problems.append(f"{name}: {n} rows for versions 1..{top}")
            if (int(d_on), int(d_res)) != state[:2]:
                problems.append(f"{name}: changes sum to {(d_on, d_res)}, state {state[:2]}")
        problems += [f"{name}: no movements in ClickHouse" for name in set(redis_stock) - seen]
        return problems

    return _settled(diff, timeout)


def _settled(diff: Callable[[], list[str]], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = diff()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def count_kinds(stack: Any) -> Counter[str]:
    rows = reads.query(
        stack.endpoints, "SELECT kind, count() FROM stock_movements FINAL GROUP BY kind"
    ).rows
    return Counter({k: int(n) for k, n in rows})
