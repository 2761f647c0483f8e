"""Fixtures every integration test can build on: a real Tansu broker and a real
redis-server for the session, on ephemeral loopback ports, started by the same code as
``omni up``; per-test settings with their own topics, consumer groups, Redis key prefix
and chDB directory; and a factory for running sinks and workers as real processes.

``OMNI_TEST_BACKEND=containers`` runs the same tests against Kafka, Redis and a ClickHouse
server in Docker (testcontainers), each test with its own database on that server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.clickhouse import Warehouse
from streams.settings import Settings

from ..harness import ContainerServices, Running, Services, services_for_tests, tenant_settings
from ..harness import run_stack as start_stack

__all__ = ["Running", "Services"]  # what the tests import from here

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services | ContainerServices]:
    running = services_for_tests(tmp_path_factory.mktemp("services"))
    yield running
    running.stop()


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(services: Services | ContainerServices, tmp_path: Path) -> SettingsFactory:
    """Settings of an isolated tenant of the shared services: own topics (created),
    consumer groups, Redis key prefix, chDB directory and home."""

    def make(**overrides: object) -> Settings:
        return tenant_settings(
            services.bootstrap, services.redis_url, tmp_path, services.clickhouse_dsn, **overrides
        )

    return make


@pytest.fixture
def run_stack(make_settings: SettingsFactory) -> Iterator[Callable[..., Running]]:
    """``run_stack(workers=1, sink=True, **settings)`` -> Running; all stopped afterwards."""
    started: list[Running] = []

    def run(workers: int = 1, sink: bool = True, **overrides: object) -> Running:
        return start_stack(make_settings(**overrides), workers, sink, started)

    yield run
    for running in started:
        running.stop()


@pytest.fixture
def chdb_warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    """An empty, migrated embedded ClickHouse of the test's own."""
    w = Warehouse.connect(f"chdb://{tmp_path / 'chdb'}")
    w.migrate()
    yield w
    w.close()
