"""`omni rebuild`: the Redis views built again from the input topics equal what the
workers had built, the workers resume on top of them without applying anything twice,
--from applies exactly the events since then, the rebuild refuses to race running
workers or to bring back an erased person, and on a stack `omni up` started,
--pause-workers pauses its workers for the rebuild and resumes them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors import stack as omni_stack
from connectors.embedded import ManagedProcess
from connectors.kafka import TouchpointProducer
from connectors.redis_views import RedisViews
from schemas.models import FulfilmentMode, OrderStatusKind, type_name_of
from schemas.topics import input_topics, topic_for
from streams import metrics, reads
from streams import rebuild as rebuilding
from streams.core.plan import plan_event
from streams.demo import wait_views
from streams.endpoints import Endpoints, resolve, stack_file
from streams.pipeline import Inbound, TouchpointPipeline
from streams.rebuild import DiscardOutput
from streams.settings import Settings
from streams.wiring import rules, views

from ..unit.factories import (
    app_order,
    app_user,
    card,
    envelope,
    inventory_adjustment,
    line,
    livestream_click,
    openid,
    order_status,
    phone,
    red_envelope_claim,
    store_scan,
    unionid,
)
from .conftest import Running

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SKUS = ("SKU-1", "SKU-2", "SKU-3")
LOCATIONS = ("S001", "S002", "S003", "WH-EAST", "WH-NORTH")


# -- traffic ----------------------------------------------------------------------------------


class Traffic:
    """Records with unique event ids and event times in the last hour."""

    def __init__(self, stack: Running) -> None:
        self.stack = stack
        self.n = 0
        self.base = datetime.now(UTC) - timedelta(hours=1)
        self.sent = 0  # messages on the input topics (every one counts in processed+dead)

    def env(self, identifiers: list, minutes: float, event_id: str | None = None) -> Any:
        self.n += 1
        return envelope(
            identifiers=identifiers,
            event_id=event_id or f"ev-{self.n:05d}",
            event_time=self.base + timedelta(minutes=minutes, seconds=self.n),
            produced_time=self.base + timedelta(minutes=minutes, seconds=self.n),
        )

    def send(self, records: list, raw: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
        prefix = self.stack.settings.topic_prefix
        with TouchpointProducer(self.stack.endpoints.kafka_bootstrap, prefix) as producer:
            for record in records:
                producer.send(record)
            for type_name, value in raw:
                producer.send_raw(topic_for(prefix, type_name), value, b"bad")
        self.sent += len(records) + len(raw)

    def wait(self) -> dict[str, int]:
        """Until the views account for every message sent so far."""
        return wait_views(self.stack.views, self.sent, timeout=60)


def person(i: int) -> dict[str, Any]:
    """Members 0-6 hold a card and a phone; 7-9 only a mini-program openid."""
    if i < 7:
        return {"card": card(f"C{i:05d}"), "phone": phone(f"1390000{i:04d}")}
    return {"openid": openid(f"o_{i:05d}", app_id="wx-mini-01")}


def scan(t: Traffic, ids: list, minutes: float, store: str, paid: str, **kw: Any) -> Any:
    return store_scan(
        envelope=t.env(ids, minutes, kw.pop("event_id", None)),
        store_id=store,
        lines=[line(kw.pop("sku", "SKU-1"), 1, paid)],
        paid_amount=Decimal(paid),
        **kw,
    )


def stock_in(t: Traffic, sku: str, location: str, quantity: int, minutes: float) -> Any:
    return inventory_adjustment(
        envelope=t.env([], minutes), sku=sku, location_id=location, quantity=quantity
    )


def first_traffic(t: Traffic) -> list[Any]:
    """Phases whose outcome does not depend on the order partitions are read in, each
    applied before the next: stock, enrolment (one store: one partition), orders,
    everyday traffic with merges, re-sent events and malformed messages, statuses."""
    people = [person(i) for i in range(10)]
    # 1. stock everywhere; every member's first event, in one partition
    t.send([stock_in(t, sku, loc, 500, 0) for sku in SKUS for loc in LOCATIONS])
    t.wait()
    t.send([scan(t, list(p.values()), 1, "S001", f"{10 + i}.00") for i, p in enumerate(people)])
    t.wait()
    # 2. app orders (pick-up at S002, delivery from the nearest warehouse)
    orders = []
    for i in range(7):
        mode = FulfilmentMode.pickup if i % 2 else FulfilmentMode.delivery
        fulfilment = {"mode": mode, "store_id": "S002"} if i % 2 else {"mode": mode}
        if mode == FulfilmentMode.delivery:
            fulfilment["latitude"], fulfilment["longitude"] = 31.0, 121.0
        orders.append(
            app_order(
                envelope=t.env([people[i]["phone"], app_user(f"app-{i}")], 10),
                order_id=f"ORD-{i}",
                lines=[line(SKUS[i % 3], 2, "30.00"), line(SKUS[(i + 1) % 3], 1, "15.50")],
                total_amount=Decimal("75.50"),
                discount_amount=Decimal("0"),
                paid_amount=Decimal("75.50"),
                fulfilment=fulfilment,
            )
        )
    t.send(orders)
    t.wait()
    # 3. everyday traffic over every store, two merges, a claim, re-sends, malformed
    everyday = []
    for k in range(40):
        p = people[k % 10]
        ident = p["phone"] if k % 2 and "phone" in p else next(iter(p.values()))
        everyday.append(
            scan(t, [ident], 20, ("S001", "S002", "S003")[k % 3], f"{5 + k}.00", sku=SKUS[k % 3])
        )
    everyday.append(scan(t, [people[0]["phone"], people[7]["openid"]], 21, "S003", "8.00"))
    everyday.append(scan(t, [people[8]["openid"], people[1]["card"]], 21, "S002", "9.00"))
    everyday.append(red_envelope_claim(envelope=t.env([people[2]["phone"], unionid("u-2")], 22)))
    t.send(everyday + everyday[:5], raw=[("store_scan", b"\x00garbage"), ("app_order", b"x")])
    t.wait()
    # 4. order statuses
    statuses = [
        order_status(
            envelope=t.env([], 30),
            order_id=f"ORD-{i}",
            status=OrderStatusKind.cancelled if i % 3 == 0 else OrderStatusKind.picked_up,
            store_id="S002",
        )
        for i in range(7)
    ]
    t.send(statuses)
    t.wait()
    return people


# -- what the views hold ----------------------------------------------------------------------


def snapshot(stack: Running) -> dict[str, Any]:
    """Every member as `omni member` shows it (but the recent-points list, whose order
    follows arrival order), every identity link, order, stock figure and counter."""
    views = stack.views
    client, p = views.client, views.prefix

    def hashes(pattern: str) -> dict[str, dict[str, str]]:
        return {
            key.decode().removeprefix(p): {
                k.decode(): v.decode() for k, v in client.hgetall(key).items()
            }
            for key in client.scan_iter(match=p + pattern, count=1000)
        }

    members = {}
    for key, fields in hashes("m:*").items():
        if "into" in fields:
            members[key] = fields
            continue
        shown = views.member("oneid:" + key.removeprefix("m:"))
        assert shown is not None
        shown.pop("recent_points")
        shown.pop("rfm")
        members[key] = {**shown, "raw": fields}
    links = {
        key.decode().removeprefix(p): client.get(key).decode()
        for key in client.scan_iter(match=p + "i:*", count=1000)
    }
    return {
        "members": members,
        "links": links,
        "orders": hashes("o:*"),
        "stock": hashes("s:*"),
        "campaigns": hashes("c:*"),
        "stats": {k.decode(): int(v) for k, v in client.hgetall(p + "stats").items()},
        "offsets": {k.decode(): int(v) for k, v in client.hgetall(p + "offsets").items()},
        "review": views.review_queue(),
    }


def wipe_prefix(stack: Running) -> int:
    """Redis lost: every key of the tenant gone."""
    client = stack.views.client
    keys = list(client.scan_iter(match=stack.views.prefix + "*", count=1000))
    return client.delete(*keys) if keys else 0


def record_workers(stack: Running) -> None:
    """Record the workers in the stack file as `omni up` does: the embedded broker does
    not list consumer-group members, so that record is how a rebuild sees them."""
    path = stack_file(stack.settings)
    record = json.loads(path.read_text())
    record["components"] = {w.name: w.record() for w in stack.workers}
    path.write_text(json.dumps(record))


def stop_workers(stack: Running) -> None:
    for worker in stack.workers:
        worker.stop(30)
    deadline = time.monotonic() + 60
    while rebuilding.workers_consuming(stack.settings, stack.endpoints) is not None:
        assert time.monotonic() < deadline, "the workers' group never emptied"
        time.sleep(0.3)


def omni(stack: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, **stack.env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def said(done: subprocess.CompletedProcess[str]) -> str:
    """stderr with the console's line wrapping undone."""
    return " ".join(done.stderr.split())


