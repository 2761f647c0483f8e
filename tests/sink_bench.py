"""The sink alone, draining a backlog of the workers' records:

    python -m tests.sink_bench [--rows N] [--batch-rows N[,N...]] [--rounds N]
                               [--code DIR] [--settle S] [--json]

A fresh broker and chDB per run; ``rows`` records are put on the facts topic first (per
event a fact, a ledger entry and a stock movement, every 20th event an identity-log entry,
and per-minute rows, as the workers write them), then one sink process is started and
drains them. Reported per run: the sink process's CPU (user + system, all its threads:
Python, librdkafka, chDB's inserts and merges) per row from its first poll until every
row is written, and again ``settle`` seconds later (merges ClickHouse ran after the last
insert), the wall time, and the rows ClickHouse read as Avro. ``--code DIR`` runs the sink
from another checkout (``git worktree add DIR REV``) as well, the variants taking turns.
docs/benchmarks.md quotes a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from schemas.codec import encode
from streams.bench import cpu_seconds
from streams.wiring import facts_topic

from .harness import Running, services_for_tests, sink_stats, tenant_settings

ROOT = Path(__file__).resolve().parents[1]
#: what the workers put on the facts topic, all of which ``records`` makes
TABLE_TYPES = ("touchpoint_fact", "points_entry", "stock_movement", "identity_event",
               "minute_aggregate")  # fmt: skip


def records(rows: int) -> Iterator[tuple[str, dict[str, Any]]]:
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    n = made = 0
    while made < rows:
        n += 1
        at = {
            "event_time": base + timedelta(milliseconds=37 * n),
            "processed_time": base,
            "source_topic": "omni.store_scan",
            "source_partition": n % 4,
            "source_offset": n,
        }
        one_id, store = f"O{n % 90_000}", f"S{n % 50:03d}"
        made += 3
        yield (
            "touchpoint_fact",
            {
                **at,
                "event_id": f"e{n}",
                "touchpoint_type": "store_scan",
                "channel": "store",
                "store_id": store,
                "one_id": one_id,
                "new_member": n % 7 == 0,
                "order_id": "",
                "campaign_id": "",
                "room_id": "",
                "quantity": 1 + n % 3,
                "amount": Decimal(n % 500) + Decimal("0.50"),
                "points": n % 50,
                "outcome": "",
                "attribution": "",
                "order_status": "",
            },
        )
        yield (
            "points_entry",
            {
                **at,
                "event_id": f"e{n}",
                "rule": "earn:store_scan",
                "one_id": one_id,
                "points": n % 50,
            },
        )
        yield (
            "stock_movement",
            {
                **at,
                "event_id": f"e{n}",
                "sku": f"SKU-{n % 300}",
                "location": store,
                "kind": "sale",
                "on_hand_delta": -1,
                "reserved_delta": 0,
                "on_hand": 1000 - n % 1000,
                "reserved": 0,
                "version": n,
            },
        )
        if n % 20 == 0:
            made += 1
            yield (
                "identity_event",
                {
                    **at,
                    "event_id": f"e{n}",
                    "seq": 0,
                    "action": "merge",
                    "one_id": one_id,
                    "other_one_id": f"O{n + 1}",
                    "reason": "",
                    "points_moved": 5,
                    "identifiers_before": ["phone:h1", "card:c1"],
                    "identifiers_other": ["openid:x"],
                },
            )
        if n % 100 == 0:
            made += 1
            yield (
                "minute_aggregate",
                {
                    "minute": base + timedelta(minutes=n // 1000),
                    "channel": "store",
                    "touchpoint_type": "store_scan",
                    "store_id": store,
                    "events": n,
                    "gmv": Decimal(n),
                    "orders": n // 2,
                    "claims": 0,
                    "refunds": Decimal(0),
                    "processed_time": base,
                },
            )


def run(rows: int, batch_rows: int, code: Path, settle: float) -> dict[str, Any]:
    """One drain on fresh services, under a temporary directory removed afterwards; see
    the module's docstring."""
    with tempfile.TemporaryDirectory(prefix="omni-sink-bench-", ignore_cleanup_errors=True) as d:
        return _drain(Path(d), rows, batch_rows, code, settle)


def _drain(root: Path, rows: int, batch_rows: int, code: Path, settle: float) -> dict[str, Any]:
    services = services_for_tests(root)
    stack = None
    try:
        settings = tenant_settings(
            services.bootstrap, services.redis_url, root, sink_batch_rows=batch_rows
        )
        producer = Producer({"bootstrap.servers": services.bootstrap, "linger.ms": 50})
        sent = 0
        for type_name, record in records(rows):
            producer.produce(facts_topic(settings), value=encode(type_name, record))
            sent += 1
            if sent % 5000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        stack = Running(settings, root / "logs")
        with contextlib.chdir(code):  # the sink runs `python -m streams.cli` from there
            sink = stack.start_sink()
        assert sink.pid is not None
        cpu0, started = cpu_seconds(sink.pid), time.monotonic()
        rows0 = sink_stats(stack)["rows_written"]
        deadline = started + 600
        while (stats := sink_stats(stack))["rows_written"] < sent:
            if not sink.alive or time.monotonic() > deadline:
                sys.exit(
                    f"the sink wrote {stats['rows_written']:,} of {sent:,} rows: {sink.tail()}"
                )
            time.sleep(0.1)
        drained_s, cpu = time.monotonic() - started, cpu_seconds(sink.pid) - cpu0
        time.sleep(settle)
        settled = cpu_seconds(sink.pid) - cpu0
        measured = sent - rows0
        return {
            "rows": measured,
            "batch_rows": batch_rows,
            "cpu_us_per_row": round(cpu / measured * 1e6, 1),
            "settled_cpu_us_per_row": round(settled / measured * 1e6, 1),
            "wall_s": round(drained_s, 2),
            "batches": stats["batches"],
            "rows_avro": stats.get("rows_avro", 0),
        }
    finally:
        if stack is not None:
            stack.stop()
        services.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--batch-rows", default="20000", help="comma-separated: one variant each")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--code", type=Path, help="also run the sink from this checkout")
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from connectors.embedded import exit_on_sigterm

    exit_on_sigterm()  # the stacks started below are stopped on the way out
    codes = {"working tree": ROOT} | ({str(args.code): args.code.resolve()} if args.code else {})
    variants = [(name, int(b)) for name in codes for b in args.batch_rows.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for name, batch in variants:
            label = f"{name}, batches of {batch:,}"
            print(f"round {r + 1}: {label}", file=sys.stderr)
            runs.setdefault(label, []).append(run(args.rows, batch, codes[name], args.settle))
    if args.json:
        print(json.dumps({"rows": args.rows, "runs": runs}, indent=2))
        return 0
    print(f"{args.rows:,} records drained by one sink, {args.rounds} rounds, taking turns")
    for label, done in runs.items():
        cpu = [x["cpu_us_per_row"] for x in done]
        settled = [x["settled_cpu_us_per_row"] for x in done]
        print(
            f"  {label}: sink CPU {', '.join(map(str, cpu))} us/row "
            f"(median {statistics.median(cpu)}; {', '.join(map(str, settled))} "
            f"{args.settle:.0f} s later); wall {', '.join(str(x['wall_s']) for x in done)} s; "
            f"{done[0]['batches']} batches; read as Avro {done[0]['rows_avro']:,} rows"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
