"""``omni bench`` end to end with a tiny configuration: every number is there, sane and
consistent, and nothing it started is left running."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.embedded import is_running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_reports_every_number_and_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    argv = [sys.executable, "-m", "streams.cli", "bench", "--json", "--seconds", "5",
            "--members", "2000", "--warmup-events", "500", "--rate", "200",
            "--latency-seconds", "2", "--baseline-seconds", "2"]  # fmt: skip
    done = subprocess.run(
        argv, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)

    assert r["machine"]["cpus"] >= 1 and r["config"]["members"] == 2000
    # the simulated producers used the producer SDK's linger (no --producer-linger-ms)
    assert r["config"]["producer_linger_ms"] == 5
    # every message produced is accounted for, and the sink holds every fact
    acc = r["accounted"]
    assert acc["every_event"] and acc["processed"] + acc["dead_lettered"] == acc["produced"]
    assert acc["fact_rows_in_sink"] == acc["facts"] > 0
    assert r["workload"]["produced"] == acc["produced"]
    assert r["workload"]["by_kind"].get("malformed", 0) > 0 and acc["duplicates"] > 0

    pipe = r["pipeline"]
    assert pipe["events_per_s"] > 0 and pipe["events"] > 0 and 0 < pipe["window_s"] <= 6
    assert pipe["events_per_s"] == pytest.approx(pipe["events"] / pipe["window_s"], rel=0.02)
    assert pipe["events_per_s_per_worker"] == pytest.approx(
        pipe["events_per_s"] / r["config"]["workers"], abs=0.1
    )
    assert r["sink"]["rows_per_s"] > 0 and r["sink"]["fact_rows_per_s"] > 0
    assert r["cpu"]["worker_s_per_1000_events"] > 0

    lat = r["latency"]
    assert lat["measured"] == lat["events"] == 400
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["rate_achieved"] == pytest.approx(200, rel=0.1)
    by_slice = lat["p99_ms_by_slice"]
    assert len(by_slice) == 6 and min(by_slice) <= lat["p99_ms"] <= max(by_slice)

    rss = r["rss"]["workers"]["worker-1"]
    assert rss["start_mb"] > 10 and rss["end_mb"] > 10 and rss["max_mb"] >= rss["end_mb"]
    steady = r["rss"]["steady"]
    assert 0 < steady["seconds"] < r["rss"]["soak_s"]
    assert steady["workers"]["worker-1"]["end_mb"] == rss["end_mb"]  # the same last sample
    red = r["redis"]
    assert red["members"] > 0 and red["used_memory_delta"] > 0
    assert red["bytes_per_member"] == pytest.approx(
        red["used_memory_delta"] / red["members"], abs=0.1
    )

    confluent = r["baselines"]["confluent_kafka"]["events_per_s"]
    bare = r["baselines"]["bare_faust"]["events_per_s"]
    assert confluent > 0 and bare > 0
    assert r["ratios"]["pipeline_vs_bare_faust"] == pytest.approx(
        pipe["events_per_s"] / bare, abs=0.001
    )
    assert r["ratios"]["pipeline_vs_confluent"] == pytest.approx(
        pipe["events_per_s"] / confluent, abs=0.00001
    )
    assert set(r["targets"]) == {
        "pipeline_vs_bare_faust", "events_per_s_per_worker", "latency_p99",
        "redis_bytes_per_member", "worker_rss_flat",
    }  # fmt: skip
    assert all(isinstance(t["met"], bool) for t in r["targets"].values())
    # a smoke run is no soak and its steady phase runs at 200 events/s, not 1,000: neither
    # target can be met by it, however good its numbers
    assert not r["targets"]["worker_rss_flat"]["met"]
    assert not r["targets"]["latency_p99"]["met"]

    # nothing left behind: the stack's processes, the bare agents, the temporary home
    started = [*r["stack"]["components"].values(), *r["baselines"]["bare_faust"]["pids"]]
    assert len(started) == 5
    assert not [p for p in started if is_running(p["pid"], p["start_time"])]
    assert not Path(r["stack"]["home"]).exists()


def _processes_of(home: str) -> list[int]:
    """Processes whose environment names ``home`` as OMNI_HOME (what the stack started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"OMNI_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_terminated_bench_stops_its_stack(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    argv = [sys.executable, "-m", "streams.cli", "bench", "--seconds", "60",
            "--members", "2000", "--warmup-events", "500"]  # fmt: skip
    log = tmp_path / "bench.err"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "worker-1  healthy" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        home = re.search(r"home (\S+omni-bench-\S+)", log.read_text()).group(1)  # type: ignore[union-attr]
        assert _processes_of(home)  # broker, Redis, sink, worker and their supervisor
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0
    assert _processes_of(home) == []
    assert "logs kept under" in log.read_text()  # an unfinished run keeps them to read
    shutil.rmtree(home)
