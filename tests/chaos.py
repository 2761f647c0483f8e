"""Fault drills on real processes, end to end: ``make chaos`` or

    python -m tests.chaos [--short | --long] [--json] [--only NAME,...] [--seed N] [--keep]

Starts a Tansu broker and a redis-server (AOF on) on ephemeral loopback ports under a
temporary directory, then runs each scenario against its own tenant (topics, consumer
groups, Redis key prefix, chDB directory) with real sink and worker processes:

* ``worker_sigkill``  workers SIGKILLed at random moments and restarted;
* ``rolling_sigterm`` both workers stopped (SIGTERM) and restarted in turn, under load;
* ``sink_sigkill``    sinks that kill themselves between a ClickHouse insert and its commit;
* ``redis_restart``   redis-server (its own, AOF on) stopped gracefully mid-stream and
                      started again on the same port and directory;
* ``clickhouse_down`` every ClickHouse insert of the sink failing for a while;
* ``malformed_flood`` one message in ten malformed.

Each scenario then compares what the system holds with the plain-Python reference
(tests/reference.py) computed from the very messages sent: every member's points
balance, every SKU@location's on-hand and reserved stock, the counts and sums of the
ClickHouse tables, the stock movements (they must replay to the Redis stock: no gap, no
duplicate), the per-minute aggregates (per bucket, against the reference), and the
counters. "Accounted for" is read back from the system:
messages the views processed plus letters found in the dead-letter topic. The table has
one row per scenario; the exit code is 1 if any mismatch column is not 0 or any message
is not accounted for. Everything started is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors.dlq import read_letters
from connectors.embedded import ManagedProcess, exit_on_sigterm, start_redis
from connectors.errors import ServiceUnavailable
from schemas.models import InventoryAdjustment
from streams.demo import wait_views
from streams.settings import Settings
from streams.simulate import STORES, WAREHOUSES, SimMessage, Simulation
from streams.wiring import dlq_topic, rules

from .harness import (
    Running,
    Services,
    clickhouse_numbers,
    minute_mismatches,
    redis_state,
    reference_amount,
    run_stack,
    send,
    start_services,
    stock_mismatches,
    tenant_settings,
    unique,
)
from .reference import expected_from, points_and_stock


@dataclass(frozen=True)
class Plan:
    """How big one scenario is: messages, send rate (per second; None: as fast as the
    producer goes), how many faults, and how long an outage lasts."""

    events: int
    rate: float | None
    faults: int = 0
    outage_s: float = 0.0


SCENARIOS = (
    "worker_sigkill",
    "rolling_sigterm",
    "sink_sigkill",
    "redis_restart",
    "clickhouse_down",
    "malformed_flood",
)

PROFILES: dict[str, dict[str, Plan]] = {
    "short": {
        "worker_sigkill": Plan(2000, 70.0, faults=2),
        "rolling_sigterm": Plan(2000, 70.0, faults=1),
        "sink_sigkill": Plan(2500, 100.0, faults=2),
        "redis_restart": Plan(2000, 150.0, faults=1, outage_s=3.0),
        "clickhouse_down": Plan(2000, 120.0, outage_s=10.0),
        "malformed_flood": Plan(3000, None),
    },
    "long": {
        "worker_sigkill": Plan(9000, 70.0, faults=5),
        "rolling_sigterm": Plan(8000, 80.0, faults=2),
        "sink_sigkill": Plan(8000, 100.0, faults=4),
        "redis_restart": Plan(8000, 80.0, faults=3, outage_s=5.0),
        "clickhouse_down": Plan(6000, 100.0, outage_s=30.0),
        "malformed_flood": Plan(20000, None),
    },
}

#: share of malformed messages: the usual background, and the flood
MALFORMED = 0.02
FLOOD = 0.10

#: mismatch columns of the table, in order
COLUMNS = ("balances", "stock", "facts", "ledger", "identity", "movements", "minutes",
           "counters", "drill")  # fmt: skip


@dataclass
class Result:
    scenario: str
    fault: str = ""
    events_in: int = 0
    accounted: int = 0
    processed: int = 0
    dead_lettered: int = 0
    mismatches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, column: str, what: str, want: Any, got: Any) -> None:
        if want != got:
            self.mismatches[column] += 1
            self.details.append(f"{column}: {what}: want {want}, got {got}")

    def fail(self, column: str, what: str) -> None:
        self.mismatches[column] += 1
        self.details.append(f"{column}: {what}")

    @property
    def ok(self) -> bool:
        return not any(self.mismatches.values()) and self.accounted == self.events_in > 0


class Producing:
    """``messages`` sent from a thread at ``rate`` per second."""

    def __init__(self, stack: Running, messages: list[SimMessage], rate: float | None):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(stack, messages, rate))
        self.thread.start()

    def _run(self, stack: Running, messages: list[SimMessage], rate: float | None) -> None:
        try:
            send(stack, messages, rate)
        except BaseException as exc:  # reported by the scenario
            self.error = exc

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def accounted_now(stack: Running) -> int:
    stats = stack.views.stats()
    return stats.get("processed", 0) + stats.get("dead_lettered", 0)


class Drill:
    """One run of the scenarios: the shared services, a directory, and every process
    started on the way (stopped by ``stop``)."""

    def __init__(self, root: Path, services: Services, seed: int):
        self.root = root
        self.services = services
        self.seed = seed
        self.stacks: list[Running] = []
        self.extra: list[ManagedProcess] = []

    def settings(self, redis_url: str | None = None, **overrides: object) -> Settings:
        return tenant_settings(
            self.services.bootstrap,
            redis_url or self.services.redis_url,
            self.root / "tenants",
            **overrides,
        )

    def stack(self, settings: Settings, workers: int = 2, sink: bool = True) -> Running:
        return run_stack(settings, workers, sink, self.stacks)

    def stop(self) -> None:
        """Stop every process started so far, all at once (each its own SIGTERM, wait and
        SIGKILL: see ManagedProcess.stop)."""
        procs = [p for s in self.stacks for p in (*s.workers, s.sink, *s.others) if p]
        procs += self.extra
        stopping = [
            threading.Thread(target=p.stop, args=(30,)) for p in {id(p): p for p in procs}.values()
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        self.stacks.clear()
        self.extra.clear()

    # -- traffic --------------------------------------------------------------------
    def messages(self, scenario: str, plan: Plan, malformed: float = MALFORMED) -> list:
        seed = self.seed + SCENARIOS.index(scenario)
        sim = Simulation(plan.events, seed=seed, duplicate_share=0.05,
                         malformed_share=malformed, keep_messages=True)  # fmt: skip
        return list(sim)

    @staticmethod
    def stock_first(stack: Running, messages: list[SimMessage]) -> list[SimMessage]:
        """Send the stock receipts and wait until they are applied: stock arrives before it
        is sold (its own topic would otherwise race the sales, and the reference is exact
        only when no sale meets an empty shelf). Returns the rest."""
        receipts = [m for m in messages if isinstance(m.record, InventoryAdjustment)]
        send(stack, receipts)
        wait_views(stack.views, len(receipts), timeout=120)
        return [m for m in messages if not isinstance(m.record, InventoryAdjustment)]


# -- scenarios ----------------------------------------------------------------------------


def worker_sigkill(drill: Drill, plan: Plan, result: Result) -> tuple[Running, list]:
    stack = drill.stack(drill.settings(topic_partitions=4))
    messages = drill.messages(result.scenario, plan)
    producing = Producing(stack, drill.stock_first(stack, messages), plan.rate)
    rng = random.Random(drill.seed)
    mid_stream = 0
    for _ in range(plan.faults):
        time.sleep(rng.uniform(0.5, 2.5))
        victim = rng.choice(stack.workers)
        mid_stream += producing.alive and accounted_now(stack) < len(messages)
        victim.kill()
        result.check("drill", f"{victim.name} exit code", -9, victim.exit_code)
        stack.restart_worker(victim)
    producing.join()
    result.fault = f"{plan.faults} x SIGKILL of a worker"
    result.check("drill", "kills while messages were still to come", plan.faults, mid_stream)
    return stack, messages


def rolling_sigterm(drill: Drill, plan: Plan, result: Result) -> tuple[Running, list]:
    stack = drill.stack(drill.settings(topic_partitions=4))
    messages = drill.messages(result.scenario, plan)
    producing = Producing(stack, drill.stock_first(stack, messages), plan.rate)
    stops = mid_stream = 0
    for _ in range(plan.faults):
        for worker in list(stack.workers):  # SIGTERM each in turn, then start it again
            time.sleep(3)
            mid_stream += producing.alive and accounted_now(stack) < len(messages)
            worker.stop(45)
            stops += 1
            result.check("drill", f"{worker.name} exit code after SIGTERM", 0, worker.exit_code)
            stack.restart_worker(worker)
    producing.join()
    result.fault = f"{stops} x SIGTERM + restart, rolling"
    result.check("drill", "stops while messages were still to come", stops, mid_stream)
    return stack, messages


def sink_sigkill(drill: Drill, plan: Plan, result: Result) -> tuple[Running, list]:
    stack = drill.stack(drill.settings(topic_partitions=4, sink_batch_rows=250), sink=False)
    messages = drill.messages(result.scenario, plan)
    producing = Producing(stack, drill.stock_first(stack, messages), plan.rate)
    # sinks in a row, each dying after its K-th batch's inserts, before their commit
    for n in range(1, plan.faults + 1):
        k = (2, 3, 1, 4)[(n - 1) % 4]
        doomed = stack.start_extra_sink(f"sink-kill{n}", OMNI_SINK_FAULTS=f"kill_after_insert={k}")
        deadline = time.monotonic() + 120
        while doomed.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        result.check("drill", f"{doomed.name} exit code", -9, doomed.exit_code)
        if "killed between insert and commit" not in doomed.log_path.read_text():
            result.fail("drill", f"{doomed.name} did not die between insert and commit")
    stack.start_sink()
    producing.join()
    result.fault = f"{plan.faults} x sink SIGKILL after insert, before commit"
    return stack, messages


def redis_restart(drill: Drill, plan: Plan, result: Result) -> tuple[Running, list]:
    data, logs = drill.root / "redis-aof", drill.root / "redis-aof-logs"
    redis = start_redis(data, logs, appendonly=True)
    drill.extra.append(redis)
    port = redis.port
    stack = drill.stack(drill.settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    messages = drill.messages(result.scenario, plan)
    producing = Producing(stack, drill.stock_first(stack, messages), plan.rate)
    rng = random.Random(drill.seed)
    mid_stream = 0
    for _ in range(plan.faults):
        time.sleep(rng.uniform(2.0, 4.0))
        mid_stream += producing.alive and accounted_now(stack) < len(messages)
        redis.stop(30)  # SIGTERM: redis-server writes out its AOF and exits
        result.check("drill", "redis-server exit code after SIGTERM", 0, redis.exit_code)
        time.sleep(plan.outage_s)  # the outage itself
        redis = start_redis(data, logs, port=port, appendonly=True)
        drill.extra.append(redis)
    producing.join()
    result.fault = f"{plan.faults} x redis-server stopped {plan.outage_s:.0f}s, restarted"
    result.check("drill", "restarts while messages were still to come", plan.faults, mid_stream)
    if not (data / "appendonlydir").is_dir():
        result.fail("drill", "redis-server kept no append-only file")
    waited = sum("waits: redis" in w.log_path.read_text() for w in stack.workers)
    if not waited:
        result.fail("drill", "no worker saw Redis go away (no batch waited)")
    return stack, messages


def clickhouse_down(drill: Drill, plan: Plan, result: Result) -> tuple[Running, list]:
    stack = drill.stack(drill.settings(topic_partitions=4, sink_batch_rows=250), sink=False)
    messages = drill.messages(result.scenario, plan)
    rest = drill.stock_first(stack, messages)
    fault = f"fail_inserts_s={plan.outage_s:g}"
    sink = stack.start_extra_sink("sink-failing", OMNI_SINK_FAULTS=fault)
    started = time.monotonic()
    stack.use_sink(sink.wait_healthy(90))
    producing = Producing(stack, rest, plan.rate)
    # while inserts fail, events flow through the workers and nothing reaches ClickHouse
    time.sleep(max(0.0, plan.outage_s - (time.monotonic() - started)) / 2)
    flowing = stack.views.stats().get("facts", 0)
    rows = clickhouse_numbers(stack.endpoints)["facts"]
    in_window = time.monotonic() - started < plan.outage_s
    if not (in_window and flowing > 0 and rows == 0):
        result.fail("drill", f"inserts not failing mid-outage ({flowing} facts, {rows} rows)")
    producing.join()
    log = sink.log_path.read_text()
    if "inserts failing (injected)" not in log or "retrying in" not in log:
        result.fail("drill", "the sink never retried a failing insert")
    if not sink.alive:
        result.fail("drill", "the sink died instead of pausing")
    result.fault = f"ClickHouse inserts failing {plan.outage_s:.0f}s"
    return stack, messages


def malformed_flood(drill: Drill, plan: Plan, result: Result) -> tuple[Running, list]:
    stack = drill.stack(drill.settings(topic_partitions=4))
    # stock receipts come first and are never malformed: a higher share of the rest makes
    # one in ten of all messages malformed
    receipts = len(Simulation(1).skus) * (len(STORES) + len(WAREHOUSES))
    share = FLOOD * plan.events / max(1, plan.events - receipts)
    messages = drill.messages(result.scenario, plan, malformed=share)
    producing = Producing(stack, drill.stock_first(stack, messages), plan.rate)
    producing.join()
    bad = sum(m.record is None for m in messages)
    result.fault = f"{bad} malformed ({bad / len(messages):.1%})"
    return stack, messages


RUNNERS: dict[str, Callable[[Drill, Plan, Result], tuple[Running, list]]] = {
    "worker_sigkill": worker_sigkill,
    "rolling_sigterm": rolling_sigterm,
    "sink_sigkill": sink_sigkill,
    "redis_restart": redis_restart,
    "clickhouse_down": clickhouse_down,
    "malformed_flood": malformed_flood,
}


# -- comparison with the reference --------------------------------------------------------


def compare(stack: Running, messages: list[SimMessage], result: Result, timeout: float) -> None:
    """Wait until the system has taken in every message (or ``timeout``), then count every
    difference from the reference into ``result``."""
    produced = len(messages)
    configured = rules(stack.settings)
    expected = expected_from(messages, configured)
    want_members, want_stock = points_and_stock(unique(messages), configured)
    want_balance = sum(want_members.values())
    want_amount = reference_amount(messages, configured)

    try:
        stats = wait_views(stack.views, produced, timeout=timeout)
    except TimeoutError as exc:
        result.fail("counters", str(exc))
        stats = stack.views.stats()
    # the sink trails the workers: wait until the tables hold what the views say was
    # written (or they stop changing), then compare with the reference
    deadline, last, settled = time.monotonic() + timeout, None, 0
    while True:
        try:
            ch = clickhouse_numbers(stack.endpoints)
        except ServiceUnavailable:
            ch = None
        if ch is not None:
            done = (
                ch["facts"] >= stats.get("facts", 0)
                and ch["ledger_points"]
                == stats.get("points_total", 0) - stats.get("points_reversed", 0)
                and ch["merges"] >= stats.get("merges", 0)
            )
            settled = settled + 1 if ch == last else 0
            last = ch
            if done or settled >= 60 or time.monotonic() > deadline:
                break
        elif time.monotonic() > deadline:
            result.fail("facts", "ClickHouse did not answer")
            return
        time.sleep(0.5)
    letters = list(read_letters(stack.endpoints.kafka_bootstrap, dlq_topic(stack.settings)))

    result.events_in = produced
    result.processed = stats.get("processed", 0)
    result.dead_lettered = len(letters)
    result.accounted = result.processed + result.dead_lettered

    got_members, got_stock = redis_state(stack)
    for ids in want_members.keys() | got_members.keys():
        if want_members.get(ids) != got_members.get(ids):
            result.fail(
                "balances",
                f"member {sorted(ids)[:2]}...: want {want_members.get(ids)}, "
                f"got {got_members.get(ids)}",
            )
    for key in sorted(want_stock.keys() | got_stock.keys()):
        want, got = want_stock.get(key, (0, 0)), got_stock.get(key, (0, 0))
        result.check("stock", f"{key} (on_hand, reserved)", want, got)

    result.check("facts", "rows (FINAL)", expected.facts, ch["facts"])
    result.check("facts", "distinct event_ids", expected.facts, ch["facts_distinct_events"])
    result.check("facts", "sum(amount)", want_amount, ch["facts_amount"])
    result.check("facts", "sum(points)", expected.points_total, ch["facts_points"])
    result.check("ledger", "sum(points) = sum of balances", want_balance, ch["ledger_points"])
    # how many merges happen depends on arrival order; what they end with does not
    result.check("identity", "members in Redis", expected.members, stats.get("members", 0))
    result.check("identity", "merges in ClickHouse = in Redis", stats.get("merges", 0),
                 ch["merges"])  # fmt: skip
    result.check("identity", "new members - merges (ClickHouse)", expected.members,
                 ch["facts_new_members"] - ch["merges"])  # fmt: skip

    # stock movements replay to the Redis stock; per-minute rows equal the reference's
    for problem in stock_mismatches(stack, timeout=30):
        result.fail("movements", problem)
    for problem in minute_mismatches(stack, messages, timeout=30):
        result.fail("minutes", problem)

    result.check("counters", "processed + dead-lettered", produced, result.accounted)
    result.check("counters", "dead letters in the topic", expected.malformed, len(letters))
    result.check("counters", "dead-lettered (Redis)", expected.malformed,
                 stats.get("dead_lettered", 0))  # fmt: skip
    result.check("counters", "duplicates", expected.duplicates, stats.get("duplicates", 0))
    result.check("counters", "facts written", expected.facts, stats.get("facts", 0))
    # the reference is exact only if no reservation was refused and no shelf ran empty
    for counter in ("backorders", "stock_discrepancies", "reserved_further"):
        result.check("counters", counter, 0, stats.get(counter, 0))
    down = [w.name for w in stack.workers if not w.alive]
    if down or (stack.sink is not None and not stack.sink.alive):
        result.fail("drill", f"processes down at the end: {down or ['sink']}")


def run_scenario(drill: Drill, name: str, plan: Plan, timeout: float) -> Result:
    result = Result(name)
    started = time.monotonic()
    try:
        stack, messages = RUNNERS[name](drill, plan, result)
        compare(stack, messages, result, timeout)
    except Exception as exc:  # reported as a failed drill, the next scenario still runs
        result.fail("drill", f"{type(exc).__name__}: {exc}")
    finally:
        drill.stop()
    result.seconds = round(time.monotonic() - started, 1)
    return result


# -- output -------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = ["scenario", "fault", "events in", "accounted for", "dead-lettered",
            *(f"{c} ≠" for c in COLUMNS), "s"]  # fmt: skip
    rows = [
        [r.scenario, r.fault, str(r.events_in), str(r.accounted), str(r.dead_lettered),
         *(str(r.mismatches[c]) for c in COLUMNS), f"{r.seconds:.0f}"]
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, ["-" * w for w in widths], *rows]:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n")[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_const", const="short", dest="profile")
    size.add_argument("--long", action="store_const", const="long", dest="profile")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--seed", type=int, default=7001)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(argv)
    profile = args.profile or "long"
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    timeout = 180.0 if profile == "short" else 420.0

    # a SIGTERM (CI timeout, ^C of make) still stops every process started here
    exit_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="omni-chaos-"))
    results: list[Result] = []
    started = time.monotonic()
    try:
        services = start_services(root)
        drill = Drill(root, services, args.seed)
        try:
            for name in names:
                if not args.json:
                    print(f"{name} ({profile}) ...", file=sys.stderr, flush=True)
                results.append(run_scenario(drill, name, PROFILES[profile][name], timeout))
        finally:
            drill.stop()
            services.stop()
    finally:
        ok = len(results) == len(names) and all(r.ok for r in results)
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps({"profile": profile, "ok": ok, "elapsed_s": elapsed,
                          "results": [asdict(r) for r in results]}, indent=2))  # fmt: skip
    else:
        print(table(results))
        for r in results:
            for detail in r.details[:20]:
                print(f"  {r.scenario}: {detail}")
        print(f"{profile} run, {elapsed:.0f}s: " + ("all exact" if ok else "MISMATCHES"))
    if not ok:
        print(f"logs kept in {root}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
