"""OneID on real processes: two workers stitching concurrently end with the reference
graph; the merge log reaches ClickHouse; `omni forget` erases a person everywhere; no
phone number is ever stored or logged in clear."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis

from connectors.kafka import TouchpointProducer
from schemas.models import type_name_of
from streams import reads
from streams.core.identity import parse_lookup
from streams.core.plan import plan_event
from streams.demo import publish, wait_accounted
from streams.simulate import Simulation
from streams.wiring import phone_key, rules

from ..reference import UnionFind
from .conftest import Running
from .test_identity_graph import redis_grouping

pytestmark = pytest.mark.integration


def reference_groups(sim: Simulation, stack: Running) -> set[frozenset[str]]:
    graph = UnionFind()
    configured, now = rules(stack.settings), datetime.now(UTC)
    assert sim.messages is not None
    for msg in sim.messages:
        if msg.record is None:
            continue
        graph.link(plan_event(type_name_of(msg.record), msg.record, configured, now).identity_keys)
    return graph.components()


def run_traffic(stack: Running, events: int, seed: int) -> tuple[Simulation, dict[str, int]]:
    sim = Simulation(events, seed=seed, duplicate_share=0.05, malformed_share=0.02,
                     keep_messages=True)  # fmt: skip
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix) as p:
        publish(sim, p, stack.settings.topic_prefix)
    return sim, wait_accounted(stack.views, stack.endpoints, events, timeout=180)


def everything_stored(stack: Running) -> str:
    """Every key and value under the stack's Redis prefix, every row of every ClickHouse
    table, every log line: as one text to search."""
    client = redis.Redis.from_url(stack.endpoints.redis_url, decode_responses=False)
    parts: list[str] = []
    for key in client.scan_iter(match=stack.views.prefix + "*", count=1000):
        kind = client.type(key).decode()
        value = {
            "string": lambda k: client.get(k),
            "hash": lambda k: client.hgetall(k),
            "set": lambda k: client.smembers(k),
            "zset": lambda k: client.zrange(k, 0, -1),
            "list": lambda k: client.lrange(k, 0, -1),
        }[kind](key)
        parts.append(f"{key!r} {value!r}")
    for (table,) in reads.query(stack.endpoints, "SHOW TABLES").rows:
        # every column as text (aggregate states too: their bytes are what is stored)
        rows = reads.query(stack.endpoints, f"SELECT toString(tuple(*)) FROM {table}").rows
        parts.append(repr(rows))
    for log in stack.logs.glob("*.log"):
        parts.append(log.read_text(errors="replace"))
    return "\n".join(parts)


def test_two_workers_converge_and_no_phone_is_kept_in_clear(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=2, topic_partitions=4)
    sim, stats = run_traffic(stack, 3000, seed=21)
    assert stats["merges"] >= 20  # the two workers had real stitching to do

    assert redis_grouping(stack.views) == reference_groups(sim, stack)
    assert stats.get("refusals", 0) == 0
    logged = reads.scalar(
        stack.endpoints, "SELECT count() FROM identity_events FINAL WHERE action = 'merge'"
    )
    assert logged == stats["merges"]

    # the logs, Redis and ClickHouse hold no phone number: not E.164, not national digits
    stored = everything_stored(stack)
    assert "phone:" in stored  # (hashed phones are there)
    phones = {m.phone for m in sim.members}
    leaked = sorted(p for p in phones if p in stored)
    assert leaked == [], f"{len(leaked)} phone numbers stored in clear"


def test_forget_erases_a_person_from_redis_and_clickhouse(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=1)
    sim, _ = run_traffic(stack, 1500, seed=5)
    # the member with the most absorbed OneIDs, found through one of their phones
    views = stack.views
    candidates = [views.member(f"oneid:O{n}") for n in range(1, 200)]
    person = max(
        (c for c in candidates if c and any(i.startswith("phone:") for i in c["identifiers"])),
        key=lambda c: (len(c["absorbed"]), c["events"]),
    )
    assert person["absorbed"], "no merged member to erase"
    key = phone_key(stack.settings)
    phone = next(
        m.phone
        for m in sim.members
        if parse_lookup(f"phone:{m.phone}", key) in person["identifiers"]
    )
    ids = [person["one_id"], *person["absorbed"]]
    in_list = ", ".join(f"'{i}'" for i in ids)
    facts_before = reads.scalar(
        stack.endpoints, f"SELECT count() FROM touchpoint_facts FINAL WHERE one_id IN ({in_list})"
    )
    assert facts_before > 0
    ledger = f"SELECT count() FROM points_ledger WHERE one_id IN ({in_list})"
    ledger_before = reads.scalar(stack.endpoints, ledger)
    assert ledger_before > 0
    lookup = f"phone:{phone}"
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "forget", lookup, "--yes", "--json"],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    erased = json.loads(done.stdout)
    assert "keys" not in erased and "phone:" not in done.stdout  # no identifier printed
    assert erased["one_id"] == person["one_id"]
    assert erased["absorbed"] == person["absorbed"]
    assert erased["points"] == person["points"]
    assert erased["facts_deleted"] == facts_before
    assert erased["ledger_deleted"] == ledger_before
    assert reads.scalar(stack.endpoints, ledger) == 0
    for key in [*person["identifiers"], *(f"oneid:{i}" for i in ids)]:
        assert views.member(key) is None, key
    assert (
        reads.scalar(
            stack.endpoints, f"SELECT count() FROM touchpoint_facts WHERE one_id IN ({in_list})"
        )
        == 0
    )
    assert (
        reads.scalar(
            stack.endpoints,
            f"SELECT count() FROM identity_events WHERE one_id IN ({in_list}) "
            f"OR other_one_id IN ({in_list})",
        )
        == 0
    )
    recorded = reads.query(stack.endpoints, "SELECT one_id, absorbed FROM erasures").rows
    assert recorded == [[person["one_id"], person["absorbed"]]]
    assert views.stats()["erasures"] == 1
