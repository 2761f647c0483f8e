"""Every kind of bad input, sent by a plain Kafka client between good messages: each bad
one ends in the dead-letter topic with its reason, every good one is processed, and the
worker stays up. And the producer side: `omni produce` sends exactly the good lines."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer

from connectors.dlq import read_letters
from schemas.codec import SINGLE_OBJECT_MAGIC, encode
from schemas.contract import contract
from schemas.jsonlines import to_json_line
from schemas.topics import topic_for
from streams.demo import wait_views
from streams.simulate import Simulation
from streams.wiring import dlq_topic

from .conftest import Running

pytestmark = pytest.mark.integration


def single_object(type_name: str, record: dict[str, Any]) -> bytes:
    """Avro single-object bytes for ``record`` without any validation (to craft bad ones)."""
    info = contract().schema(type_name)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, info.parsed, record)
    return SINGLE_OBJECT_MAGIC + info.fingerprint + body.getvalue()


def bad_messages(sim: Simulation) -> list[tuple[str, bytes, str]]:
    """(case, bytes, expected dead-letter reason), all for the store_scan topic."""
    base = sim.store_scan(sim.members[0]).to_avro()
    now = datetime.now(UTC)

    def variant(change: Callable[[dict[str, Any]], None]) -> bytes:
        record = json.loads(json.dumps(base, default=str))  # a deep copy
        record.update({k: base[k] for k in ("paid_amount",)})
        record["lines"] = [
            {**ln, "unit_price": orig["unit_price"]}
            for ln, orig in zip(record["lines"], base["lines"], strict=True)
        ]
        record["envelope"]["event_time"] = base["envelope"]["event_time"]
        record["envelope"]["produced_time"] = base["envelope"]["produced_time"]
        change(record)
        return single_object("store_scan", record)

    def ids(*identifiers: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        return lambda r: r["envelope"].__setitem__("identifiers", list(identifiers))

    good = single_object("store_scan", base)
    unknown_fp = SINGLE_OBJECT_MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + good[10:]
    # a string of invalid UTF-8 where the store id goes
    info = contract().schema("store_scan")
    utf8_body = io.BytesIO()
    fastavro.schemaless_writer(utf8_body, info.parsed, {**base, "store_id": "S\u0001XX"})
    non_utf8 = (
        SINGLE_OBJECT_MAGIC
        + info.fingerprint
        + utf8_body.getvalue().replace(b"S\x01XX", b"S\xff\xfeX")
    )
    click = sim.livestream_click(sim.members[1])
    return [
        ("truncated avro", good[: len(good) // 2], "truncated"),
        ("wrong magic byte", b"\x07" + good[1:], "bad_magic"),
        ("unknown fingerprint", unknown_fp, "unknown_fingerprint"),
        ("unknown schema id", b"\x00\x00\x00\x30\x39" + good[10:], "unknown_schema_id"),
        ("json instead of avro", json.dumps({"store_id": "S1"}).encode(), "bad_magic"),
        ("another type on this topic", encode("livestream_click", click.to_avro()), "wrong_topic"),
        (
            "negative quantity",
            variant(lambda r: r["lines"][0].__setitem__("quantity", -2)),
            "greater_than",
        ),
        (
            "negative amount",
            variant(lambda r: r.__setitem__("paid_amount", base["paid_amount"].copy_negate())),
            "greater_than_equal",
        ),
        (
            "a year in the future",
            variant(lambda r: r["envelope"].__setitem__("event_time", now + timedelta(days=365))),
            "in_future",
        ),
        (
            "ten years ago",
            variant(lambda r: r["envelope"].__setitem__("event_time", now - timedelta(days=3650))),
            "too_old",
        ),
        ("10 MB message", good + b"\x00" * 10_000_000, "too_large"),
        ("no identifiers", variant(ids()), "no_identifiers"),
        ("card 'null'", variant(ids({"kind": "member_card", "value": "null"})), "illegal_value"),
        (
            "unionid 'undefined'",
            variant(ids({"kind": "unionid", "value": "undefined"})),
            "illegal_value",
        ),
        ("app user '0'", variant(ids({"kind": "app_user", "value": "0"})), "illegal_value"),
        (
            "card 'anonymous'",
            variant(ids({"kind": "member_card", "value": "anonymous"})),
            "illegal_value",
        ),
        (
            "all-zero phone",
            variant(ids({"kind": "phone", "value": "00000000000"})),
            "illegal_value",
        ),
        ("openid without appid", variant(ids({"kind": "openid", "value": "o_123"})), "value_error"),
        ("non-UTF-8 string", non_utf8, "bad_utf8"),
    ]


def test_each_bad_message_is_dead_lettered_with_its_reason_and_the_rest_processed(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=1, sink=False)
    sim = Simulation(10, seed=2)
    cases = bad_messages(sim)
    topic = topic_for(stack.settings.topic_prefix, "store_scan")
    producer = Producer(
        {"bootstrap.servers": stack.endpoints.kafka_bootstrap, "message.max.bytes": 12_000_000}
    )
    sent: list[
        tuple[str, str]
    ] = []  # (case or "good", expected reason) in send order, one partition
    for case, value, reason in cases:
        good = sim.store_scan(sim.members[2])
        producer.produce(topic, value=encode("store_scan", good.to_avro()), key=b"k", partition=0)
        producer.produce(topic, value=value, key=b"k", partition=0)
        sent += [("good", ""), (case, reason)]
    # a key of a megabyte: the letter keeps its first KiB (whole, it would not fit)
    producer.produce(topic, value=b"not avro", key=b"K" * 1_010_000, partition=0)
    sent.append(("1 MB key", "bad_magic"))
    assert producer.flush(30) == 0
    stats = wait_views(stack.views, len(sent), timeout=90)
    assert stats["dead_lettered"] == len(cases) + 1
    assert stats["processed"] == len(cases)  # the good ones
    assert stats["type:store_scan"] == len(cases)

    letters = {
        letter.original_offset: letter
        for letter in read_letters(stack.endpoints.kafka_bootstrap, dlq_topic(stack.settings))
    }
    got = {
        offset: (letters[offset].reason if offset in letters else "processed")
        for offset in range(len(sent))
    }
    want = {offset: (reason or "processed") for offset, (_, reason) in enumerate(sent)}
    assert got == want
    big = next(letter for letter in letters.values() if letter.reason == "too_large")
    assert big.original_size == len(cases[10][1]) and len(big.value) == 64 * 1024
    assert big.partial and big.original_key_size is None
    keyed = letters[len(sent) - 1]
    assert (keyed.key, keyed.original_key_size) == (b"K" * 1024, 1_010_000)
    assert keyed.partial and keyed.original_size is None and keyed.value == b"not avro"
    for letter in letters.values():
        assert "13800138000" not in letter.detail and "00000000000" not in letter.detail
    assert all(w.alive for w in stack.workers)


def test_produce_cli_sends_exactly_the_good_lines(
    run_stack: Callable[..., Running], tmp_path: Path
) -> None:
    stack = run_stack(workers=1, sink=False)
    sim = Simulation(40, seed=4, duplicate_share=0, malformed_share=0, skus=2)
    good = [to_json_line(m.type_name, m.record) for m in sim if m.record is not None]
    first = json.loads(good[0])
    missing = dict(first)
    missing.pop("sku")
    wrong_type = {**first, "quantity": "many"}
    future = json.loads(good[1])
    future["envelope"]["event_time"] = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    bad = [
        json.dumps(missing),
        json.dumps(wrong_type),
        json.dumps({**first, "type": "teleport"}),
        json.dumps(future),
        "{not json",
    ]
    # refused by the configured blocklist (OMNI_IDENTIFIER_BLOCKLIST below), as a worker
    # would refuse it, not by the defaults
    blocked = json.loads(good[2])
    blocked["envelope"]["identifiers"] = [{"kind": "member_card", "value": "TEST-CARD-0001"}]
    bad.append(json.dumps(blocked))
    lines = good[:10] + bad[:3] + good[10:20] + bad[3:] + good[20:]
    source = tmp_path / "events.jsonl"
    source.write_bytes(
        ("\n".join(lines) + "\n").encode() + b'{"type": "store_scan", "store_id": "\xff"}\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", str(source)],
        capture_output=True, text=True, timeout=120,
        env={**stack.env, "OMNI_IDENTIFIER_BLOCKLIST": "TEST-CARD-0001"},
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    invalid_lines = sorted(
        int(x.split("line ")[1].split(":")[0]) for x in run.stderr.splitlines() if "invalid" in x
    )
    assert invalid_lines == [11, 12, 13, 24, 25, 26, len(lines) + 1]
    assert "illegal_value" in run.stderr
    assert "sku: Field required" in run.stderr
    assert "quantity: Input should be a valid integer" in run.stderr
    assert "unknown type 'teleport'" in run.stderr
    assert "envelope.event_time: in_future" in run.stderr
    assert "not UTF-8" in run.stderr
    assert f"sent {len(good)}" in run.stdout
    stats = wait_views(stack.views, len(good), timeout=60)
    assert stats["processed"] == len(good)
    assert stats.get("dead_lettered", 0) == 0
