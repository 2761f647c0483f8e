"""The Redis views' script against an earlier version of it, on the same batches:

    python -m tests.views_bench [--against REV] [--events N] [--batch N] [--rounds N] [--json]

The bench workload's first ``events`` messages (``streams/bench.py``) are decoded and
planned once, cut into batches of ``batch``, and applied by ``apply_batch.lua`` as it is
in the working tree and as it was at ``REV`` (git), each variant on a fresh redis-server
of its own with AOF on (as the embedded stack runs it), the batches interleaved between
the variants (``run_variants``), for ``rounds`` rounds. Per event: Redis CPU (``INFO
cpu``), the script call's wall time in the worker, the worker's own CPU for it (encoding
the batch, reading the reply), the script's time inside Redis and the part of it in the
commands it ran (``INFO commandstats``; the rest is Lua itself), and how many Redis
commands the script ran (counted by a copy of the script whose ``redis.call`` counts).
Each round also gives the working tree's times as a share of the earlier script's,
measured side by side.
Then the whole Redis state the two left behind is compared, key by key (sets as sets,
identity logs with their identifier lists sorted: a set's order is the server's): a change
meant to be faster must leave the same state. Exit code 1 if it does not.
docs/benchmarks.md quotes a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "connectors/lua/apply_batch.lua"
PREFIX = "omni:"


def script_at(rev: str | None) -> str:
    if rev is None:
        return (ROOT / SCRIPT).read_text("utf-8")
    shown = subprocess.run(
        ["git", "show", f"{rev}:{SCRIPT}"], cwd=ROOT, capture_output=True, text=True
    )
    if shown.returncode != 0:
        sys.exit(f"cannot read {SCRIPT} at {rev}: {shown.stderr.strip()}")
    return shown.stdout


def counting(script: str) -> str:
    """The script with every ``redis.call`` counted into the hash ``views-bench:calls``."""
    body = script.replace("redis.call(", "_counted(")
    head = (
        "local _CALLS = {}\n"
        "local function _counted(cmd, ...)\n"
        "  _CALLS[cmd] = (_CALLS[cmd] or 0) + 1\n"
        "  return redis.call(cmd, ...)\n"
        "end\n"
    )
    last = body.rindex("return results")
    tail = "for c, n in pairs(_CALLS) do redis.call('HINCRBY', 'views-bench:calls', c, n) end\n"
    return head + body[:last] + tail + body[last:]


def prepared_batches(events: int, batch: int) -> list[Any]:
    from schemas.topics import input_topics
    from streams.bench import Workload
    from streams.pipeline import Inbound, TouchpointPipeline
    from streams.settings import Settings
    from streams.wiring import rules

    # the home holds the key identifiers are hashed with; the prepared batches carry the
    # hashes, so it is not needed afterwards
    with tempfile.TemporaryDirectory(prefix="omni-views-bench-") as home:
        settings = Settings(home=Path(home))
        wires = Workload(100_000, 7, settings.topic_prefix).take(events)
        msgs = [Inbound(t, i % 4, i, k, v) for i, (t, k, v) in enumerate(wires)]
        pipeline = TouchpointPipeline(
            input_topics(settings.topic_prefix),
            rules(settings),
            None,  # type: ignore[arg-type]  (prepare needs no store)
            None,  # type: ignore[arg-type]
        )
        return [pipeline.prepare(msgs[i : i + batch]) for i in range(0, len(msgs), batch)]


def _state(client: Any) -> dict[bytes, Any]:
    """Every key and what it holds, in a form two servers' orders cannot tell apart (nor
    the two forms a stock movement has been logged in)."""
    from connectors.redis_views import _is_move, _move

    def value(key: bytes) -> Any:
        kind = client.type(key).decode()
        if kind == "hash":
            return sorted(client.hgetall(key).items())
        if kind == "set":
            return sorted(client.smembers(key))
        if kind == "list":
            return client.lrange(key, 0, -1)
        if kind == "zset":
            return client.zrange(key, 0, -1, withscores=True)
        raw = client.get(key)
        if key.startswith(PREFIX.encode() + b"e:") and raw.count(b"|") >= 4:
            *head, log = raw.split(b"|", 4)
            entries = []
            for e in json.loads(log):
                if _is_move(e):  # either form it has been written in, as the worker reads it
                    entries.append(["stock", *_move(e)])
                    continue
                for f in ("kept", "moved"):
                    if isinstance(e.get(f), list):
                        e[f] = sorted(e[f])
                entries.append(e)
            return head, sorted(json.dumps(e, sort_keys=True) for e in entries)
        return raw, client.ttl(key) > 0

    return {k: (client.type(k), value(k)) for k in sorted(client.keys("*"))}


def script_time(commandstats: dict[str, Any], events: int) -> dict[str, float]:
    """The script's time inside Redis per event (``INFO commandstats``, which counts the
    commands a script runs under their own names): all of it, and the part spent in those
    commands; the rest is Lua itself (decoding the batch, building keys, results and logs)."""
    script = commandstats.get("cmdstat_evalsha", {}).get("usec", 0)
    outside = ("cmdstat_evalsha", "cmdstat_script", "cmdstat_config", "cmdstat_info")
    commands = sum(v.get("usec", 0) for k, v in commandstats.items() if not k.startswith(outside))
    return {"script_us": script / events, "commands_us": commands / events}


def run_variant(script: str, batches: list[Any], count_calls: bool) -> dict[str, Any]:
    """One script alone over the batches (``run_variants`` with one variant)."""
    return run_variants({"": script}, batches, count_calls)[""]


def run_variants(
    scripts: dict[str, str], batches: list[Any], count_calls: bool
) -> dict[str, dict[str, Any]]:
    """Each script on a fresh redis-server of its own (AOF on, as the embedded stack runs
    it), all servers up at once and the batches interleaved: batch i goes to every variant
    before batch i + 1 goes to any, the order turning at every batch. A machine whose speed
    drifts over the run (these are noisy) then slows every variant alike, so the ratios of
    one run hold where its absolute numbers do not."""
    from connectors.embedded import start_redis
    from connectors.redis_views import RedisViews
    from streams.settings import Settings
    from streams.wiring import identity_policy, points_policy

    names = list(scripts)
    with contextlib.ExitStack() as stack:
        views: dict[str, RedisViews] = {}
        for name in names:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="omni-views-bench-")))
            settings = Settings(home=tmp)
            server = start_redis(tmp / "data", tmp, appendonly=True)
            stack.callback(server.stop)
            v = views[name] = RedisViews.from_url(
                f"redis://127.0.0.1:{server.port}/0",
                prefix=PREFIX,
                policy=identity_policy(settings),
                points=points_policy(settings),
            )
            script = scripts[name]
            v._apply = v.client.register_script(counting(script) if count_calls else script)

        def cpu(name: str) -> float:
            info = views[name].client.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

        events = sum(len(b.items) for b in batches)
        for v in views.values():
            v.client.config_resetstat()
        cpu0 = {name: cpu(name) for name in names}
        wall, own = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
        for i, b in enumerate(batches):
            for name in names if i % 2 == 0 else reversed(names):
                started, own_started = time.perf_counter(), time.thread_time()
                views[name].apply_batch(b.items, int(b.now.timestamp() * 1000))
                wall[name] += time.perf_counter() - started
                own[name] += time.thread_time() - own_started
        results = {}
        for name in names:
            client = views[name].client
            result = {
                "redis_cpu_us": (cpu(name) - cpu0[name]) / events * 1e6,
                "call_wall_us": wall[name] / events * 1e6,
                "worker_cpu_us": own[name] / events * 1e6,
                **script_time(client.info("commandstats"), events),
            }
            if count_calls:
                calls = client.hgetall("views-bench:calls")
                client.delete("views-bench:calls")
                result["calls"] = {k.decode(): int(v) / events for k, v in calls.items()}
            else:
                result["state"] = _state(client)
            results[name] = result
        return results


def _list(values: list[float]) -> str:
    return ", ".join(f"{x:.0f}" for x in values)


def main(argv: list[str] | None = None) -> int:
    from redis.utils import HIREDIS_AVAILABLE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="HEAD", help="git revision of the earlier script")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500, help="events per script call")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from connectors.embedded import exit_on_sigterm

    exit_on_sigterm()  # the redis-servers started below are stopped on the way out
    variants = {args.against: script_at(args.against), "working tree": script_at(None)}
    print(f"preparing {args.events:,} events ...", file=sys.stderr)
    batches = prepared_batches(args.events, args.batch)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(args.rounds):
        print(f"round {r + 1} of {args.rounds}", file=sys.stderr)
        for name, got in run_variants(variants, batches, count_calls=False).items():
            runs[name].append(got)
    calls = {name: got["calls"] for name, got in run_variants(variants, batches, True).items()}
    earlier, now = (runs[name] for name in variants)
    # the working tree's time as a share of the earlier script's, round by round: measured
    # side by side, so the machine's drift cancels out
    ratios = {
        measure: [round(b[measure] / a[measure], 3) for a, b in zip(earlier, now, strict=True)]
        for measure in ("script_us", "redis_cpu_us", "call_wall_us")
    }
    states = [runs[name][0]["state"] for name in variants]
    same = states[0] == states[1]
    differing = [k.decode() for k in set(states[0]) | set(states[1])
                 if states[0].get(k) != states[1].get(k)]  # fmt: skip
    summary = {
        "events": args.events,
        "batch": args.batch,
        "rounds": args.rounds,
        "same_state": same,
        "reply_parser": "hiredis" if HIREDIS_AVAILABLE else "redis-py's own",
        "differing_keys": sorted(differing)[:20],
        "working_tree_vs_earlier": ratios,
        "variants": {
            name: {
                "redis_cpu_us_per_event": [round(x["redis_cpu_us"], 1) for x in runs[name]],
                "call_wall_us_per_event": [round(x["call_wall_us"], 1) for x in runs[name]],
                "worker_cpu_us_per_event": [round(x["worker_cpu_us"], 1) for x in runs[name]],
                "script_us_per_event": [round(x["script_us"], 1) for x in runs[name]],
                "commands_us_per_event": [round(x["commands_us"], 1) for x in runs[name]],
                "redis_calls_per_event": round(sum(calls[name].values()), 2),
                "calls_by_command": {k: round(v, 2) for k, v in sorted(calls[name].items())},
            }
            for name in variants
        },
    }
    if args.json:
        print(json.dumps(summary))
        return 0 if same else 1
    print(
        f"{args.events:,} events in batches of {args.batch}, {args.rounds} rounds, each "
        f"variant on a fresh redis-server of its own (AOF on), the batches interleaved; "
        f"reply parser {summary['reply_parser']}"
    )
    for name, v in summary["variants"].items():
        cpu, wall = v["redis_cpu_us_per_event"], v["call_wall_us_per_event"]
        own = v["worker_cpu_us_per_event"]
        print(
            f"  {name:>14}: Redis CPU {_list(cpu)} us/event (median "
            f"{statistics.median(cpu):.0f}); script call {_list(wall)} us/event, of it "
            f"worker CPU {_list(own)}; {v['redis_calls_per_event']:.1f} Redis commands/event"
        )
        script, commands = v["script_us_per_event"], v["commands_us_per_event"]
        print(
            f"  {'':>14}  inside Redis, the script {_list(script)} us/event, of it its "
            f"commands {_list(commands)} (the rest is Lua itself)"
        )
    print(
        f"  working tree / {args.against}, round by round: script "
        + ", ".join(f"{x:.3f}" for x in ratios["script_us"])
        + "; Redis CPU "
        + ", ".join(f"{x:.3f}" for x in ratios["redis_cpu_us"])
        + "; call "
        + ", ".join(f"{x:.3f}" for x in ratios["call_wall_us"])
    )
    shown = ", ".join(sorted(differing)[:5])
    verdict = "the same" if same else f"DIFFERENT in {len(differing)} keys, e.g. {shown}"
    print(f"  state after the run: {verdict}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