def rebuild(stack: Running, *args: str) -> dict[str, Any]:
    done = omni(stack, "rebuild", "--yes", "--json", *args)
    assert done.returncode == 0, done.stderr
    assert "replaying" in done.stderr  # the progress bar
    return json.loads(done.stdout)


def worker_outcomes(stack: Running) -> dict[str, float]:
    """omni_events_total by outcome, summed over the running workers."""
    samples = [s for worker in stack.workers for s in metrics.scrape(worker.port)]
    return metrics.by_label(samples, "omni_events_total", "outcome")


def wait_outcomes(stack: Running, outcome: str, count: int) -> dict[str, float]:
    """worker_outcomes once ``outcome`` reaches ``count``. A worker writes Redis first and
    counts the batch after it has published the facts, so the views can show an event a
    moment before /metrics does."""
    deadline = time.monotonic() + 60
    while (totals := worker_outcomes(stack)).get(outcome, 0) < count:
        assert time.monotonic() < deadline, totals
        time.sleep(0.2)
    return totals


def points_of(stack: Running, records: list) -> int:
    now = datetime.now(UTC)
    return sum(plan_event(type_name_of(r), r, rules(stack.settings), now).points for r in records)


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture
def stack(run_stack: Any) -> Iterator[Running]:
    running = run_stack(workers=1)
    record_workers(running)
    yield running


