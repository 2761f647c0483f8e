"""``python -m tests.views_bench``: the comparison it rests on tells a changed Redis state
apart, a run against the committed script reports the same state, and a SIGTERM stops the
redis-servers it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import views_bench

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batches() -> list:
    return views_bench.prepared_batches(600, 100)


def test_same_script_same_state_and_counted_commands(batches: list) -> None:
    script = views_bench.script_at(None)
    first = views_bench.run_variant(script, batches, count_calls=False)
    again = views_bench.run_variant(script, batches, count_calls=False)
    assert first["state"] == again["state"] and len(first["state"]) > 100
    assert first["redis_cpu_us"] > 0 and first["call_wall_us"] > 0
    assert 0 < first["worker_cpu_us"] < first["call_wall_us"]
    # the script's commands run inside it: part of its time, not all of it
    assert 0 < first["commands_us"] < first["script_us"] < first["call_wall_us"]
    calls = views_bench.run_variant(script, batches, count_calls=True)["calls"]
    # every event sets its dedupe record: at least one SET per event applied
    assert calls["SET"] >= 0.9 and sum(calls.values()) > 5


def test_a_script_that_counts_differently_leaves_a_different_state(batches: list) -> None:
    script = views_bench.script_at(None)
    changed = script.replace("'n', num(h[4]) + 1", "'n', num(h[4]) + 2")
    assert changed != script
    # side by side, as the bench runs them: each on its own server, the batches interleaved
    both = views_bench.run_variants({"a": script, "b": changed}, batches, count_calls=False)
    a, b = both["a"]["state"], both["b"]["state"]
    assert a != b
    differing = [k for k in a if a[k] != b.get(k)]
    assert differing and all(k.startswith(b"omni:m:") for k in differing)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_sigterm_stops_the_servers_it_started(tmp_path: Path) -> None:
    """A bench stopped by ``timeout`` or a CI job's end leaves no redis-server behind."""
    tool = subprocess.Popen(
        [sys.executable, "-m", "tests.views_bench", "--events", "1000", "--batch", "100",
         "--rounds", "1000"],
        cwd=views_bench.ROOT, env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline and tool.poll() is None:
            logs = [p.read_text() for p in tmp_path.glob("omni-views-bench-*/redis.log")]
            ready = [log for log in logs if "Ready to accept connections" in log]
            pids = [int(m) for log in ready for m in re.findall(r"pid=(\d+), just started", log)]
            time.sleep(0.2)
        assert len(pids) == 2, "the two variants' redis-servers did not start"
        tool.send_signal(signal.SIGTERM)
        assert tool.wait(60) == 128 + signal.SIGTERM
        assert [pid for pid in pids if _alive(pid)] == []
        assert list(tmp_path.glob("omni-views-bench-*")) == []
    finally:
        if tool.poll() is None:
            tool.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
