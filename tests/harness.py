"""Running the pipeline on real processes and reading back what it ended with: shared by
the integration fixtures (tests/integration/conftest.py), the fault-tolerance tests and
the fault drills (``python -m tests.chaos``). No pytest in here, so the drills can run
without it."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.embedded import ManagedProcess, start_broker, start_redis, start_sink, start_worker
from connectors.kafka import TouchpointProducer, ensure_topics
from connectors.redis_views import RedisViews
from schemas.models import type_name_of
from streams import reads
from streams.core.plan import plan_event
from streams.core.rules import Rules
from streams.demo import publish, send_messages
from streams.endpoints import Endpoints, stack_file
from streams.settings import Settings
from streams.simulate import SimMessage, Simulation
from streams.wiring import all_topics, rules, views

# -- services and tenants ---------------------------------------------------------------


@dataclass
class Services:
    broker: ManagedProcess
    redis: ManagedProcess
    logs: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def stop(self) -> None:
        self.redis.stop(10)
        self.broker.stop(10)

    def clickhouse_dsn(self, tenant: str, home: Path) -> str:
        """Embedded: each tenant's own chDB directory, owned by its sink."""
        return f"chdb://{home / 'chdb'}"


# The other backend (OMNI_TEST_BACKEND=containers): the same services as containers, for
# machines with Docker. Images pinned to what docker-compose.yml runs in production.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.1"
REDIS_IMAGE = "redis:7.2"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:24.8"
BACKENDS = ("embedded", "containers")


class BackendUnavailable(RuntimeError):
    pass


def test_backend() -> str:
    """``OMNI_TEST_BACKEND``: ``embedded`` (default: local processes) or ``containers``."""
    backend = os.environ.get("OMNI_TEST_BACKEND", "embedded")
    if backend not in BACKENDS:
        raise ValueError(f"OMNI_TEST_BACKEND={backend!r}: use one of {', '.join(BACKENDS)}")
    return backend


test_backend.__test__ = False  # type: ignore[attr-defined]  # (not a test: pytest collects test_*)


@dataclass
class ContainerServices:
    """Kafka (KRaft), Redis and a ClickHouse server in Docker, started by testcontainers.
    The interface the fixtures use is Services': bootstrap, redis_url, clickhouse_dsn, stop."""

    kafka: Any
    redis: Any
    clickhouse: Any
    logs: Path

    @property
    def bootstrap(self) -> str:
        return str(self.kafka.get_bootstrap_server())

    @property
    def redis_url(self) -> str:
        host, port = self.redis.get_container_host_ip(), self.redis.get_exposed_port(6379)
        return f"redis://{host}:{port}/0"

    def clickhouse_dsn(self, tenant: str, home: Path) -> str:
        """Server: each tenant's own database on the one server, created here."""
        import clickhouse_connect

        c = self.clickhouse
        host, port = c.get_container_host_ip(), int(c.get_exposed_port(8123))
        client = clickhouse_connect.get_client(
            host=host, port=port, username=c.username, password=c.password
        )
        try:
            client.command(f"CREATE DATABASE IF NOT EXISTS {tenant}")
        finally:
            client.close()
        return f"http://{c.username}:{c.password}@{host}:{port}/{tenant}"

    def stop(self) -> None:
        for container in (self.clickhouse, self.redis, self.kafka):
            if container is not None:
                container.stop()


def start_containers(root: Path) -> ContainerServices:
    """The containers backend, or BackendUnavailable saying why not (no Docker daemon)."""
    from docker.errors import DockerException
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    started: list[Any] = []
    try:
        for container in (
            KafkaContainer(KAFKA_IMAGE).with_kraft(),
            RedisContainer(REDIS_IMAGE),
            ClickHouseContainer(CLICKHOUSE_IMAGE, username="omni", password="omni-test"),
        ):
            started.append(container.start())
    except DockerException as exc:
        for container in started:
            container.stop()
        raise BackendUnavailable(
            f"OMNI_TEST_BACKEND=containers needs a running Docker daemon: {exc}"
        ) from exc
    kafka, redis, clickhouse = started
    return ContainerServices(kafka, redis, clickhouse, root / "logs")


def services_for_tests(root: Path) -> Services | ContainerServices:
    """The services of the integration tests, by ``OMNI_TEST_BACKEND``."""
    return start_containers(root) if test_backend() == "containers" else start_services(root)


def start_services(root: Path) -> Services:
    """A Tansu broker and a redis-server (AOF on) on ephemeral loopback ports."""
    logs = root / "logs"
    broker = start_broker(logs)
    try:
        redis = start_redis(root / "redis", logs)
    except Exception:
        broker.stop(5)
        raise
    return Services(broker, redis, logs)