def test_rebuild_reproduces_the_views_and_workers_resume_without_double_counting(
    stack: Running,
) -> None:
    t = Traffic(stack)
    people = first_traffic(t)
    before = snapshot(stack)
    assert before["stats"]["merges"] == 2 and before["stats"]["duplicates"] == 5
    assert before["stats"]["dead_lettered"] == 2 and before["stats"]["orders_cancelled"] == 3

    stop_workers(stack)
    # arrives while the workers are stopped: the rebuild applies it, and the worker reads
    # it again after its restart (its committed offsets are behind it)
    late = [scan(t, [people[i]["card"]], 40, "S003", "21.00") for i in range(3)]
    t.send(late)
    assert wipe_prefix(stack) > 50
    assert stack.views.stats() == {}

    report = rebuild(stack)
    assert report["replayed"] == report["total"] == t.sent
    assert report["dead_lettered"] == 2 and report["skipped"] == 0
    assert report["outcomes"] == {"new": t.sent - 7, "duplicate": 5, "dead": 2}
    after = snapshot(stack)
    late_points = points_of(stack, late)
    assert late_points == 3 * 21
    # the views equal what the workers had built, plus the three late scans
    expected = json.loads(json.dumps(before))
    for i in range(3):
        one_id = stack.views.resolve(f"card:C{i:05d}")
        member = expected["members"][f"m:{one_id}"]
        member["points"] += 21
        member["events"] += 1
        member["raw"]["pts"] = str(int(member["raw"]["pts"]) + 21)
        member["raw"]["n"] = str(int(member["raw"]["n"]) + 1)
        member["raw"]["earned"] = str(int(member["raw"]["earned"]) + 21)
        for field in ("f", "mon", "rec", "last", "act", "lt", "lts", "ch"):
            member["raw"][field] = after["members"][f"m:{one_id}"]["raw"][field]
        member["last_seen_ms"] = after["members"][f"m:{one_id}"]["last_seen_ms"]
        member["channels"] = after["members"][f"m:{one_id}"]["channels"]
    for k in ("processed", "facts", "type:store_scan"):
        expected["stats"][k] += 3
    expected["stats"]["points_total"] += late_points
    sold = expected["stock"]["s:SKU-1@S003"]
    sold["on_hand"] = str(int(sold["on_hand"]) - 3)
    if "v" in sold:  # the stock figure's version: one per change
        sold["v"] = str(int(sold["v"]) + 3)
    expected["offsets"] = after["offsets"]
    assert after == expected
    assert after["offsets"] != before["offsets"]  # the late scans' offsets are applied

    # the worker resumes from its committed offsets: the late scans come again, no-ops
    stack.restart_worker(stack.workers[0])
    record_workers(stack)
    wait_outcomes(stack, "replay", 3)
    more = [scan(t, [people[i]["card"]], 50, "S001", "7.00") for i in range(4)]
    t.send(more)
    final = t.wait()
    assert wait_outcomes(stack, "new", 4)["new"] == 4
    assert final["processed"] == after["stats"]["processed"] + 4
    assert final["points_total"] == after["stats"]["points_total"] + 4 * 7
    for i in range(4):
        one_id = stack.views.resolve(f"card:C{i:05d}")
        got = stack.views.member(f"oneid:{one_id}")
        assert got is not None
        assert got["points"] == after["members"][f"m:{one_id}"]["points"] + 7


