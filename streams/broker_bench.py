"""``omni bench-broker``: what the embedded broker costs at a steady rate, by how the
producers batch and by how much the broker already holds.

Why it exists: over a 10-minute ``omni bench --soak-seconds 600`` the embedded broker's
CPU climbed and the stack fell behind. This measures the broker alone, with the same
clients as the stack (a confluent-kafka producer, an aiokafka consumer with the workers'
fetch wait) and nothing else on the machine's cores but the measuring process:

1. For each ``linger.ms``: a fresh broker, the input topics' layout (6 topics x
   ``partitions``), messages produced at ``rate`` for ``seconds`` while one consumer
   reads them; the broker's CPU (cores busy) and the produce->fetch p50/p99.
2. On a fresh broker, the first ``linger.ms`` measured again after ``fill`` one-message
   produce batches were written to an unrelated topic: whether the broker's cost depends
   on what it holds rather than on the traffic.

Each produce request's batch for a partition is what the broker stores as one unit; the
linger decides how many messages share one. docs/benchmarks.md quotes a run.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.embedded import ManagedProcess, start_broker
from connectors.kafka import ensure_topics
from streams.bench import Producer, cpu_seconds, percentile

TOPICS = 6
#: bytes of each message's value after its send-time stamp (the mean touchpoint is ~150 B)
PAYLOAD = b"x" * 140
#: how long the consumer may wait at the broker (the workers' default)
FETCH_MAX_WAIT_MS = 100


@dataclass(frozen=True)
class ProbeConfig:
    rate: float = 1000.0
    seconds: float = 15.0
    lingers: tuple[int, ...] = (5, 50, 200)
    fill: int = 50_000
    partitions: int = 4


def _produce_steady(
    bootstrap: str, topics: list[str], rate: float, linger_ms: int, stop: threading.Event
) -> None:
    producer = Producer(bootstrap, {"linger.ms": linger_ms})
    started, i = time.perf_counter(), 0
    while not stop.is_set():
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        producer.send((topics[i % len(topics)], b"%d" % i, b"%.6f|" % time.time() + PAYLOAD))
        i += 1
    producer.flush(30)


def _fill(bootstrap: str, topic: str, batches: int) -> None:
    """``batches`` produce batches of one message each (a producer that never lingers)."""
    producer = Producer(bootstrap, {"linger.ms": 0, "batch.num.messages": 1})
    for i in range(batches):
        producer.send((topic, b"%d" % i, PAYLOAD))
        if i % 1000 == 999:
            producer.flush(30)
    producer.flush(30)


async def _steady(
    broker: ManagedProcess, topics: list[str], config: ProbeConfig, linger_ms: int, group: str
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    bootstrap = f"127.0.0.1:{broker.port}"
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="latest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    stop = threading.Event()
    producing = threading.Thread(
        target=_produce_steady, args=(bootstrap, topics, config.rate, linger_ms, stop)
    )
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.1)
        producing.start()
        # a second of traffic before measuring: what was produced before the consumer
        # had its positions is not counted
        settle_until = time.time() + 1.0
        while time.time() < settle_until:
            await consumer.getmany(timeout_ms=100)
        latencies: list[float] = []
        cpu0, t0 = cpu_seconds(broker.pid), time.time()
        t1 = t0 + config.seconds

        async def take() -> int:
            got = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in got.values():
                for r in records:
                    sent = float(r.value.split(b"|", 1)[0])
                    if t0 <= sent < t1:  # sent within the window: measured
                        latencies.append((now - sent) * 1000)
            return sum(len(records) for records in got.values())

        while time.time() < t1:
            await take()
        window = time.time() - t0
        cores = (cpu_seconds(broker.pid) - cpu0) / window
        # what the window sent and had not arrived yet: the slowest, still measured
        stop.set()
        await asyncio.to_thread(producing.join, 60)
        quiet_since, deadline = time.time(), time.time() + 30
        while time.time() - quiet_since < 1.0 and time.time() < deadline:
            if await take():
                quiet_since = time.time()
    finally:
        stop.set()
        if producing.is_alive():
            producing.join(60)
        await consumer.stop()
    latencies.sort()
    return {
        "linger_ms": linger_ms,
        "broker_cores": round(cores, 3),
        "consumed_per_s": round(len(latencies) / config.seconds, 1),  # sent in the window
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
    }


def _with_broker(work: Callable[[ManagedProcess, list[str]], Any], partitions: int) -> Any:
    with tempfile.TemporaryDirectory(prefix="omni-bench-broker-") as logs:
        broker = start_broker(Path(logs))
        try:
            topics = [f"probe.t{i}" for i in range(TOPICS)]
            ensure_topics(f"127.0.0.1:{broker.port}", [*topics, "probe.fill"], partitions)
            return work(broker, topics)
        finally:
            broker.stop()


def run(config: ProbeConfig, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    by_linger = []
    for linger in config.lingers:
        progress(f"linger.ms={linger}: {config.seconds:.0f} s at {config.rate:,.0f}/s")
        by_linger.append(
            _with_broker(
                lambda b, t, linger=linger: asyncio.run(_steady(b, t, config, linger, "probe")),
                config.partitions,
            )
        )

    def held(broker: ManagedProcess, topics: list[str]) -> dict[str, Any]:
        linger = config.lingers[0]
        progress(f"linger.ms={linger} on an empty broker")
        empty = asyncio.run(_steady(broker, topics, config, linger, "probe-empty"))
        progress(f"writing {config.fill:,} one-message batches to another topic")
        started = time.monotonic()
        _fill(f"127.0.0.1:{broker.port}", "probe.fill", config.fill)
        fill_s = time.monotonic() - started
        progress(f"linger.ms={linger} after them")
        after = asyncio.run(_steady(broker, topics, config, linger, "probe-after"))
        return {"batches": config.fill, "fill_seconds": round(fill_s, 1),
                "empty": empty, "after": after}  # fmt: skip

    return {
        "config": {**config.__dict__, "lingers": list(config.lingers)},
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "by_linger": by_linger,
        "held": _with_broker(held, config.partitions),
    }


def report_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    c = r["config"]

    def row(m: dict[str, Any]) -> str:
        return (
            f"broker {m['broker_cores']:.2f} cores; produce->fetch p50 {m['p50_ms']:,.0f} ms, "
            f"p99 {m['p99_ms']:,.0f} ms; {m['consumed_per_s']:,.0f} consumed/s"
        )

    rows = [
        ("traffic", f"{c['rate']:,.0f} messages/s for {c['seconds']:.0f} s over {TOPICS} "
                    f"topics x {c['partitions']} partitions, one consumer "
                    f"(fetch wait {r['fetch_max_wait_ms']} ms)"),
    ]  # fmt: skip
    rows += [(f"linger.ms={m['linger_ms']}", row(m)) for m in r["by_linger"]]
    held = r["held"]
    rows.append((f"linger.ms={held['empty']['linger_ms']}, broker empty", row(held["empty"])))
    rows.append((f"  after {held['batches']:,} batches elsewhere", row(held["after"])))
    return rows
