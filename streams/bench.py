"""``omni bench``: one run of the standard mixed workload through a fresh embedded stack,
and the numbers that say how fast, how lean and how steady the pipeline is.

The run, in order (docs/benchmarks.md says what each number means):

1. The workload is the simulator's (``streams/simulate.py``): every touchpoint type,
   ``members`` people with overlapping identifiers, re-sent duplicates and malformed
   messages. It is generated and encoded up front, exactly as the producer SDK would
   send it, so generating it costs the pipeline nothing while it is measured.
2. A fresh embedded stack (broker, Redis, sink, workers) starts under a temporary home.
3. Warm-up: a first batch of events goes through; its rate sizes the next phase.
4. Throughput: the input topics hold a backlog for ``seconds``; events/s is what the
   workers accounted for (processed + dead-lettered, from the views' own counters) over
   that window. Worker CPU, worker metrics and sink rows are read at both ends.
5. Latency: once the backlog is gone, events are produced at a steady ``rate`` for
   ``max(latency_seconds, soak_seconds)``. Each event's send time is taken when it is
   handed to the producer; it is visible when the Redis ``offsets`` record of its
   partition (written by the same atomic script as the views) reaches its offset.
6. Redis memory per member, then the baselines on the same topics: a plain
   confluent-kafka consumer, and bare faust agents (``streams/bare_agent.py``), each in
   a consumer group of its own that reads the topics from the start.
7. The stack is stopped, whatever happened.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.embedded import proc_stat

Progress = Callable[[str, float, float | None], None]
Note = Callable[[str], None]
#: (topic, key, value): one message as the producer SDK would send it
Wire = tuple[str, bytes | None, bytes]

#: the issue's targets
TARGET_BARE_FAUST_SHARE = 0.70
TARGET_EVENTS_PER_S_PER_WORKER = 10_000
TARGET_P99_MS = 1000.0
TARGET_P99_RATE = 1000.0
TARGET_REDIS_BYTES_PER_MEMBER = 1024
TARGET_REDIS_MEMBERS = 100_000
TARGET_RSS_GROWTH = 0.10
TARGET_SOAK_S = 600.0

#: the simulated clock spans this many events (200 ms apart on average), ending about
#: now: more than any run produces, so no event is ever dated in the future
_CLOCK_EVENTS = 5_000_000
#: re-sent duplicates repeat one of the last this many records
_RESEND_WINDOW = 20_000
#: how often the latency phase reads the Redis offsets record
POLL_INTERVAL_S = 0.005
#: the steady phase's p99 is also reported for each of this many equal parts of it
LATENCY_SLICES = 6


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class BenchConfig:
    seconds: float = 60.0
    members: int = 100_000
    workers: int | None = None
    rate: float = 1000.0
    latency_seconds: float = 30.0
    soak_seconds: float = 0.0
    baseline_seconds: float = 20.0
    warmup_events: int = 10_000
    seed: int = 7
    #: the simulated producers' linger.ms; None: the producer SDK's own (connectors/kafka.py)
    producer_linger_ms: int | None = None


# -- the machine and its processes ------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def machine() -> dict[str, Any]:
    model, mem_kb = "unknown", 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_kb = int(first.split()[1])
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, and of its children
    it has reaped: redis-server's AOF rewrites run in a forked child, a core each for
    seconds at a time, and are Redis's cost."""
    fields = proc_stat(pid)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS


def rss_bytes(pid: int) -> int:
    return int(proc_stat(pid)[21]) * _PAGE


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- the workload -------------------------------------------------------------------------------


class Workload:
    """The simulator's stream, taken in chunks and encoded as the producer SDK does."""

    def __init__(self, members: int, seed: int, prefix: str):
        from streams.simulate import Simulation

        now = datetime.now(UTC)
        self.sim = Simulation(
            _CLOCK_EVENTS,
            members=members,
            seed=seed,
            start=now - timedelta(milliseconds=200 * _CLOCK_EVENTS) - timedelta(minutes=1),
            resend_window=_RESEND_WINDOW,
        )
        self._messages = iter(self.sim)
        self.prefix = prefix

    def take(
        self, n: int, progress: Progress | None = None, phase: str = "generating"
    ) -> list[Wire]:
        from schemas.codec import encode
        from schemas.topics import partition_key, topic_for

        out: list[Wire] = []
        for i, msg in enumerate(itertools.islice(self._messages, n), start=1):
            topic = topic_for(self.prefix, msg.type_name)
            if msg.record is None:
                out.append((topic, msg.key, msg.raw or b""))
            else:
                avro = msg.record.to_avro()
                out.append((topic, partition_key(msg.type_name, avro), encode(msg.type_name, avro)))
            if progress is not None and (i % 2000 == 0 or i == n):
                progress(phase, i, n)
        return out

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.sim.counts)


# -- talking to the stack ------------------------------------------------------------------------


@dataclass
class Stack:
    settings: Any
    endpoints: Any
    pids: dict[str, int]
    ports: dict[str, int]
    components: dict[str, dict[str, Any]]

    @property
    def workers(self) -> list[str]:
        return sorted(n for n in self.pids if n.startswith("worker"))


class Counters:
    """The views' own counters in Redis."""

    def __init__(self, redis_url: str, prefix: str):
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.prefix = prefix

    def accounted(self) -> int:
        processed, dead = self.client.hmget(self.prefix + "stats", "processed", "dead_lettered")
        return int(processed or 0) + int(dead or 0)

    def stats(self) -> dict[str, int]:
        raw = self.client.hgetall(self.prefix + "stats")
        return {k.decode(): int(v) for k, v in raw.items()}

    def offsets(self) -> dict[str, int]:
        raw = self.client.hgetall(self.prefix + "offsets")
        return {k.decode(): int(v) for k, v in raw.items()}

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])