def test_rebuild_from_a_time_applies_exactly_the_events_since(stack: Running) -> None:
    t = Traffic(stack)
    early = [scan(t, [card(f"E{i}")], 0, "S001", "40.00") for i in range(5)]
    # a topic with nothing after --from
    early.append(livestream_click(envelope=t.env([card("E9")], 0)))
    t.send(early)
    t.wait()
    since = int(time.time() * 1000) + 5  # every later message reaches Kafka after this
    time.sleep(0.05)
    late = [
        scan(t, [card(f"E{i % 3}")], 30, ("S001", "S002", "S003")[i % 3], f"{3 + i}.00")
        for i in range(6)
    ] + [stock_in(t, "SKU-9", "S001", 12, 31)]
    t.send(late)
    t.wait()
    live = {i: stack.views.resolve(f"card:E{i}") for i in range(3)}
    deadline = time.monotonic() + 60  # the facts in ClickHouse: the OneIDs a rebuild keeps
    while reads.scalar(stack.endpoints, "SELECT count() FROM touchpoint_facts") < 13:
        assert time.monotonic() < deadline, "the sink never landed the facts"
        time.sleep(0.3)
    stop_workers(stack)

    report = rebuild(stack, "--from", str(since))
    assert report["from_ms"] == since
    assert report["replayed"] == len(late)
    assert report["outcomes"] == {"new": len(late)}
    stats = stack.views.stats()
    assert stats["processed"] == len(late)
    assert stats["members"] == 3
    assert stats["points_total"] == points_of(stack, late) == sum(3 + i for i in range(6))
    for i in range(3):
        got = stack.views.member(f"card:E{i}")
        assert got is not None
        assert got["points"] == (3 + i) + (3 + i + 3)  # scans i and i + 3, not the early 40
        assert got["events"] == 2
    for i in (3, 4, 9):  # only seen before --from
        assert stack.views.member(f"card:E{i}") is None
    assert stack.views.stock("SKU-9", "S001")[0]["on_hand"] == 12
    # the people met again keep the OneIDs ClickHouse holds their facts under, not numbers
    # from O1 again: `omni forget` deletes rows by OneID (test_rebuild_people.py)
    assert {i: stack.views.member(f"card:E{i}")["one_id"] for i in range(3)} == live
    # a worker resuming from a commit that lagged what it had applied reads the early
    # messages again: up to the captured end they are the rebuild's, replays, the click's
    # too, though its topic had nothing after --from
    again = TouchpointPipeline(
        input_topics(stack.settings.topic_prefix), rules(stack.settings), stack.views,
        DiscardOutput(),  # type: ignore[arg-type]
    )  # fmt: skip
    resumed = again.process(
        read_from_start(stack, "store_scan") + read_from_start(stack, "livestream_click")
    )
    # (the early ones left no result to re-emit: replay_expired, no effect either)
    assert resumed.outcomes == {"replay": 6, "replay_expired": len(early)}
    assert stack.views.member("card:E9") is None
    assert stack.views.stats() == stats
    # an ISO time works too, and rebuilding twice gives the same views
    iso = datetime.fromtimestamp(since / 1000, UTC).isoformat()
    assert rebuild(stack, "--from", iso)["replayed"] == len(late)
    assert stack.views.stats() == stats


