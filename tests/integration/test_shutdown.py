"""A worker told to stop while the batch in hand cannot be applied (Redis unreachable)
gives it up after the grace period and exits unacknowledged: it does not run on until it
is killed, and nothing is lost (the batch is redelivered to whoever takes the partitions)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from connectors.embedded import free_port
from streams.metrics import scrape, total
from streams.simulate import Simulation

from ..harness import run_stack, send, tenant_settings
from .conftest import Running, Services

pytestmark = pytest.mark.integration

#: shorter than the default 30 s, so the test also shows the setting is the one used
GRACE_S = 8.0


def test_sigterm_while_redis_is_unreachable_exits_after_the_grace_period(
    services: Services, tmp_path: Path
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started: list[Running] = []
    settings = tenant_settings(services.bootstrap, nobody, tmp_path, shutdown_grace_s=GRACE_S)
    stack = run_stack(settings, 1, False, started)
    try:
        stop_while_redis_is_away(stack)
    finally:
        stack.stop()


def stop_while_redis_is_away(stack: Running) -> None:
    worker = stack.workers[0]
    send(stack, list(Simulation(50, seed=1, duplicate_share=0, malformed_share=0)))
    deadline = time.monotonic() + 60
    while "waits: redis" not in worker.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the worker never waited for Redis"
        time.sleep(0.2)
    # the partitions of a batch that cannot be applied are behind by all of it (before:
    # no lag at all was reported until a batch of the partition had been acknowledged)
    deadline = time.monotonic() + 10
    while total(scrape(worker.port), "omni_consumer_lag") != 50:
        assert time.monotonic() < deadline, scrape(worker.port)
        time.sleep(0.5)
    asked = time.monotonic()
    worker.signal(signal.SIGTERM)
    while worker.alive and time.monotonic() - asked < GRACE_S + 30:
        time.sleep(0.2)
    took = time.monotonic() - asked
    # before: still retrying Redis, and still running, 90 s after the SIGTERM
    assert not worker.alive, f"still running {took:.0f}s after SIGTERM"
    assert GRACE_S - 1 <= took < GRACE_S + 15, took
    assert worker.exit_code == 75
    assert "exiting without commit" in worker.log_path.read_text(errors="replace")