def _http_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def sink_stats(stack: Stack) -> dict[str, Any]:
    return _http_json(f"http://127.0.0.1:{stack.ports['sink']}/stats")


#: worker histograms read at both ends of the throughput window
_WORKER_SUMS = (
    "omni_batch_seconds_sum",
    "omni_redis_apply_seconds_sum",
    "omni_output_seconds_sum",
    "omni_batch_events_sum",
    "omni_batch_events_count",
    "omni_gc_pause_seconds_sum",
)


def worker_sums(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = dict.fromkeys(_WORKER_SUMS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] += sample.value
    return found


def worker_drain(port: int) -> str:
    """The faust drain loop a worker runs (``patched`` or ``stock``), from its /readyz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return str(json.loads(response.read()).get("faust_drain", "stock"))
    except (OSError, ValueError):
        return "unknown"


class Producer:
    """Sends pre-encoded messages with the producer SDK's configuration."""

    def __init__(self, bootstrap: str, config: dict[str, str]):
        from confluent_kafka import Producer as KafkaProducer

        from connectors.kafka import producer_config

        self._producer = KafkaProducer(producer_config(bootstrap, config))
        self.sent = 0
        self.failed = 0

    def send(self, wire: Wire, on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        topic, key, value = wire

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self.failed += 1
            if on_delivery is not None:
                on_delivery(err, msg)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        self.sent += 1

    def flush(self, timeout: float = 60.0) -> None:
        if self._producer.flush(timeout) > 0 or self.failed:
            raise BenchError(f"{self.failed} messages not delivered to the broker")

    def close(self) -> None:
        """Let go of the client before the broker stops (it would log reconnects)."""
        self._producer.flush(1.0)
        del self._producer


class Sampler(threading.Thread):
    """Samples each worker's RSS once a second while it runs."""

    def __init__(self, pids: dict[str, int]):
        super().__init__(name="bench-sampler", daemon=True)
        self.pids = pids
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in pids}
        self.stopped = threading.Event()

    def sample(self) -> None:
        now = time.monotonic()
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.samples[name].append((now, rss_bytes(pid)))

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.sample()

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)
        self.sample()


# -- the run ------------------------------------------------------------------------------------


def _embedded_only() -> None:
    external = [
        name
        for name in ("OMNI_KAFKA_BOOTSTRAP", "OMNI_REDIS_URL", "OMNI_CLICKHOUSE_DSN")
        if os.environ.get(name)
    ]
    if external:
        raise BenchError(f"omni bench runs on its own embedded stack: unset {', '.join(external)}")


def _start_stack(config: BenchConfig, home: Path, note: Note) -> Stack:
    from connectors import stack
    from streams.endpoints import resolve
    from streams.settings import Settings
    from streams.simulate import campaign_budgets

    overrides: dict[str, Any] = {"home": home}
    if config.workers:
        overrides["workers"] = config.workers
    settings = Settings(**overrides)
    if not settings.campaign_budgets:  # the simulated campaigns run past their budgets
        settings = Settings(**overrides, campaign_budgets=campaign_budgets(config.members))
    state = stack.up(settings, on_progress=note)
    components = state["components"]
    return Stack(
        settings,
        resolve(settings),
        {name: c["pid"] for name, c in components.items()},
        {name: c["port"] for name, c in components.items()},
        {
            name: {"pid": c["pid"], "start_time": c.get("start_time"), "log": c["log"]}
            for name, c in components.items()
        },
    )


def _wait_accounted(
    stack: Stack,
    counters: Counters,
    produced: int,
    phase: str,
    progress: Progress,
    timeout: float,
    since: int = 0,
) -> float:
    """Wait until the views account for ``produced`` messages (progress shown from
    ``since``); returns when they did."""
    from connectors import stack as stack_mod

    deadline = time.monotonic() + timeout
    checked = 0.0
    while True:
        done = counters.accounted()
        progress(phase, max(0, done - since), produced - since)
        if done >= produced:
            return time.monotonic()
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"{phase}: only {done} of {produced} messages after {timeout:.0f}s")
        if now - checked > 2.0:
            stack_mod.raise_if_failed(stack.settings)
            checked = now
        time.sleep(0.05)


