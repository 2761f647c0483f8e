"""``omni up`` / ``status`` / ``down`` on a fully embedded stack, and ``omni demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors import stack
from connectors.embedded import ManagedProcess, StartFailed, is_running
from connectors.kafka import TouchpointProducer
from streams.demo import publish, wait_views
from streams.endpoints import resolve
from streams.settings import Settings
from streams.simulate import Simulation
from streams.wiring import views

pytestmark = pytest.mark.integration


def embedded_settings(home: Path) -> Settings:
    # nothing external: every service is the stack's own
    return Settings(home=home, kafka_bootstrap=None, redis_url=None, clickhouse_dsn=None)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OMNI_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_up_processes_within_seconds_and_down_leaves_nothing(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "home")
    state = stack.up(settings, on_progress=lambda _: None)
    try:
        up_returned = time.monotonic()
        assert state["state"] == "running"
        names = set(state["components"])
        assert names == {"broker", "redis", "sink", "worker-1"}
        assert all(c["alive"] and c["healthy"] for c in state["components"].values())
        for c in state["components"].values():
            assert Path(c["log"]).is_file()

        with pytest.raises(stack.AlreadyRunning, match="already runs"):
            stack.up(settings, on_progress=lambda _: None)

        endpoints = resolve(settings)
        sim = Simulation(200, seed=3, duplicate_share=0, malformed_share=0)
        with TouchpointProducer(endpoints.kafka_bootstrap) as producer:
            publish(sim, producer, settings.topic_prefix)
        stats = wait_views(views(settings, endpoints), 200, timeout=10)
        processing_s = time.monotonic() - up_returned
        assert stats["processed"] == 200
        print(f"omni up returned -> 200 events processed in {processing_s:.2f}s")
        assert processing_s < 10

        # omni status shows each worker's events, rate and lag
        shown = subprocess.run(
            [sys.executable, "-m", "streams.cli", "status", "--json"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "OMNI_HOME": str(settings.home)},
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        worker = json.loads(shown.stdout)["components"]["worker-1"]
        assert (worker["events"], worker["lag"], worker["events_per_s"]) == (200, 0, 0)
    finally:
        pids = [(c["pid"], c["start_time"]) for c in stack.status(settings)["components"].values()]
        stopped = stack.down(settings)
    assert set(stopped) == {"broker", "redis", "sink", "worker-1"}
    assert not [pid for pid, start in pids if is_running(pid, start)]
    assert stack.status(settings)["state"] == "not running"
    with pytest.raises(stack.NotRunning):
        stack.down(settings)


@pytest.mark.usefixtures("clean_env")
def test_a_component_that_dies_is_restarted_then_reported(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "home")
    stack.up(settings, on_progress=lambda _: None)
    try:
        for attempt in range(stack.MAX_RESTARTS + 1):
            worker = stack.status(settings)["components"]["worker-1"]
            os.killpg(worker["pid"], 9)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                now = stack.status(settings)["components"]["worker-1"]
                restarted = now["pid"] != worker["pid"] and now["status"] == "healthy"
                if restarted or now["status"] == "failed":
                    break
                time.sleep(0.2)
            expected = "failed" if attempt == stack.MAX_RESTARTS else "healthy"
            assert now["status"] == expected, now
        assert now["restarts"] == stack.MAX_RESTARTS
        with pytest.raises(stack.StartFailed, match="worker-1"):
            stack.raise_if_failed(settings)
    finally:
        stack.down(settings)


@pytest.mark.usefixtures("clean_env")
def test_up_refuses_while_a_dead_supervisors_children_run_and_down_stops_them(
    tmp_path: Path,
) -> None:
    settings = embedded_settings(tmp_path / "home")
    first = stack.up(settings, on_progress=lambda _: None)
    old = {n: (c["pid"], c["start_time"]) for n, c in first["components"].items()}
    try:
        os.kill(first["supervisor"]["pid"], signal.SIGKILL)  # the OOM killer, say
        deadline = time.monotonic() + 10
        while stack.status(settings)["state"] != "supervisor died":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # before: a second stack started, and the record of the first was deleted
        with pytest.raises(stack.AlreadyRunning, match="broker, redis, sink, worker-1 still run"):
            stack.up(settings, on_progress=lambda _: None)
        assert sorted(stack.down(settings)) == sorted(old)
        assert [n for n, (pid, start) in old.items() if is_running(pid, start)] == []
    finally:
        for pid, start in old.values():
            if is_running(pid, start):
                os.killpg(pid, signal.SIGKILL)


def test_a_process_that_never_gets_healthy_is_stopped_not_left_running(tmp_path: Path) -> None:
    # (a restart whose broker hangs, say: the supervisor gives up on it and must not leave
    # it running where no record names it)
    never = ManagedProcess(
        "never", [sys.executable, "-c", "import time; time.sleep(60)"], 0,
        tmp_path / "never.log", health=lambda: False,
    )  # fmt: skip
    never.start()
    with pytest.raises(StartFailed, match="never not healthy after 1s"):
        never.wait_healthy(1)
    assert not never.alive


@pytest.mark.usefixtures("clean_env")
def test_demo_json_accounts_for_every_event(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    env["OMNI_HOME"] = str(tmp_path / "home")
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--events", "3000", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["produced"] == 3000
    assert result["processed"] + result["dead_lettered"] == result["produced"]
    assert result["dead_lettered"] > 0
    assert (
        result["clickhouse_rows"]
        == result["facts_written"]
        == result["processed"] - result["duplicates"]
    )
    assert result["members"] > 0 and result["points_total"] > 0
    for key in ("elapsed_s", "events_per_s"):
        assert result[key] > 0
    assert stack.status(Settings(home=tmp_path / "home"))["state"] == "not running"


@pytest.mark.usefixtures("clean_env")
def test_a_restarted_redis_comes_back_on_its_own_port(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "home")
    stack.up(settings, on_progress=lambda _: None)
    try:
        before = stack.status(settings)["components"]
        os.killpg(before["redis"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            now = stack.status(settings)["components"]["redis"]
            if now["pid"] != before["redis"]["pid"] and now["status"] in ("healthy", "dead"):
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.2)
        # (before: the restart closure read a variable the worker loop had reassigned,
        # and redis came back on worker-1's port, where the workers do not look)
        assert (now["status"], now["port"]) == ("healthy", before["redis"]["port"])
        assert now["port"] != before["worker-1"]["port"]
    finally:
        stack.down(settings)