def tenant_settings(
    bootstrap: str,
    redis_url: str,
    root: Path,
    clickhouse_dsn: Callable[[str, Path], str] | None = None,
    **overrides: object,
) -> Settings:
    """Settings of an isolated tenant of shared services: own topics (created), consumer
    groups, Redis key prefix, ClickHouse database (by default its own chDB directory) and
    home under ``root``."""
    name = f"t{uuid.uuid4().hex[:10]}"
    home = root / name
    base: dict[str, object] = {
        "home": home,
        "kafka_bootstrap": bootstrap,
        "redis_url": redis_url,
        "clickhouse_dsn": clickhouse_dsn(name, home)
        if clickhouse_dsn
        else f"chdb://{home / 'chdb'}",
        "topic_prefix": name,
        "app_id": name,
        "phone_hash_key": "integration-test-key",
        "sink_batch_seconds": 0.3,
    }
    settings = Settings(**{**base, **overrides})  # type: ignore[arg-type]
    ensure_topics(bootstrap, all_topics(settings), settings.topic_partitions)
    return settings


def endpoints_of(settings: Settings, sink: ManagedProcess | None = None) -> Endpoints:
    assert settings.kafka_bootstrap and settings.redis_url and settings.clickhouse_dsn
    sink_url = f"http://127.0.0.1:{sink.port}" if sink else None
    return Endpoints(
        settings.kafka_bootstrap, settings.redis_url, settings.clickhouse_dsn, sink_url
    )


@dataclass
class Running:
    """Sink and workers of one tenant, as real processes."""

    settings: Settings
    logs: Path
    sink: ManagedProcess | None = None
    workers: list[ManagedProcess] = field(default_factory=list)
    others: list[ManagedProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return self.settings.to_env()

    @property
    def endpoints(self) -> Endpoints:
        return endpoints_of(self.settings, self.sink)

    @property
    def views(self) -> RedisViews:
        return views(self.settings, self.endpoints)

    def start_sink(self) -> ManagedProcess:
        return self.use_sink(start_sink(self.env, self.logs))

    def use_sink(self, sink: ManagedProcess) -> ManagedProcess:
        """Make ``sink`` the stack's sink and, as `omni up` does, record where it is: the
        CLI finds the sink (owner of chDB) through that record."""
        self.sink = sink
        found = dataclasses.asdict(self.endpoints)
        record = {"endpoints": {k: v for k, v in found.items() if k != "sink_token"}}
        stack_file(self.settings).write_text(json.dumps(record))
        return sink

    def start_extra_sink(self, name: str, **env: str) -> ManagedProcess:
        """A sink with extra settings, not waited for; stopped with the rest."""
        return self.adopt(start_sink({**self.env, **env}, self.logs, wait=None, name=name))

    def start_worker(self, wait: bool = True) -> ManagedProcess:
        index = len(self.workers) + 1
        worker = start_worker(self.env, self.logs, index, wait=90 if wait else None)
        self.workers.append(worker)
        return worker

    def restart_worker(self, worker: ManagedProcess) -> ManagedProcess:
        fresh = ManagedProcess(
            worker.name, worker.argv, worker.port, worker.log_path, worker.health, worker.env
        )
        fresh.start().wait_healthy(90)
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def adopt(self, proc: ManagedProcess) -> ManagedProcess:
        """A process a test started itself: stopped with the rest, whatever happens."""
        self.others.append(proc)
        return proc

    def stop(self) -> None:
        procs = [*self.workers, *([self.sink] if self.sink else []), *self.others]
        for proc in {id(p): p for p in procs}.values():  # each once, even if adopted too
            proc.stop(30)


def run_stack(
    settings: Settings, workers: int = 1, sink: bool = True, started: list[Running] | None = None
) -> Running:
    """Sink and ``workers`` workers of the tenant ``settings``, each waited for. Appended to
    ``started`` before anything starts, so the caller stops whatever did start."""
    running = Running(settings, Path(settings.home) / "logs")
    if started is not None:
        started.append(running)
    if sink:
        running.start_sink()
    for _ in range(workers):
        running.start_worker(wait=False)
    for w in running.workers:
        w.wait_healthy(90)
    return running


def sink_stats(stack: Running) -> dict[str, Any]:
    """The stack's sink's own counters (its ``/stats``)."""
    assert stack.endpoints.sink_url is not None
    with urllib.request.urlopen(stack.endpoints.sink_url + "/stats", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


# -- traffic ----------------------------------------------------------------------------


def send(stack: Running, messages: list, rate: float | None = None) -> None:
    prefix = stack.settings.topic_prefix
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, prefix) as producer:
        send_messages(messages, producer, prefix, rate)


def traffic(stack: Running, events: int, seed: int) -> Simulation:
    """The simulated mix of ``events`` (5% re-sent, 2% malformed), sent to the stack's
    topics; its messages are kept for the reference."""
    sim = Simulation(events, seed=seed, duplicate_share=0.05, malformed_share=0.02,
                     keep_messages=True)  # fmt: skip
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix) as p:
        publish(sim, p, stack.settings.topic_prefix)
    return sim