def _wait_sink(stack: Stack, counters: Counters, timeout: float) -> None:
    """Until the sink wrote as many facts as the workers emitted (best effort)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        facts = counters.stats().get("facts", 0)
        if sink_stats(stack).get("rows:touchpoint_facts", 0) >= facts:
            return
        time.sleep(0.2)


def _cpu(stack: Stack) -> dict[str, float]:
    found = {}
    for name, pid in stack.pids.items():
        with contextlib.suppress(OSError):
            found[name] = cpu_seconds(pid)
    found["bench"] = cpu_seconds(os.getpid())
    return found


def _changes(samples: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """The samples at which the count moved: a worker batch landed. The first sample is
    where counting began, not a landing, and is left out: a rate from it would count the
    first batch over less than its own time."""
    out = samples[:1]
    for sample in samples[1:]:
        if sample[1] != out[-1][1]:
            out.append(sample)
    return out[1:]


def _rate_between(changes: list[tuple[float, int]], a: float, b: float) -> float | None:
    """Events/s between the first and the last batch that landed within [a, b]: the
    views' counters move a whole batch at a time, so a window cut between two batches
    would count part of the time and none of the work."""
    inside = [(t, c) for t, c in changes if a <= t <= b]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (ta, ca), (tb, cb) = inside[0], inside[-1]
    return (cb - ca) / (tb - ta)


def _throughput(
    config: BenchConfig,
    stack: Stack,
    counters: Counters,
    producer: Producer,
    pool: list[Wire],
    rate_guess: float,
    progress: Progress,
) -> tuple[dict[str, Any], int]:
    """Keep a backlog on the input topics for ``config.seconds`` and measure; returns
    the results and how many messages of ``pool`` were produced."""
    workers = len(stack.workers)
    # always a few full batches waiting for every worker, and ~5 s of work at most
    backlog = max(2 * workers * stack.settings.batch_max_events, int(rate_guess * 5))
    used = 0
    produced_before = counters.accounted()  # everything before this phase is accounted

    def top_up(n: int) -> None:
        nonlocal used
        for wire in pool[used : used + n]:
            producer.send(wire)
        used += len(pool[used : used + n])

    top_up(backlog * 2)
    producer.flush()
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    cpu0, sink0 = _cpu(stack), sink_stats(stack)
    metrics0 = {name: worker_sums(stack.ports[name]) for name in stack.workers}
    done = counters.accounted()
    samples.append((time.monotonic(), done))  # a count is stamped when it arrived
    end = t0 + config.seconds
    ran_dry = False
    shown = 0.0
    while True:
        time.sleep(0.05)
        done = counters.accounted()
        now = time.monotonic()
        samples.append((now, done))
        if now - shown >= 0.5:
            progress("throughput", min(now - t0, config.seconds), config.seconds)
            shown = now
        if now >= end:
            break
        in_flight = produced_before + used - done
        if in_flight < backlog:
            if used < len(pool):
                top_up(backlog)
            elif in_flight <= 0:
                ran_dry = True
                break
    progress("throughput", config.seconds, config.seconds)
    t1 = samples[-1][0]
    cpu1, sink1 = _cpu(stack), sink_stats(stack)
    metrics1 = {name: worker_sums(stack.ports[name]) for name in stack.workers}
    producer.flush()
    changes = _changes(samples)
    rate = _rate_between(changes, t0, t1) or 0.0
    inside = [c for c in changes if t0 <= c[0] <= t1]
    measured_s = inside[-1][0] - inside[0][0] if len(inside) > 1 else 0.0
    window = t1 - t0
    events = rate * window  # the window's work at the measured rate (CPU is per window)

    # the rate over consecutive slices of the window: sustained, or not?
    slice_s = max(1.0, config.seconds / 6)
    slices = []
    a = t0
    while a + slice_s <= t1 + 0.01:
        found = _rate_between(changes, a, a + slice_s)
        slices.append(round(found, 1) if found is not None else None)
        a += slice_s

    worker_cpu = sum(cpu1[n] - cpu0[n] for n in stack.workers)
    per_k = 1000 / events if events else 0.0
    cpu = {
        "worker_s_per_1000_events": round(worker_cpu * per_k, 4),
        "worker_utilisation": round(worker_cpu / window / workers, 3) if window else 0.0,
        "per_component_s_per_1000_events": {
            name: round((cpu1[name] - cpu0[name]) * per_k, 4)
            for name in sorted(cpu1)
            if name in cpu0
        },
    }
    delta = _worker_delta(metrics0, metrics1)
    batched = delta["omni_batch_events_sum"]
    batch, redis_s, output = (
        delta["omni_batch_seconds_sum"],
        delta["omni_redis_apply_seconds_sum"],
        delta["omni_output_seconds_sum"],
    )
    ms_per_k = 1_000_000 / batched if batched else 0.0
    where = {
        "batches": int(delta["omni_batch_events_count"]),
        "mean_batch_events": _mean_batch(delta),
        "ms_per_1000_events": {
            "decode_validate_plan_emit": round((batch - redis_s - output) * ms_per_k, 1),
            "redis_apply": round(redis_s * ms_per_k, 1),
            "kafka_output": round(output * ms_per_k, 1),
            # wall time in no batch; with OMNI_BATCH_OVERLAP, batches overlap instead
            "outside_batches": round(max(0.0, window * workers - batch) * ms_per_k, 1),
            "overlapped": round(max(0.0, batch - window * workers) * ms_per_k, 1),
        },
        # paused in the garbage collector, wherever it struck (inside batches or not)
        "gc_ms_per_1000_events": round(delta["omni_gc_pause_seconds_sum"] * ms_per_k, 1),
    }
    rows = sink1["rows_written"] - sink0["rows_written"]
    facts = sink1.get("rows:touchpoint_facts", 0) - sink0.get("rows:touchpoint_facts", 0)
    result = {
        "events": inside[-1][1] - inside[0][1] if len(inside) > 1 else 0,
        "window_s": round(measured_s, 2),
        "requested_s": config.seconds,
        "backlog_ran_out": ran_dry,
        "events_per_s": round(rate, 1),
        "events_per_s_per_worker": round(rate / workers, 1),
        "slice_s": round(slice_s, 1),
        "events_per_s_by_slice": slices,
        "cpu": cpu,
        "where_the_time_goes": where,
        "sink": {
            "rows": rows,
            "rows_per_s": round(rows / window, 1) if window else 0.0,
            "fact_rows_per_s": round(facts / window, 1) if window else 0.0,
            "facts_behind_at_end": max(
                0, counters.stats().get("facts", 0) - sink1.get("rows:touchpoint_facts", 0)
            ),
        },
    }
    return result, used


class OffsetsPoller(threading.Thread):
    """Reads the views' ``offsets`` record every few ms and keeps each advance."""

    def __init__(self, counters: Counters):
        super().__init__(name="bench-offsets", daemon=True)
        self.counters = counters
        self.seen: dict[str, list[tuple[int, float]]] = {}
        self.stopped = threading.Event()
        self.polls = 0

    def run(self) -> None:
        last: dict[str, int] = {}
        while not self.stopped.is_set():
            offsets = self.counters.offsets()
            now = time.monotonic()  # when the reply is in: visible by then at the latest
            self.polls += 1
            for tp, offset in offsets.items():
                if last.get(tp) != offset:
                    last[tp] = offset
                    self.seen.setdefault(tp, []).append((offset, now))
            time.sleep(POLL_INTERVAL_S)

    def visible_at(self, tp: str, offset: int) -> float | None:
        seen = self.seen.get(tp, [])
        i = bisect.bisect_left(seen, (offset, float("-inf")))
        return seen[i][1] if i < len(seen) else None


