"""The sink hands ClickHouse the records as they came off Kafka (an Avro container per
table): every table gets exactly the values the workers wrote; a record ClickHouse cannot
read, one in an earlier schema, one of a foreign type and one that is not Avro at all are
each decoded here, dead-lettered with their reason or inserted, and cost their batch
nothing else; so do rows ClickHouse refuses as they are."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.dlq import read_letters
from schemas.codec import encode, encode_body
from schemas.contract import contract
from streams import reads
from streams.wiring import dlq_topic, facts_topic

from ..harness import Running as Stack
from ..harness import run_stack as start_stack
from ..harness import sink_stats
from ..unit.factories import store_scan
from .conftest import Running

pytestmark = pytest.mark.integration
BASE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def cents(amount: Decimal) -> int:
    return int(amount * 100)


def provenance(n: int) -> dict[str, Any]:
    return {
        "event_time": BASE + timedelta(seconds=n, milliseconds=7),
        "processed_time": BASE + timedelta(minutes=5, milliseconds=n),
        "source_topic": "omni.store_scan", "source_partition": n % 4, "source_offset": 10**9 + n,
    }  # fmt: skip


def fact(n: int) -> dict[str, Any]:
    return {
        **provenance(n), "event_id": f"e{n}", "touchpoint_type": "app_order", "channel": "app",
        "store_id": "", "one_id": f"O{n}", "new_member": n % 2 == 1, "order_id": f"ORD-{n}",
        "campaign_id": "", "room_id": "R1", "quantity": n, "amount": Decimal(n) + Decimal("0.35"),
        "points": 3 * n, "outcome": "backordered" if n % 5 == 0 else "",
        "attribution": f"livestream:R{n}", "order_status": "refunded" if n % 4 == 0 else "",
    }  # fmt: skip


def records() -> dict[str, list[dict[str, Any]]]:
    return {
        "touchpoint_fact": [fact(n) for n in range(1, 41)],
        "identity_event": [
            {
                **provenance(n),
                "event_id": f"e{n}",
                "seq": 0,
                "action": "merge",
                "one_id": "O1",
                "other_one_id": f"O{n}",
                "reason": "",
                "identifiers_before": ["phone:x", "card:y"],
                "identifiers_other": [f"openid:{n}"],
                "points_moved": n,
            }
            for n in range(1, 6)
        ],
        "points_entry": [
            {
                **provenance(n),
                "event_id": f"e{n}",
                "rule": "earn:app_order",
                "one_id": f"O{n}",
                "points": -n if n % 3 == 0 else n,
            }
            for n in range(1, 21)
        ],
        "stock_movement": [
            {
                **provenance(n),
                "event_id": f"e{n}",
                "sku": "SKU-1",
                "location": "WH-EAST",
                "kind": "sale",
                "on_hand_delta": -1,
                "reserved_delta": 0,
                "on_hand": 100 - n,
                "reserved": 0,
                "version": n,
            }
            for n in range(1, 11)
        ],
        "minute_aggregate": [
            {
                "minute": BASE + timedelta(minutes=m),
                "channel": "app",
                "touchpoint_type": "app_order",
                "store_id": "",
                "events": 10 + m,
                "gmv": Decimal("1234567.89") + m,
                "orders": m,
                "claims": 0,
                "refunds": Decimal("0.01") * m,
                "processed_time": BASE,
            }
            for m in range(3)
        ],
    }


#: per table, SQL that shows each row as plain numbers and strings, and the same from a record
SHOWN: dict[str, tuple[str, Callable[[dict], list]]] = {
    "touchpoint_facts": (
        "SELECT event_id, toUnixTimestamp64Milli(event_time),"
        " toUnixTimestamp64Milli(processed_time), one_id, toUInt8(new_member), order_id,"
        " room_id, quantity, toInt64(amount * 100), points, source_partition, source_offset,"
        " outcome, attribution, order_status FROM touchpoint_facts",
        lambda r: [r["event_id"], ms(r["event_time"]), ms(r["processed_time"]), r["one_id"],
                   int(r["new_member"]), r["order_id"], r["room_id"], r["quantity"],
                   cents(r["amount"]), r["points"], r["source_partition"], r["source_offset"],
                   r["outcome"], r["attribution"], r["order_status"]],
    ),
    "identity_events": (
        "SELECT event_id, other_one_id, identifiers_before, identifiers_other, points_moved,"
        " toUnixTimestamp64Milli(event_time) FROM identity_events",
        lambda r: [r["event_id"], r["other_one_id"], r["identifiers_before"],
                   r["identifiers_other"], r["points_moved"], ms(r["event_time"])],
    ),
    "points_ledger": (
        "SELECT event_id, rule, one_id, points FROM points_ledger",
        lambda r: [r["event_id"], r["rule"], r["one_id"], r["points"]],
    ),
    "stock_movements": (
        "SELECT event_id, sku, location, kind, on_hand_delta, on_hand, version"
        " FROM stock_movements",
        lambda r: [r["event_id"], r["sku"], r["location"], r["kind"], r["on_hand_delta"],
                   r["on_hand"], r["version"]],
    ),
    "touchpoint_minute": (
        "SELECT toUnixTimestamp(minute), channel, events, toInt64(gmv * 100),"
        " toInt64(refunds * 100) FROM touchpoint_minute",
        lambda r: [int(r["minute"].timestamp()), r["channel"], r["events"], cents(r["gmv"]),
                   cents(r["refunds"])],
    ),
}  # fmt: skip
TABLE_OF = dict(
    zip(
        ("touchpoint_fact", "identity_event", "points_entry", "stock_movement", "minute_aggregate"),
        SHOWN,
        strict=True,
    )
)


def produce(stack: Running, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": stack.endpoints.kafka_bootstrap})
    for n, value in enumerate(values):
        producer.produce(facts_topic(stack.settings), value=value, key=b"k%d" % n, partition=0)
    assert producer.flush(30) == 0


def wait_taken(stack: Running, rows: int, dead: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = sink_stats(stack)
        if stats["rows_written"] >= rows and stats["dead_lettered"] >= dead:
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.3)


def shown(stack: Running, table: str) -> list[list]:
    sql, _ = SHOWN[table]
    return sorted(reads.query(stack.endpoints, sql).rows)


def expected(rows: list[dict[str, Any]], table: str) -> list[list]:
    return sorted(SHOWN[table][1](r) for r in rows)


def test_every_table_holds_the_values_as_written(run_stack: Callable[..., Running]) -> None:
    stack = run_stack(workers=0, sink=True)
    sent = records()
    produce(stack, [encode(t, r) for t, rs in sent.items() for r in rs])
    total = sum(len(rs) for rs in sent.values())
    stats = wait_taken(stack, total, 0)
    assert stats["rows_written"] == total and stats["dead_lettered"] == 0
    # ClickHouse read every table's records from Avro but the per-minute rows' (their
    # minute is a DateTime of whole seconds); none was refused
    assert stats["avro_refused"] == 0
    assert stats["rows_avro"] == total - len(sent["minute_aggregate"])
    for type_name, rows in sent.items():
        assert shown(stack, TABLE_OF[type_name]) == expected(rows, TABLE_OF[type_name])


def test_records_clickhouse_cannot_take_are_sorted_out_here(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=0, sink=True)
    good = [fact(n) for n in range(1, 31)]
    payloads = [encode("touchpoint_fact", r) for r in good]
    current = contract().schema("touchpoint_fact")
    v1 = next(
        i for i in contract().by_fingerprint.values()
        if i.type_name == "touchpoint_fact" and i.fingerprint != current.fingerprint
        and "outcome" not in {f["name"] for f in i.parsed["fields"]}
    )  # fmt: skip
    older = fact(31)
    bad = {
        "truncated": payloads[5][:-6],  # the header is fine, the body ends early
        "wrong_topic": encode("store_scan", store_scan().to_avro()),
        "bad_magic": b'{"event_id": "e99"}',
    }
    first = [
        *payloads[:10], bad["truncated"], *payloads[10:20], bad["wrong_topic"],
        bad["bad_magic"],
    ]  # fmt: skip
    produce(stack, first)
    stats = wait_taken(stack, 20, len(bad))
    # then, in a batch of its own, a record in the earlier schema among current ones
    second = [*payloads[20:25], b"\xc3\x01" + v1.fingerprint + encode_body(v1, older)]
    produce(stack, second)
    wait_taken(stack, 26, len(bad))
    produce(stack, payloads[25:])  # and current ones only
    values = first + second + payloads[25:]
    stats = wait_taken(stack, len(good) + 1, len(bad))
    assert stats["dead_lettered"] == len(bad) and stats["rows_written"] == len(good) + 1
    # ClickHouse refused the batch with the truncated record, which was then decoded here;
    # the batch with the earlier schema's record was decoded here from the start; the
    # last five went as Avro
    assert stats["avro_refused"] == 1
    assert len(payloads[25:]) <= stats["rows_avro"] < len(good)
    # the earlier schema's record with the fields added since at their defaults
    older.update(outcome="", attribution="")
    assert shown(stack, "touchpoint_facts") == expected([*good, older], "touchpoint_facts")
    letters = read_letters(stack.endpoints.kafka_bootstrap, dlq_topic(stack.settings))
    got = {letter.original_offset: letter.reason for letter in letters}
    want = {values.index(value): reason for reason, value in bad.items()}
    assert got == want


#: run before the sink starts, in a process of its own (an embedded warehouse has one
#: owner): the tables, and a constraint an operator added to the facts table
CONSTRAINED = """
import sys
from connectors.clickhouse import Warehouse
w = Warehouse.connect(sys.argv[1])
w.migrate()
w.client.command("ALTER TABLE touchpoint_facts ADD CONSTRAINT small CHECK quantity < 1000")
"""


def test_rows_clickhouse_refuses_are_dead_lettered_and_the_rest_inserted(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    subprocess.run(
        [sys.executable, "-c", CONSTRAINED, settings.clickhouse_dsn], check=True, timeout=120
    )
    started: list[Stack] = []
    try:
        stack = start_stack(settings, 0, True, started)
        sent = [fact(n) for n in range(1, 41)]
        refused = {6, 7, 32}  # by offset: facts 7, 8 and 33
        for i in refused:
            sent[i]["quantity"] = 5000
        produce(stack, [encode("touchpoint_fact", r) for r in sent])
        good = [r for i, r in enumerate(sent) if i not in refused]
        stats = wait_taken(stack, len(good), len(refused))
        assert stats["rows_written"] == len(good) and stats["dead_lettered"] == len(refused)
        assert stats["rows_refused"] == len(refused)
        assert shown(stack, "touchpoint_facts") == expected(good, "touchpoint_facts")
        letters = list(read_letters(stack.endpoints.kafka_bootstrap, dlq_topic(stack.settings)))
        assert sorted(letter.original_offset for letter in letters) == sorted(refused)
        assert {(x.reason, x.detail) for x in letters} == {
            ("warehouse_refused", "ClickHouse error 469 VIOLATED_CONSTRAINT")
        }
        # and the sink goes on with what comes next
        more = [fact(n) for n in range(41, 46)]
        produce(stack, [encode("touchpoint_fact", r) for r in more])
        stats = wait_taken(stack, len(good) + len(more), len(refused))
        assert stats["rows_written"] == len(good) + len(more)
        assert shown(stack, "touchpoint_facts") == expected(good + more, "touchpoint_facts")
        # the log names the refusal, never the values (ClickHouse's message quotes them)
        logged = (stack.logs / "sink.log").read_text("utf-8")
        assert "refused Avro into touchpoint_facts: error 469 VIOLATED_CONSTRAINT" in logged
        assert "quantity = 5000" not in logged
    finally:
        for running in started:
            running.stop()
