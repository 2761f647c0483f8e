"""Prometheus metrics of a worker or the sink (each process exposes its own at
``/metrics``). prometheus-client: the reference client, the standard exposition format,
no server of its own needed.

Names are documented in docs/operations.md; they never carry personal data in labels
(types, outcomes, reasons, rules, topics and partitions only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

EVENTS = Counter(
    "omni_events", "Messages a worker handled, by type and outcome "
    "(new, duplicate, replay, dead)", ["type", "outcome"],
)  # fmt: skip
DEAD_LETTERS = Counter("omni_dead_letters", "Messages dead-lettered, by reason", ["reason"])
IDENTITY = Counter(
    "omni_identity_changes", "Merges, refused merges and unlinked identifiers", ["action"]
)
REFUSALS = Counter(
    "omni_refusals",
    "Refused: claims past budget, reservations backordered, orders sent again",
    ["kind"],
)
EVENT_LAG = Histogram(
    "omni_event_lag_seconds", "From event time to applied in the views",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)  # fmt: skip
BATCH_SIZE = Histogram(
    "omni_batch_events", "Messages per worker batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)  # fmt: skip
BATCH_SECONDS = Histogram("omni_batch_seconds", "Time to process one worker batch")
REDIS_SECONDS = Histogram("omni_redis_apply_seconds", "One atomic views call per batch")
KAFKA_OUT_SECONDS = Histogram(
    "omni_output_seconds", "Producing a batch's facts and dead letters (until delivered)"
)
CONSUMER_LAG = Gauge(
    "omni_consumer_lag", "Messages behind the end of each partition", ["topic", "partition"]
)
GC_PAUSE_SECONDS = Histogram(
    "omni_gc_pause_seconds", "Pauses of Python's garbage collector, by generation",
    ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)  # fmt: skip

SINK_ROWS = Counter("omni_sink_rows", "Rows written to ClickHouse, by table", ["table"])
SINK_BATCH_ROWS = Histogram(
    "omni_sink_batch_rows", "Rows per sink batch",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 20000, 50000),
)  # fmt: skip
SINK_INSERT_SECONDS = Histogram("omni_sink_insert_seconds", "One insert into one table")
SINK_RETRIES = Counter("omni_sink_insert_retries", "Inserts retried while ClickHouse failed")
SINK_DEAD = Counter("omni_sink_dead_letters", "Facts-topic messages the sink could not read")


def add(counter: Counter, counts: Mapping[Any, int]) -> None:
    """Add counts taken per batch to a labelled counter, one ``inc`` per label value
    (a tuple for a counter with several labels), instead of one lock per event."""
    for labels, n in counts.items():
        counter.labels(*(labels if isinstance(labels, tuple) else (labels,))).inc(n)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def scrape(port: int, timeout: float = 5) -> list[Sample]:
    """Every sample a local worker or sink serves at ``/metrics`` (``omni status``, tests)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def by_label(samples: Iterable[Sample], name: str, label: str) -> dict[str, float]:
    """The samples called ``name`` summed by the value of one label."""
    sums: dict[str, float] = {}
    for s in samples:
        if s.name == name:
            sums[s.labels[label]] = sums.get(s.labels[label], 0.0) + s.value
    return sums