def _latency(
    config: BenchConfig,
    stack: Stack,
    counters: Counters,
    producer: Producer,
    wires: list[Wire],
    progress: Progress,
) -> dict[str, Any]:
    poller = OffsetsPoller(counters)
    poller.start()
    sent_at: list[float] = [0.0] * len(wires)
    where: list[tuple[str, int] | None] = [None] * len(wires)

    def recorder(i: int) -> Callable[[Any, Any], None]:
        def record(err: Any, msg: Any) -> None:
            if err is None:
                where[i] = (f"{msg.topic()}/{msg.partition()}", msg.offset())

        return record

    before = counters.accounted()
    cpu0 = _cpu(stack)
    batches0 = {name: worker_sums(stack.ports[name]) for name in stack.workers}
    started = time.monotonic()
    for i, wire in enumerate(wires):
        ahead = started + i / config.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        sent_at[i] = time.monotonic()
        producer.send(wire, recorder(i))
        if i % 250 == 0:
            progress("latency", i, len(wires))
    sending_s = time.monotonic() - started
    cpu1 = _cpu(stack)
    batches1 = {name: worker_sums(stack.ports[name]) for name in stack.workers}
    progress("latency", len(wires), len(wires))
    producer.flush()
    try:
        _wait_accounted(
            stack, counters, before + len(wires), "latency tail", progress, 120 + sending_s, before
        )
        time.sleep(POLL_INTERVAL_S * 4)  # one more poll after the last advance
    finally:
        poller.stopped.set()
        poller.join(5)
    latencies = []
    slices: list[list[float]] = [[] for _ in range(LATENCY_SLICES)]
    for i, found in enumerate(where):
        if found is None:
            continue
        visible = poller.visible_at(*found)
        if visible is not None:
            latency = max(0.0, visible - sent_at[i]) * 1000
            latencies.append(latency)
            slices[min(LATENCY_SLICES - 1, i * LATENCY_SLICES // len(wires))].append(latency)
    latencies.sort()
    return {
        "events": len(wires),
        "measured": len(latencies),
        "rate_target": config.rate,
        "rate_achieved": round(len(wires) / sending_s, 1) if sending_s else 0.0,
        "seconds": round(sending_s, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else 0.0,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        "p99_ms_by_slice": [round(percentile(sorted(sl), 99), 1) for sl in slices],
        # what shared the cores meanwhile (CPU seconds per second: 1.0 = one core busy),
        # and the batches the steady rate made
        "cores_busy": {
            name: round((cpu1[name] - cpu0[name]) / sending_s, 3)
            for name in sorted(cpu1)
            if name in cpu0 and sending_s
        },
        "mean_batch_events": _mean_batch(_worker_delta(batches0, batches1)),
        "poll_interval_ms": POLL_INTERVAL_S * 1000,
        "polls": poller.polls,
    }


def _worker_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, float]:
    """How far each of the workers' metric sums (``worker_sums``) moved, all workers added."""
    return {k: sum(after[n][k] - before[n][k] for n in after) for k in _WORKER_SUMS}


def _mean_batch(delta: dict[str, float]) -> float:
    count = delta["omni_batch_events_count"]
    return round(delta["omni_batch_events_sum"] / count, 1) if count else 0.0


def _redis_memory(counters: Counters, used_before: int, processed: int) -> dict[str, Any]:
    """``used_memory`` grown since the stack started, per live member (OneID), and an
    estimate of where it went: MEMORY USAGE of up to 500 sampled keys per key kind."""
    client, prefix = counters.client, counters.prefix.encode()
    rng = random.Random(1)
    counts: dict[str, int] = {}
    samples: dict[str, list[bytes]] = {}
    for key in client.scan_iter(match=prefix + b"*", count=5000):
        kind = key[len(prefix) :].split(b":", 1)[0].decode(errors="replace")
        n = counts[kind] = counts.get(kind, 0) + 1
        chosen = samples.setdefault(kind, [])
        if len(chosen) < 500:
            chosen.append(key)
        elif (j := rng.randrange(n)) < 500:
            chosen[j] = key
    kinds = {}
    for kind, keys in sorted(samples.items()):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = [s for s in pipe.execute() if s is not None]
        mean = statistics.fmean(sizes) if sizes else 0.0
        kinds[kind] = {"keys": counts[kind], "bytes_per_key": round(mean, 1),
                       "bytes": int(mean * counts[kind])}  # fmt: skip
    used_after = counters.used_memory()
    members = counters.stats().get("members", 0)
    member_kinds = ("i", "m", "mi", "l", "ma")
    member_bytes = sum(kinds.get(k, {}).get("bytes", 0) for k in member_kinds)
    delta = used_after - used_before
    return {
        "members": members,
        "used_memory_before": used_before,
        "used_memory_after": used_after,
        "used_memory_delta": delta,
        "bytes_per_member": round(delta / members, 1) if members else 0.0,
        "member_keys_bytes_per_member": round(member_bytes / members, 1) if members else 0.0,
        "dedupe_bytes_per_event": round(kinds.get("e", {}).get("bytes", 0) / processed, 1)
        if processed
        else 0.0,
        "by_kind": kinds,
    }


def _confluent_baseline(stack: Stack, total: int, timeout: float) -> dict[str, Any]:
    """A plain confluent-kafka consumer reading every input partition from the start,
    pass after pass (assigned, not subscribed: no group join in the way), until it has
    read for two seconds in all."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from schemas.topics import input_topics

    settings = stack.settings
    consumer = Consumer(
        {
            **stack.endpoints.kafka_config,
            "bootstrap.servers": stack.endpoints.kafka_bootstrap,
            "group.id": f"{settings.app_id}-bench-confluent-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    topics = list(input_topics(settings.topic_prefix))
    found = consumer.list_topics(timeout=10).topics
    partitions = [
        TopicPartition(topic, p, OFFSET_BEGINNING)
        for topic in topics
        for p in found[topic].partitions
    ]
    events, measured, passes = 0, 0.0, 0
    deadline = time.monotonic() + timeout
    try:
        while measured < 2.0 and passes < 20 and time.monotonic() < deadline:
            consumer.assign(partitions)
            count, first, first_n, last = 0, None, 0, None
            while count < total and time.monotonic() < deadline:
                got = [
                    m for m in consumer.consume(num_messages=10_000, timeout=0.05) if not m.error()
                ]
                if not got:
                    continue
                now = time.monotonic()
                if first is None:
                    first, first_n = now, len(got)
                count += len(got)
                last = now
            consumer.unassign()
            passes += 1
            if first is None or last is None or count < total:
                break
            # from the first fetch that returned to the last: the first one's records
            # arrived before the clock started
            events += count - first_n
            measured += last - first
    finally:
        consumer.close()
    return {
        "passes": passes,
        "events": events,
        "window_s": round(measured, 3),
        "events_per_s": round(events / measured, 1) if measured > 0 else 0.0,
    }


def _bare_faust_baseline(
    config: BenchConfig,
    stack: Stack,
    total: int,
    progress: Progress,
    fast_drain: bool | None = None,
) -> dict[str, Any]:
    """Bare faust agents over the run's topics. ``fast_drain``: ``OMNI_FAUST_FAST_DRAIN``
    for them (None: the stack's setting). The result names the drain loop that ran."""
    from connectors.embedded import ManagedProcess
    from streams import bare_agent

    settings = stack.settings
    drain_env = {} if fast_drain is None else {"OMNI_FAUST_FAST_DRAIN": str(fast_drain).lower()}
    modes: set[str] = set()
    group = f"{settings.app_id}-bench-bare-{uuid.uuid4().hex[:8]}"
    logs = settings.home.resolve() / "logs"
    status_dir = settings.home.resolve() / "bare-agent"
    status_dir.mkdir(parents=True, exist_ok=True)
    procs: list[ManagedProcess] = []
    statuses: list[Path] = []

    def received() -> int:
        n = 0
        for path in statuses:
            status = bare_agent.read_status(path)
            if "events" in status:
                n += int(status["events"])
                modes.add(str(status.get("faust_drain", "stock")))
        return n

    try:
        for i in range(1, len(stack.workers) + 1):
            status = status_dir / f"{group}-{i}.json"  # a file per run: none read stale
            status.unlink(missing_ok=True)
            statuses.append(status)
            env = {
                **bare_agent.agent_env(settings, stack.endpoints.kafka_bootstrap, group, status),
                **drain_env,
            }
            proc = ManagedProcess(
                f"bare-faust-{i}",
                bare_agent.COMMAND,
                0,
                logs / f"bare-faust-{i}.log",
                health=status.exists,
                env=env,
            )
            procs.append(proc.start())
        for proc in procs:
            proc.wait_healthy(90)
        # the window opens once events flow (every agent joined, the group settled)
        deadline = time.monotonic() + 60
        while received() == 0:
            if time.monotonic() > deadline:
                raise BenchError(f"bare faust agents received nothing; see {logs}")
            time.sleep(0.1)
        # skip the first second (joining, first fetches), unless the agents would read
        # everything in it: then the window opens at their first events, never empty
        t0, n0 = time.monotonic(), received()
        warm_until = t0 + 1.0
        while time.monotonic() < warm_until and received() < total:
            time.sleep(0.05)
        if received() < total:
            t0, n0 = time.monotonic(), received()
        pids = [p.pid for p in procs if p.pid]
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        t1, n1 = t0, n0
        while t1 - t0 < config.baseline_seconds and n1 < total:
            time.sleep(0.25)
            t1, n1 = time.monotonic(), received()
            progress("bare faust", min(t1 - t0, config.baseline_seconds), config.baseline_seconds)
        cpu1 = sum(cpu_seconds(pid) for pid in pids)
    finally:
        for proc in procs:
            proc.stop(15)
    window = t1 - t0
    events = n1 - n0
    return {
        "processes": len(procs),
        "faust_drain": "/".join(sorted(modes)) or "unknown",
        "pids": [{"pid": p.pid, "start_time": p.start_time} for p in procs],
        "events": events,
        "window_s": round(window, 2),
        "events_per_s": round(events / window, 1) if window > 0 else 0.0,
        "cpu_s_per_1000_events": round((cpu1 - cpu0) * 1000 / events, 4) if events else 0.0,
    }


def _rss(sampler: Sampler, since: float) -> dict[str, Any]:
    per_worker = {}
    for name, samples in sampler.samples.items():
        kept = [rss for t, rss in samples if t >= since]
        if not kept:
            continue
        start, end = kept[0], kept[-1]
        per_worker[name] = {
            "start_mb": round(start / 2**20, 1),
            "end_mb": round(end / 2**20, 1),
            "max_mb": round(max(kept) / 2**20, 1),
            "growth_pct": round((end - start) / start * 100, 1),
            "samples": len(kept),
        }
    growth = max((abs(w["growth_pct"]) for w in per_worker.values()), default=0.0)
    return {"workers": per_worker, "max_abs_growth_pct": growth}


def _targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pipe, lat, red, rss = (
        result["pipeline"],
        result["latency"],
        result["redis"],
        result["rss"],
    )
    # against the faster of the bare agents measured (the framework's ceiling)
    shares = [
        result["ratios"].get(key)
        for key in ("pipeline_vs_bare_faust", "pipeline_vs_bare_faust_stock")
    ]
    ratio = min((x for x in shares if x is not None), default=None)
    return {
        "pipeline_vs_bare_faust": {
            "target": f">= {TARGET_BARE_FAUST_SHARE:.0%} of the faster bare faust",
            "value": "no baseline" if ratio is None else f"{ratio:.0%}",
            "met": ratio is not None and ratio >= TARGET_BARE_FAUST_SHARE,
        },
        "events_per_s_per_worker": {
            "target": f"toward {TARGET_EVENTS_PER_S_PER_WORKER:,} events/s per worker",
            "value": f"{pipe['events_per_s_per_worker']:,.0f} "
            f"({pipe['events_per_s_per_worker'] / TARGET_EVENTS_PER_S_PER_WORKER:.0%})",
            "met": pipe["events_per_s_per_worker"] >= TARGET_EVENTS_PER_S_PER_WORKER,
        },
        "latency_p99": {
            "target": f"p99 <= {TARGET_P99_MS:.0f} ms at {lat['rate_target']:.0f} events/s",
            "value": f"{lat['p99_ms']:.0f} ms",
            "met": lat["p99_ms"] <= TARGET_P99_MS
            and lat["measured"] > 0
            and lat["rate_target"] >= TARGET_P99_RATE,
        },
        # the target counts what a member is (identity, points, profile: keys i, mi, m, l,
        # ma); the all-in figure (dedupe records per event, orders, stock, aggregates and
        # Redis's own overhead per key) is shown beside it
        "redis_bytes_per_member": {
            "target": f"<= {TARGET_REDIS_BYTES_PER_MEMBER} bytes per member (identity, points, "
            f"profile) at {TARGET_REDIS_MEMBERS:,} members",
            "value": f"{red['member_keys_bytes_per_member']:.0f} bytes at {red['members']:,} "
            f"members (all keys: {red['bytes_per_member']:.0f})",
            "met": red["member_keys_bytes_per_member"] <= TARGET_REDIS_BYTES_PER_MEMBER
            and red["members"] >= TARGET_REDIS_MEMBERS,
        },
        "worker_rss_flat": {
            "target": f"worker RSS within {TARGET_RSS_GROWTH:.0%} over a "
            f"{TARGET_SOAK_S / 60:.0f}-minute soak",
            "value": f"{rss['max_abs_growth_pct']:.1f}% over {rss['soak_s']:.0f} s"
            + ("" if rss["soak_s"] >= TARGET_SOAK_S else " (too short: --soak-seconds 600)"),
            "met": rss["max_abs_growth_pct"] <= TARGET_RSS_GROWTH * 100
            and rss["soak_s"] >= TARGET_SOAK_S,
        },
    }


def run(
    config: BenchConfig,
    progress: Progress = lambda *_: None,
    note: Note = lambda _: None,
) -> dict[str, Any]:
    """One benchmark run on a fresh embedded stack under a temporary home, stopped at the
    end whatever happens. Returns every number as one JSON-able dict."""
    from connectors import stack as stack_mod

    _embedded_only()
    if config.seconds <= 0 or config.rate <= 0 or config.members < 10:
        raise BenchError("--seconds and --rate must be positive, --members at least 10")
    home = Path(tempfile.mkdtemp(prefix="omni-bench-"))
    about = machine()
    started = time.monotonic()
    note(f"omni bench: {config.members:,} members, {config.seconds:.0f} s window; home {home}")
    stack: Stack | None = None
    sampler: Sampler | None = None
    producer: Producer | None = None
    ok = False
    phases: dict[str, float] = {}
    clock = [started]

    def mark(phase: str) -> None:
        now = time.monotonic()
        phases[phase] = round(now - clock[0], 1)
        clock[0] = now

    try:
        # not yet the stack's prefix: read it from the settings the stack will use
        from streams.settings import Settings

        workload = Workload(config.members, config.seed, Settings(home=home).topic_prefix)
        warmup = workload.take(config.warmup_events, progress, "generating (warm-up)")
        mark("generate_warmup")
        stack = _start_stack(config, home, note)
        counters = Counters(stack.endpoints.redis_url, f"{stack.settings.topic_prefix}:")
        used_before = counters.used_memory()
        producer = Producer(
            stack.endpoints.kafka_bootstrap,
            {**stack.endpoints.kafka_config, "linger.ms": _producer_linger(config)},
        )
        sampler = Sampler({n: stack.pids[n] for n in stack.workers})
        sampler.start()
        mark("stack_start")

        # warm-up: its rate sizes the backlog of the throughput phase
        t = time.monotonic()
        for wire in warmup:
            producer.send(wire)
        producer.flush()
        done_at = _wait_accounted(stack, counters, len(warmup), "warm-up", progress, 300)
        warm_rate = len(warmup) / max(0.001, done_at - t)
        _wait_sink(stack, counters, 60)
        mark("warmup")

        steady_s = max(config.latency_seconds, config.soak_seconds)
        steady_n = max(1, int(config.rate * steady_s))
        # the window's work at the warm-up rate and then some, plus the backlog kept
        backlog = max(2 * len(stack.workers) * stack.settings.batch_max_events, warm_rate * 5)
        pool = workload.take(int(warm_rate * config.seconds * 1.4 + 2 * backlog), progress)
        mark("generate")
        rss_since = time.monotonic()
        throughput, used = _throughput(config, stack, counters, producer, pool, warm_rate, progress)
        produced = len(warmup) + used
        drained = counters.accounted()
        _wait_accounted(stack, counters, produced, "draining", progress, 600, drained)
        _wait_sink(stack, counters, 120)
        mark("throughput_and_drain")

        steady = pool[used : used + steady_n]
        if len(steady) < steady_n:
            steady += workload.take(steady_n - len(steady), progress, "generating (steady)")
        del pool
        steady_since = time.monotonic()
        latency = _latency(config, stack, counters, producer, steady, progress)
        produced += len(steady)
        sampler.stop()
        rss = _rss(sampler, rss_since)
        rss["soak_s"] = round(time.monotonic() - rss_since, 1)
        # the same over the steady phase alone: does memory keep growing at a steady rate,
        # once the backlog window has taken the working set to its size?
        rss["steady"] = {
            **_rss(sampler, steady_since),
            "seconds": round(time.monotonic() - steady_since, 1),
        }
        _wait_sink(stack, counters, 120)
        mark("latency")

        stats = counters.stats()
        redis_memory = _redis_memory(counters, used_before, stats.get("processed", 0))
        sink_end = sink_stats(stack)
        mark("redis_memory")
        note("baselines on the same topics: confluent-kafka consumer, bare faust agent(s)")
        # a baseline that fails costs the run only its own numbers (it ends the bench last)
        baselines: dict[str, Any] = {
            "confluent_kafka": _baseline(
                "confluent_kafka", note, lambda: _confluent_baseline(stack, produced, 120)
            ),
            "bare_faust": _baseline(
                "bare_faust", note, lambda: _bare_faust_baseline(config, stack, produced, progress)
            ),
        }
        if baselines["bare_faust"].get("faust_drain") == "patched":
            # the stock framework too, for comparison
            note("bare faust agent(s) again, with faust's own drain loop")
            baselines["bare_faust_stock"] = _baseline(
                "bare_faust_stock",
                note,
                lambda: _bare_faust_baseline(config, stack, produced, progress, fast_drain=False),
            )
        mark("baselines")
        result: dict[str, Any] = {
            "config": {
                **asdict(config),
                "producer_linger_ms": _producer_linger(config),
                "workers": len(stack.workers),
                "topic_partitions": stack.settings.topic_partitions,
                "batch_max_events": stack.settings.batch_max_events,
                "batch_max_wait_s": stack.settings.batch_max_wait_s,
                "faust_drain": "/".join(
                    sorted({worker_drain(stack.ports[n]) for n in stack.workers})
                ),
            },
            "machine": about,
            "workload": {
                "produced": produced,
                "by_kind": workload.counts,
                "simulated_members": config.members,
                "warmup_events_per_s": round(warm_rate, 1),
            },
            "pipeline": {k: v for k, v in throughput.items() if k not in ("cpu", "sink")},
            "sink": {**throughput["sink"], "rows_total": sink_end.get("rows_written", 0)},
            "cpu": throughput["cpu"],
            "latency": latency,
            "rss": rss,
            "redis": redis_memory,
            "baselines": baselines,
            "ratios": ratios(throughput["events_per_s"], baselines),
            "accounted": {
                "produced": produced,
                "processed": stats.get("processed", 0),
                "dead_lettered": stats.get("dead_lettered", 0),
                "duplicates": stats.get("duplicates", 0),
                "facts": stats.get("facts", 0),
                "fact_rows_in_sink": sink_end.get("rows:touchpoint_facts", 0),
                "every_event": stats.get("processed", 0) + stats.get("dead_lettered", 0) == produced
                and sink_end.get("rows:touchpoint_facts", 0) == stats.get("facts", 0),
            },
            "stack": {"home": str(home), "components": stack.components},
            "phases_s": phases,
        }
        result["targets"] = _targets(result)
        ok = True
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if producer is not None:
            producer.close()
        if stack is not None or (home / "stack.json").exists():
            note("stopping the stack ...")
            with contextlib.suppress(stack_mod.NotRunning):
                stack_mod.down(_home_settings(home))
            mark("stack_stop")
        if ok and not failed_baselines(result):
            shutil.rmtree(home, ignore_errors=True)
        else:
            note(f"logs kept under {home / 'logs'}")
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def _baseline(name: str, note: Note, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``measure`` gives, or ``{"error": why}`` when the baseline could not be measured:
    the pipeline's own numbers, measured before it, are kept either way."""
    from confluent_kafka import KafkaException

    from connectors.embedded import StartFailed

    try:
        return measure()
    except (BenchError, StartFailed, TimeoutError, OSError, KafkaException) as exc:
        note(f"baseline {name} failed: {exc}")
        return {"error": str(exc)}


def failed_baselines(result: dict[str, Any]) -> dict[str, str]:
    """The baselines of a run that could not be measured, and why."""
    found = result.get("baselines", {}).items()
    return {name: b["error"] for name, b in found if "error" in b}


#: the ratio of the pipeline to each baseline: its name in ``ratios``, decimals kept
RATIOS = {
    "confluent_kafka": ("pipeline_vs_confluent", 5),
    "bare_faust": ("pipeline_vs_bare_faust", 3),
    "bare_faust_stock": ("pipeline_vs_bare_faust_stock", 3),
}


def ratios(pipeline_rate: float, baselines: dict[str, Any]) -> dict[str, float | None]:
    """The pipeline's throughput as a share of each baseline's; None for a baseline that
    failed or read nothing."""
    shares: dict[str, float | None] = {}
    for name, (key, digits) in RATIOS.items():
        if name in baselines:
            rate = baselines[name].get("events_per_s")
            shares[key] = round(pipeline_rate / rate, digits) if rate else None
    return shares


def _producer_linger(config: BenchConfig) -> int:
    from connectors.kafka import producer_config

    if config.producer_linger_ms is not None:
        return config.producer_linger_ms
    return int(producer_config("")["linger.ms"])


def _home_settings(home: Path) -> Any:
    from streams.settings import Settings

    return Settings(home=home)


# -- the readable report -----------------------------------------------------------------------


def report_rows(r: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(what, value) lines of the readable report."""
    p, lat, cpu, red, rss = r["pipeline"], r["latency"], r["cpu"], r["redis"], r["rss"]
    sink = r["sink"]
    m, c = r["machine"], r["config"]
    yield (
        "machine",
        f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}",
    )
    yield (
        "workload",
        f"{r['workload']['produced']:,} messages, {c['members']:,} simulated members, "
        f"{c['workers']} worker(s), {c['topic_partitions']} partitions, "
        f"faust drain {c.get('faust_drain', 'stock')}",
    )
    yield (
        "pipeline throughput",
        f"{p['events_per_s']:,.0f} events/s over {p['window_s']:.0f} s "
        f"({p['events_per_s_per_worker']:,.0f} per worker)"
        + (" [backlog ran out]" if p["backlog_ran_out"] else ""),
    )
    slices = ", ".join("-" if x is None else f"{x:,.0f}" for x in p["events_per_s_by_slice"])
    yield f"  by {p['slice_s']:.0f} s slice", slices
    yield (
        "latency produce->Redis",
        f"p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
        f"max {lat['max_ms']:.0f} ms ({lat['measured']:,} events at "
        f"{lat['rate_achieved']:,.0f}/s, producers' linger {c.get('producer_linger_ms', 5)} ms)",
    )
    by_slice = ", ".join(f"{x:,.0f}" for x in lat.get("p99_ms_by_slice", []))
    yield f"  p99 by {lat['seconds'] / LATENCY_SLICES:.0f} s slice", f"{by_slice} ms"
    busy = ", ".join(f"{name} {x:.2f}" for name, x in lat.get("cores_busy", {}).items())
    yield "  cores busy meanwhile", f"{busy} (mean batch {lat.get('mean_batch_events', 0):,.0f})"
    yield (
        "sink",
        f"{sink['rows_per_s']:,.0f} rows/s ({sink['fact_rows_per_s']:,.0f} fact rows/s), "
        f"{sink['facts_behind_at_end']:,} facts behind at the window's end",
    )
    yield (
        "CPU per 1,000 events",
        f"workers {cpu['worker_s_per_1000_events']:.3f} s "
        f"(utilisation {cpu['worker_utilisation']:.0%}); "
        + ", ".join(
            f"{k} {v:.3f}"
            for k, v in cpu["per_component_s_per_1000_events"].items()
            if not k.startswith("worker")
        ),
    )
    w = p["where_the_time_goes"]
    yield (
        "worker ms per 1,000 events",
        ", ".join(f"{k} {v:,.0f}" for k, v in w["ms_per_1000_events"].items())
        + f" (mean batch {w['mean_batch_events']:,.0f}); of it in the garbage collector "
        f"{w.get('gc_ms_per_1000_events', 0):,.0f}",
    )
    for name, x in rss["workers"].items():
        yield (
            f"{name} RSS",
            f"{x['start_mb']:.0f} -> {x['end_mb']:.0f} MB (max {x['max_mb']:.0f}, "
            f"{x['growth_pct']:+.1f}%) over {rss['soak_s']:.0f} s",
        )
        steady = rss.get("steady", {}).get("workers", {}).get(name)
        if steady:
            yield (
                "  steady phase alone",
                f"{steady['start_mb']:.0f} -> {steady['end_mb']:.0f} MB (max "
                f"{steady['max_mb']:.0f}, {steady['growth_pct']:+.1f}%) over "
                f"{rss['steady']['seconds']:.0f} s",
            )
    yield (
        "Redis",
        f"{red['bytes_per_member']:,.0f} bytes per member ({red['members']:,} members, "
        f"used_memory +{red['used_memory_delta'] / 2**20:,.1f} MiB); member keys "
        f"{red['member_keys_bytes_per_member']:,.0f} B/member, dedupe "
        f"{red['dedupe_bytes_per_event']:,.0f} B/event",
    )
    yield from baseline_rows(r["baselines"], r["ratios"])
    acc = r["accounted"]
    yield (
        "accounted",
        f"{acc['processed']:,} processed + {acc['dead_lettered']:,} dead-lettered of "
        f"{acc['produced']:,} produced; {acc['fact_rows_in_sink']:,} of {acc['facts']:,} "
        "facts in ClickHouse: " + ("all" if acc["every_event"] else "MISMATCH"),
    )


def baseline_rows(
    baselines: dict[str, Any], shares: dict[str, float | None]
) -> Iterator[tuple[str, str]]:
    """The report's line for each baseline: its rate and the pipeline's share of it, or
    why it could not be measured."""
    for name, (key, digits) in RATIOS.items():
        b = baselines.get(name)
        if b is None:
            continue
        if name == "confluent_kafka":
            what = "confluent-kafka consumer"
        elif name == "bare_faust_stock":
            what = "bare faust agent (stock)"
        else:  # the drain loop it ran with, when it got as far as saying
            what = "bare faust agent" + (f" ({b['faust_drain']})" if "faust_drain" in b else "")
        if "error" in b:
            yield what, f"FAILED: {b['error']}"
            continue
        window = "" if name == "confluent_kafka" else f" over {b['window_s']:.0f} s"
        share = shares.get(key)
        pct = "-" if share is None else f"{share:.{max(0, digits - 3)}%}"
        yield what, f"{b['events_per_s']:,.0f} events/s{window} (pipeline = {pct})"
