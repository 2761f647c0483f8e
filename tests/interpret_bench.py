"""Decoding, validating and planning alone (``TouchpointPipeline.interpret``), on the
bench workload's messages:

    python -m tests.interpret_bench [--messages N] [--members N] [--rounds N]
                                    [--code DIR] [--json]

The first ``messages`` messages of the bench workload (``streams/bench.py``, ``members``
simulated people: 100,000 as in ``omni bench``) are encoded once, then interpreted in a
fresh process per pass, so every pass starts as a worker does, with empty caches. Reported
per variant: microseconds per message (each pass and the median). ``--code DIR`` runs the
same passes with the code of another checkout (``git worktree add DIR REV``), the variants
taking turns, and checks that both planned every message alike (the plan, or the reason it
was refused); exit code 1 if not. docs/benchmarks.md quotes a run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def messages(count: int, members: int, seed: int = 7) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) of the bench workload's first ``count`` messages."""
    from streams.bench import Workload
    from streams.settings import Settings

    return Workload(members, seed, Settings().topic_prefix).take(count)


def one_pass(path: Path, now_ms: int) -> dict[str, Any]:
    """Interpret every message of the file once; time per message and a digest of what
    became of each."""
    from schemas.topics import input_topics
    from streams.pipeline import Inbound, TouchpointPipeline
    from streams.settings import Settings
    from streams.wiring import rules

    settings = Settings()
    wires = pickle.loads(path.read_bytes())
    pipeline = TouchpointPipeline(
        input_topics(settings.topic_prefix),
        rules(settings),
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
    )
    inbound = [Inbound(t, 0, n, k, v) for n, (t, k, v) in enumerate(wires)]
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    seen: list[str] = []
    started = time.perf_counter()
    for msg in inbound:
        try:
            seen.append(repr(pipeline.interpret(msg, now)))
        except Exception as exc:
            seen.append(getattr(exc, "reason", type(exc).__name__))
    elapsed = time.perf_counter() - started
    digest = hashlib.sha256("\n".join(seen).encode()).hexdigest()
    return {"us_per_message": elapsed / len(inbound) * 1e6, "digest": digest}


def run_pass(code: Path, path: Path, now_ms: int) -> dict[str, Any]:
    """``one_pass`` in a fresh process running the code of ``code`` (this file run as a
    script: the other checkout need not have it)."""
    done = subprocess.run(
        [sys.executable, __file__, "--pass", str(path), str(now_ms)],
        cwd=code,
        # the checkout's own packages first; one hash seed, so that reprs of sets agree;
        # one phone key (else each checkout makes its own under its OMNI_HOME)
        env={
            **os.environ,
            "PYTHONPATH": str(code),
            "PYTHONHASHSEED": "0",
            "OMNI_PHONE_HASH_KEY": "interpret-bench",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"a pass in {code} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.interpret_bench", description=__doc__)
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--code", type=Path, help="also run the passes with this checkout")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pass", dest="one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one_pass(Path(args.one[0]), int(args.one[1]))))
        return 0

    codes = {"working tree": ROOT} | ({str(args.code): args.code.resolve()} if args.code else {})
    now_ms = int(time.time() * 1000)
    print(f"encoding {args.messages:,} messages of the bench workload ...", file=sys.stderr)
    passes: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory(prefix="omni-interpret-bench-") as d:
        path = Path(d) / "messages.pickle"
        path.write_bytes(pickle.dumps(messages(args.messages, args.members)))
        for r in range(args.rounds):
            for name, code in codes.items():
                passes[name].append(run_pass(code, path, now_ms))
                print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
    result = {
        "messages": args.messages,
        "members": args.members,
        "variants": {
            name: {
                "us_per_message": [round(p["us_per_message"], 1) for p in got],
                "median": round(statistics.median(p["us_per_message"] for p in got), 1),
            }
            for name, got in passes.items()
        },
        "same_plans": len({p["digest"] for got in passes.values() for p in got}) == 1,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.messages:,} messages, {args.members:,} members, {args.rounds} rounds")
        for name, v in result["variants"].items():
            each = ", ".join(f"{x:.1f}" for x in v["us_per_message"])
            print(f"  {name}: {v['median']:.1f} us per message (median; {each})")
        print(f"  same plans in every pass: {'yes' if result['same_plans'] else 'NO'}")
    return 0 if result["same_plans"] else 1


if __name__ == "__main__":
    sys.exit(main())