def read_from_start(stack: Running, type_name: str) -> list[Inbound]:
    """Every message of an input topic, from offset 0 to its end."""
    topic = topic_for(stack.settings.topic_prefix, type_name)
    consumer = Consumer(
        {"bootstrap.servers": stack.endpoints.kafka_bootstrap, "group.id": "rebuild-test-reader",
         "enable.partition.eof": True}
    )  # fmt: skip
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found, ended = [], set()
        deadline = time.monotonic() + 30
        while len(ended) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: {len(found)} read"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                ended.add(msg.partition())
                continue
            found.append(
                Inbound(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())
            )
        return found
    finally:
        consumer.close()


def test_rebuild_refuses_running_workers_and_erased_people(stack: Running) -> None:
    t = Traffic(stack)
    t.send([scan(t, [card(f"R{i}")], 0, "S001", "12.00") for i in range(4)])
    stats = t.wait()

    refused = omni(stack, "rebuild", "--yes")
    assert refused.returncode == 2
    assert "workers run (worker-1)" in said(refused) and "stop the workers" in said(refused)
    assert stack.views.stats() == stats  # nothing was wiped

    erased = omni(stack, "forget", "card:R1", "--yes", "--json")
    assert erased.returncode == 0, erased.stderr
    one_id = json.loads(erased.stdout)["one_id"]
    t.send([scan(t, [card("R2")], 10, "S002", "6.00")])
    stats = t.wait()
    stop_workers(stack)
    refused = omni(stack, "rebuild", "--yes")
    assert refused.returncode == 2
    assert "erased" in said(refused) and "--from" in said(refused)
    assert stack.views.stats() == stats
    # after the erasure: only the later scan; the erasure record is kept
    at = rebuilding.latest_erasure_ms(stack.views, stack.endpoints)
    assert at is not None
    report = rebuild(stack, "--from", str(at + 1))
    assert report["outcomes"] == {"new": 1}
    assert stack.views.member("card:R1") is None
    assert stack.views.member("card:R2") is not None
    assert stack.views.erasure(one_id) is not None
    # Redis lost, erasure records with it: ClickHouse's erasures table still refuses
    wipe_prefix(stack)
    refused = omni(stack, "rebuild", "--yes")
    assert refused.returncode == 2 and "erased" in said(refused)


# -- the embedded stack: omni rebuild --pause-workers -------------------------------------------


@dataclass
class Embedded:
    """A stack `omni up` started, with what the helpers above use of `Running`."""

    settings: Settings

    @property
    def env(self) -> dict[str, str]:
        return {"OMNI_HOME": str(self.settings.home)}

    @property
    def endpoints(self) -> Endpoints:
        return resolve(self.settings)

    @property
    def views(self) -> RedisViews:
        return views(self.settings, self.endpoints)

    @property
    def workers(self) -> list[ManagedProcess]:
        """The workers as the stack records them (ports for worker_outcomes)."""
        return [
            ManagedProcess(name, [], c["port"], Path(c["log"]), lambda: True)
            for name, c in omni_stack.status(self.settings)["components"].items()
            if name.startswith("worker")
        ]

    def status(self) -> dict[str, Any]:
        shown = omni(self, "status", "--json")  # type: ignore[arg-type]
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)


