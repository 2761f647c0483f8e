"""The framework's own cost per event: bare faust agents (``streams/bare_agent.py``, the
baseline ``omni bench`` compares the workers with) reading the same pre-filled topics,
this checkout against another one:

    python -m tests.faust_bench [--messages N] [--rounds N] [--code DIR] [--json]

An embedded broker is started and the input topics filled once with ``messages`` messages
(keys of 8 bytes, values of 220 random bytes: a bare agent reads neither). Then, for
``rounds`` rounds, each checkout's bare agent reads all of them in a consumer group of its
own, in a fresh process, the variants taking turns. Per pass: the agent's CPU seconds per
1,000 events and its events/s, from its first events plus 0.5 s until it has read
everything. ``--code DIR`` is another checkout (``git worktree add DIR REV``), run with its
own packages first on the path. Unlike ``omni bench``'s baseline, which reads a topic
being written and shares the machine with the stack, nothing else runs meanwhile, so
passes of one checkout agree to within a few percent on a quiet machine.
docs/benchmarks.md quotes a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
#: a pass that has not read everything by then is reported with what it read
PASS_TIMEOUT_S = 300.0


def fill(bootstrap: str, topics: list[str], messages: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    value = os.urandom(220)
    for i in range(messages):
        while True:
            try:
                producer.produce(topics[i % len(topics)], value=value, key=b"k%07d" % (i % 5000))
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the broker did not take every message")


def one_pass(
    code: Path, settings: Settings, bootstrap: str, home: Path, messages: int
) -> dict[str, float]:
    """One bare agent of ``code`` reading every message, in a group of its own."""
    from streams.bare_agent import COMMAND, agent_env, read_status
    from streams.bench import cpu_seconds

    status = home / f"status-{uuid.uuid4().hex[:8]}.json"
    group = f"faust-bench-{uuid.uuid4().hex[:8]}"
    with (home / "agents.log").open("a") as log:
        proc = subprocess.Popen(
            COMMAND,
            cwd=code,
            env={
                **os.environ,
                **agent_env(settings, bootstrap, group, status),
                "PYTHONPATH": str(code),
            },
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    def received() -> int:
        return int(read_status(status).get("events", 0))

    try:
        deadline = time.monotonic() + 90
        while received() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bare agent of {code} read nothing; see {home}")
            time.sleep(0.05)
        time.sleep(0.5)  # past joining and the first fetches
        t0, n0, cpu0 = time.monotonic(), received(), cpu_seconds(proc.pid)
        while received() < messages and time.monotonic() - t0 < PASS_TIMEOUT_S:
            time.sleep(0.1)
        t1, n1, cpu1 = time.monotonic(), received(), cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    events = n1 - n0
    if events <= 0:
        raise RuntimeError(f"the bare agent of {code} read everything in its first 0.5 s")
    return {"cpu_us_per_event": (cpu1 - cpu0) / events * 1e6, "events_per_s": events / (t1 - t0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faust_bench", description=__doc__)
    ap.add_argument("--messages", type=int, default=150_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--code", type=Path, help="also run the passes with this checkout")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from connectors.embedded import exit_on_sigterm, start_broker
    from connectors.kafka import ensure_topics
    from schemas.topics import input_topics
    from streams.settings import Settings

    exit_on_sigterm()  # the broker and agents started below are stopped on the way out
    codes = {"working tree": ROOT} | ({str(args.code): args.code.resolve()} if args.code else {})
    passes: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory(prefix="omni-faust-bench-") as d:
        home = Path(d)
        broker = start_broker(home)
        try:
            bootstrap = f"127.0.0.1:{broker.port}"
            settings = Settings(home=home)
            topics = list(input_topics(settings.topic_prefix))
            ensure_topics(bootstrap, topics, settings.topic_partitions)
            print(f"filling {len(topics)} topics with {args.messages:,} messages ...",
                  file=sys.stderr)  # fmt: skip
            fill(bootstrap, topics, args.messages)
            for r in range(args.rounds):
                for name, code in codes.items():
                    got = one_pass(code, settings, bootstrap, home, args.messages)
                    passes[name].append(got)
                    print(f"round {r + 1}/{args.rounds}: {name}: "
                          f"{got['cpu_us_per_event']:.1f} us/event, "
                          f"{got['events_per_s']:,.0f} events/s", file=sys.stderr)  # fmt: skip
        finally:
            broker.stop()
    result: dict[str, Any] = {
        "messages": args.messages,
        "variants": {
            name: {
                "cpu_us_per_event": [round(p["cpu_us_per_event"], 1) for p in got],
                "events_per_s": [round(p["events_per_s"]) for p in got],
                "median_cpu_us_per_event": round(
                    statistics.median(p["cpu_us_per_event"] for p in got), 1
                ),
                "median_events_per_s": round(statistics.median(p["events_per_s"] for p in got)),
            }
            for name, got in passes.items()
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.messages:,} messages, {args.rounds} rounds")
        for name, v in result["variants"].items():
            each = ", ".join(f"{x:.1f}" for x in v["cpu_us_per_event"])
            print(f"  {name}: {v['median_cpu_us_per_event']:.1f} CPU us per event (median; "
                  f"{each}), {v['median_events_per_s']:,} events/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
