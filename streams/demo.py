"""Publishing synthetic traffic and waiting until every message is accounted for:
shared by ``omni simulate`` and ``omni demo``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from connectors.kafka import TouchpointProducer
from connectors.redis_views import RedisViews
from schemas.topics import topic_for
from streams import reads
from streams.endpoints import Endpoints
from streams.settings import Settings
from streams.simulate import SimMessage, Simulation

Progress = Callable[[int, int], None]


def publish(
    sim: Simulation,
    producer: TouchpointProducer,
    topic_prefix: str,
    rate: float | None = None,
    progress: Progress | None = None,
) -> Counter[str]:
    """Send every simulated message (malformed ones as raw bytes); flush; return counts."""
    send_messages(sim, producer, topic_prefix, rate, progress, sim.events)
    return sim.counts


def send_messages(
    messages: Iterable[SimMessage],
    producer: TouchpointProducer,
    topic_prefix: str,
    rate: float | None = None,
    progress: Progress | None = None,
    total: int = 0,
) -> None:
    """Send messages (malformed ones as raw bytes), at most ``rate`` per second; flush."""
    started = time.monotonic()
    for n, msg in enumerate(messages, start=1):
        if msg.record is not None:
            producer.send(msg.record)
        else:
            producer.send_raw(topic_for(topic_prefix, msg.type_name), msg.raw or b"", msg.key)
        if rate:
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        if progress is not None and (n % 500 == 0 or n == total):
            progress(n, total)
    producer.flush()


def wait_views(
    views: RedisViews,
    produced: int,
    timeout: float = 300.0,
    progress: Progress | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Wait until processed + dead-lettered reaches ``produced`` in the views. ``check``
    runs now and then and raises when waiting is pointless (a component failed)."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        if check is not None:
            check()
        stats = views.stats()
        done = stats.get("processed", 0) + stats.get("dead_lettered", 0)
        if progress is not None:
            progress(done, produced)
        if done >= produced:
            return stats
        time.sleep(0.2)
    raise TimeoutError(f"only {done} of {produced} messages accounted for after {timeout:.0f}s")


def wait_accounted(
    views: RedisViews,
    endpoints: Endpoints,
    produced: int,
    timeout: float = 300.0,
    progress: Progress | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``wait_views``, then until the facts table holds every fact the workers wrote;
    return the final numbers with ``clickhouse_rows``."""
    deadline = time.monotonic() + timeout
    stats = wait_views(views, produced, timeout, progress, check)
    facts = stats.get("facts", 0)
    rows = -1
    while time.monotonic() < deadline:
        rows = reads.scalar(endpoints, "SELECT count() FROM touchpoint_facts FINAL")
        if rows >= facts:
            break
        time.sleep(0.3)
    return {**stats, "clickhouse_rows": rows}


def summary(
    settings: Settings, produced: int, stats: dict[str, Any], elapsed: float, startup: float
) -> dict[str, Any]:
    per_type = {
        k.removeprefix("type:"): v for k, v in sorted(stats.items()) if k.startswith("type:")
    }
    return {
        "produced": produced,
        "processed": stats.get("processed", 0),
        "dead_lettered": stats.get("dead_lettered", 0),
        "duplicates": stats.get("duplicates", 0),
        "facts_written": stats.get("facts", 0),
        "clickhouse_rows": stats["clickhouse_rows"],
        "members": stats.get("members", 0),
        "merges": stats.get("merges", 0),
        "points_total": stats.get("points_total", 0),
        "reservations": stats.get("reservations", 0),
        "backorders": stats.get("backorders", 0),
        "orders_fulfilled": stats.get("orders_fulfilled", 0),
        "orders_cancelled": stats.get("orders_cancelled", 0),
        "points_reversed": stats.get("points_reversed", 0),
        "claims_refused": stats.get("claims_refused", 0),
        "merges_refused": stats.get("refusals", 0),
        "per_type": per_type,
        "workers": settings.workers,
        "startup_s": round(startup, 2),
        "elapsed_s": round(elapsed, 2),
        "events_per_s": round(produced / elapsed, 1) if elapsed else 0.0,
        "accounted": stats.get("processed", 0) + stats.get("dead_lettered", 0) == produced
        and stats["clickhouse_rows"] == stats.get("facts", 0),
    }
