"""Fixtures every integration test can build on: a real Tansu broker and a real
redis-server for the session, on ephemeral loopback ports, started by the same code as
``omni up``; per-test settings with their own topics, consumer groups, Redis key prefix
and chDB directory; and a factory for running sinks and workers as real processes."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connectors.embedded import ManagedProcess, start_broker, start_redis, start_sink, start_worker
from connectors.kafka import ensure_topics
from connectors.redis_views import RedisViews
from streams.endpoints import Endpoints, stack_file
from streams.settings import Settings
from streams.wiring import all_topics, views

pytestmark = pytest.mark.integration


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


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("services")
    logs = root / "logs"
    broker = start_broker(logs)
    try:
        redis = start_redis(root / "redis", logs)
    except Exception:
        broker.stop(5)
        raise
    yield Services(broker, redis, logs)
    redis.stop(10)
    broker.stop(10)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(services: Services, tmp_path: Path) -> SettingsFactory:
    """Settings of an isolated tenant of the shared services: own topics (created),
    consumer groups, Redis key prefix, chDB directory and home."""

    def make(**overrides: object) -> Settings:
        name = f"t{uuid.uuid4().hex[:10]}"
        home = tmp_path / name
        base: dict[str, object] = {
            "home": home,
            "kafka_bootstrap": services.bootstrap,
            "redis_url": services.redis_url,
            "clickhouse_dsn": f"chdb://{home / 'chdb'}",
            "topic_prefix": name,
            "app_id": name,
            "phone_hash_key": "integration-test-key",
            "sink_batch_seconds": 0.3,
        }
        settings = Settings(**{**base, **overrides})  # type: ignore[arg-type]
        ensure_topics(services.bootstrap, all_topics(settings), settings.topic_partitions)
        return settings

    return make


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


@pytest.fixture
def run_stack(make_settings: SettingsFactory) -> Iterator[Callable[..., Running]]:
    """``run_stack(workers=1, sink=True, **settings)`` -> Running; all stopped afterwards."""
    started: list[Running] = []

    def run(workers: int = 1, sink: bool = True, **overrides: object) -> Running:
        settings = make_settings(**overrides)
        running = Running(settings, Path(settings.home) / "logs")
        started.append(running)
        if sink:
            running.start_sink()
        for _ in range(workers):
            running.start_worker(wait=False)
        for w in running.workers:
            w.wait_healthy(90)
        return running

    yield run
    for running in started:
        running.stop()