def unique(messages: Sequence[SimMessage]) -> list:
    """The records of ``messages`` once each (no malformed ones, no re-sent duplicates)."""
    seen: set[str] = set()
    out = []
    for msg in messages:
        if msg.record is not None and msg.record.envelope.event_id not in seen:
            seen.add(msg.record.envelope.event_id)
            out.append(msg.record)
    return out


# -- what the system ended with ---------------------------------------------------------


def redis_state(stack: Running) -> tuple[dict[frozenset[str], int], dict[str, tuple]]:
    """Points balance per member (by its identifier set) and (on_hand, reserved) per
    SKU@location, as the Redis views hold them."""
    views = stack.views
    client = views.client
    members = {}
    for key in client.scan_iter(match=views.prefix + "mi:*", count=1000):
        one_id = key.decode().rsplit(":", 1)[1]
        ids = frozenset(m.decode() for m in client.smembers(key))
        members[ids] = int(client.hget(views.prefix + "m:" + one_id, "pts") or 0)
    stock = {}
    for key in client.scan_iter(match=views.prefix + "s:*", count=1000):
        h = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
        stock[key.decode().removeprefix(views.prefix + "s:")] = (
            h.get("on_hand", 0),
            h.get("reserved", 0),
        )
    return members, stock


def reference_amount(messages: Sequence[SimMessage], configured: Rules) -> Decimal:
    """Sum of the amounts of the distinct events in ``messages``."""
    now = datetime.now(UTC)
    return sum(
        (plan_event(type_name_of(r), r, configured, now).amount for r in unique(messages)),
        Decimal(0),
    )


def clickhouse_numbers(endpoints: Endpoints) -> dict[str, Any]:
    """Counts and sums of the three tables, collapsed (FINAL) as dashboards read them."""
    facts = reads.query(
        endpoints,
        "SELECT count(), sum(amount), sum(points), countIf(new_member) FROM touchpoint_facts FINAL",
    ).rows[0]
    return {
        "facts": int(facts[0]),
        "facts_amount": Decimal(str(facts[1])),
        "facts_points": int(facts[2]),
        "facts_new_members": int(facts[3]),
        "facts_distinct_events": reads.scalar(
            endpoints, "SELECT count(DISTINCT event_id) FROM touchpoint_facts"
        ),
        "ledger_points": reads.scalar(endpoints, "SELECT sum(points) FROM points_ledger FINAL"),
        "merges": reads.scalar(
            endpoints, "SELECT count() FROM identity_events FINAL WHERE action = 'merge'"
        ),
    }


def assert_tables_exact(
    stack: Running, messages: Sequence[SimMessage], expected_facts: int, stats: dict
) -> None:
    """Every table holds each event exactly once, however often the sink re-inserted."""
    got = clickhouse_numbers(stack.endpoints)
    assert got["facts"] == expected_facts
    assert got["facts_amount"] == reference_amount(messages, rules(stack.settings))
    assert got["facts_points"] == stats["points_total"]
    assert got["facts_distinct_events"] == expected_facts
    balance = stats["points_total"] - stats.get("points_reversed", 0)
    assert got["ledger_points"] == balance
    assert got["merges"] == stats["merges"]
    # stock movements replay to the Redis stock; per-minute rows equal the reference's
    assert stock_mismatches(stack, timeout=30) == []
    assert minute_mismatches(stack, messages, timeout=30) == []


def wait_ledger(stack: Running, stats: dict, timeout: float = 30) -> None:
    """The ledger and merge log may trail the facts by one sink batch."""
    want = stats["points_total"] - stats.get("points_reversed", 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = reads.scalar(stack.endpoints, "SELECT sum(points) FROM points_ledger FINAL")
        if got == want:
            return
        time.sleep(0.5)


# -- per-minute aggregates and stock movements --------------------------------------------
# What ClickHouse must hold after a run, whatever crashed on the way, compared with the
# pure core's reference and the Redis views; each check returns the differences found.

Bucket = tuple[int, str, str, str]  # minute (epoch s), channel, touchpoint type, store


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
    for record in unique(messages):
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