def test_rebuild_pause_workers_on_the_embedded_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`omni up`, traffic, Redis lost, `omni rebuild --pause-workers`: the views are back
    as they were, the stack's workers run again and take new traffic exactly once."""
    for name in list(os.environ):
        if name.startswith("OMNI_"):
            monkeypatch.delenv(name)
    settings = Settings(
        home=tmp_path / "home", kafka_bootstrap=None, redis_url=None, clickhouse_dsn=None, workers=2
    )
    started = time.monotonic()
    omni_stack.up(settings, on_progress=lambda _: None)
    try:
        embedded: Any = Embedded(settings)  # stands in for a `Running`
        t = Traffic(embedded)
        people = first_traffic(t)
        before = snapshot(embedded)
        assert before["stats"]["processed"] + before["stats"]["dead_lettered"] == t.sent
        assert before["stats"]["members"] > 0 and before["stats"]["merges"] == 2
        pids = {n: c["pid"] for n, c in embedded.status()["components"].items()}

        refused = omni(embedded, "rebuild", "--yes")
        assert refused.returncode == 2
        assert "workers run (worker-1, worker-2)" in said(refused)
        assert "--pause-workers" in said(refused) and "omni workers pause" in said(refused)

        assert wipe_prefix(embedded) > 50
        assert embedded.views.stats() == {}
        done = omni(embedded, "rebuild", "--pause-workers", "--yes", "--json")
        assert done.returncode == 0, done.stderr
        steps = [
            said(done).index(step)
            for step in ("workers paused: worker-1, worker-2", "replaying", "workers resumed")
        ]
        assert steps == sorted(steps), said(done)
        report = json.loads(done.stdout)
        assert report["replayed"] == report["total"] == t.sent
        assert report["workers_paused"] == ["worker-1", "worker-2"]
        assert snapshot(embedded) == before

        # the same workers, started again, healthy; the broker, Redis and sink untouched
        state = embedded.status()
        assert state["state"] == "running" and state["workers"] == "running"
        for name, c in state["components"].items():
            assert c["alive"] and c["healthy"] and c["status"] == "healthy", (name, c)
            assert (c["pid"] != pids[name]) == name.startswith("worker"), name
        assert not (settings.home / "workers.paused").exists()

        # new traffic after the resume: applied once, nothing of the rebuild again
        more = [scan(t, [people[i]["card"]], 50, "S001", "7.00") for i in range(4)]
        t.send(more)
        final = t.wait()
        assert final["processed"] == before["stats"]["processed"] + 4
        assert final["points_total"] == before["stats"]["points_total"] + 4 * 7
        assert wait_outcomes(embedded, "new", 4)["new"] == 4
        for i in range(4):
            one_id = embedded.views.resolve(f"card:C{i:05d}")
            got = embedded.views.member(f"oneid:{one_id}")
            assert got is not None
            assert got["points"] == before["members"][f"m:{one_id}"]["points"] + 7

        # SIGTERM while it waits to be confirmed, its workers paused: they are resumed on
        # the way out, and the views are exactly as they were
        after = snapshot(embedded)
        out, err = tmp_path / "rebuild.out", tmp_path / "rebuild.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            asking = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "rebuild", "--pause-workers"],
                env={**os.environ, **embedded.env}, cwd=REPO, stdin=subprocess.PIPE,
                stdout=stdout, stderr=stderr, text=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "Wipe the Redis views" not in out.read_text():
                assert asking.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
            assert (settings.home / "workers.paused").exists()
            asking.send_signal(signal.SIGTERM)
            assert asking.wait(180) != 0
        finally:
            if asking.poll() is None:
                asking.kill()
        assert "workers resumed" in " ".join(err.read_text().split())
        assert not (settings.home / "workers.paused").exists()
        state = embedded.status()
        assert state["state"] == "running" and state["workers"] == "running"
        assert snapshot(embedded) == after
    finally:
        omni_stack.down(settings)
    print(f"omni up -> rebuild --pause-workers -> new traffic: {time.monotonic() - started:.1f}s")
