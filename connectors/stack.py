"""``omni up`` / ``omni status`` / ``omni down``: a supervisor process that starts what is
not configured externally, records pids, ports and logs in ``OMNI_HOME/stack.json``,
watches its children and stops exactly them.

A child that dies is restarted at most ``MAX_RESTARTS`` times in ``RESTART_WINDOW_S``;
after that it is reported ``failed`` and left down. The broker is never restarted: the
embedded broker keeps its data in memory only, so a new one would be a different log.

``omni workers pause`` / ``resume`` stop and start only the workers, for ``omni rebuild``:
while ``OMNI_HOME/workers.paused`` exists the supervisor stops its workers (SIGTERM, as on
shutdown), records them ``paused`` and does not restart them; once it is gone it starts
them again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.embedded import (
    ManagedProcess,
    StartFailed,
    http_ok,
    is_running,
    omni_command,
    start_broker,
    start_redis,
    start_sink,
    start_worker,
    tcp_ok,
)
from connectors.kafka import ensure_topics
from streams.endpoints import STACK_FILE
from streams.settings import Settings
from streams.wiring import all_topics

MAX_RESTARTS = 3
RESTART_WINDOW_S = 300.0
LOCK_FILE = "stack.lock"
PAUSE_FILE = "workers.paused"


class AlreadyRunning(RuntimeError):
    pass


class NotRunning(RuntimeError):
    pass


@dataclass
class Paths:
    home: Path

    @property
    def state(self) -> Path:
        return self.home / STACK_FILE

    @property
    def lock(self) -> Path:
        return self.home / LOCK_FILE

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def redis(self) -> Path:
        return self.home / "redis"

    @property
    def chdb(self) -> Path:
        return self.home / "chdb"

    @property
    def pause(self) -> Path:
        """While this file exists the supervisor keeps its workers stopped."""
        return self.home / PAUSE_FILE


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _read_state(paths: Paths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.state.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _lock_held(paths: Paths) -> bool:
    if not paths.lock.exists():
        return False
    with open(paths.lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


# -- the supervisor process --------------------------------------------------------------


@dataclass
class _Child:
    proc: ManagedProcess
    restart: Any  # () -> ManagedProcess, started again and not yet healthy
    restarts: list[float] = field(default_factory=list)
    status: str = "healthy"
    exit_code: int | None = None


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.paths = Paths(settings.home.resolve())
        self.children: dict[str, _Child] = {}
        self.state: dict[str, Any] = {}
        self.stopping = False
        self.workers_paused = False

    def _save(self) -> None:
        self.state["components"] = {
            name: {
                **c.proc.record(),
                "status": c.status,
                "restarts": len(c.restarts),
                "exit_code": c.exit_code,
            }
            for name, c in self.children.items()
        }
        _write_json(self.paths.state, self.state)

    def _workers(self) -> list[tuple[str, _Child]]:
        return [(n, c) for n, c in self.children.items() if n.startswith("worker")]

    def _add(self, name: str, proc: ManagedProcess, restart: Any, status: str = "healthy") -> None:
        self.children[name] = _Child(proc, restart, status=status)
        self._save()

    def _healthy(self, name: str, wait: float) -> None:
        """Wait for a child recorded while ``starting`` to be healthy, and record that: a
        supervisor killed meanwhile leaves a record that names it (``omni down``)."""
        self.children[name].proc.wait_healthy(wait)
        self.children[name].status = "healthy"
        self._save()

    def run(self) -> int:
        self.paths.home.mkdir(parents=True, exist_ok=True)
        lock = open(self.paths.lock, "w")  # noqa: SIM115 (held for the supervisor's life)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another supervisor runs under", self.paths.home, flush=True)
            return 1
        # a pause belongs to the stack that was paused, not to this new one
        self.paths.pause.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.state = {
            "state": "starting",
            "supervisor": {"pid": os.getpid(), "start_time": None},
            "home": str(self.paths.home),
            "started_at": time.time(),
            "endpoints": {},
            "workers": "running",
        }
        from connectors.embedded import process_start_time

        self.state["supervisor"]["start_time"] = process_start_time(os.getpid())
        try:
            self._start_all()
            self.state["state"] = "running"
            self._save()
            print("stack running", flush=True)
            self._watch()
        except StartFailed as exc:
            self.state["state"] = "failed"
            self.state["error"] = str(exc)
            self._save()
            print("start failed:", exc, flush=True)
        finally:
            self._stop_all()
            self.state["state"] = "stopped"
            self._save()
            os.replace(self.paths.state, self.paths.home / "stack.stopped.json")
            self.paths.pause.unlink(missing_ok=True)
            print("stack stopped", flush=True)
        return 0 if self.state.get("error") is None else 1

    def _on_term(self, *_: Any) -> None:
        self.stopping = True

    def _start_all(self) -> None:
        s, logs = self.settings, self.paths.logs
        broker_embedded = not s.kafka_bootstrap
        if broker_embedded:
            # The embedded broker keeps nothing once stopped, so views and tables built
            # from an earlier broker's log would describe events that no longer exist.
            for stale in (self.paths.redis, self.paths.chdb, self.paths.home / "worker-data"):
                shutil.rmtree(stale, ignore_errors=True)
        endpoints = self.state["endpoints"]
        if broker_embedded:
            broker = start_broker(logs)
            endpoints["kafka_bootstrap"] = f"127.0.0.1:{broker.port}"
            self._add("broker", broker, None)
        else:
            endpoints["kafka_bootstrap"] = s.kafka_bootstrap
        if not s.redis_url:
            redis_proc = start_redis(self.paths.redis, logs)
            # (the port bound now: a name the closure read later could have moved on)
            self._add(
                "redis",
                redis_proc,
                lambda p=redis_proc.port: start_redis(self.paths.redis, logs, port=p, wait=None),
            )
            endpoints["redis_url"] = f"redis://127.0.0.1:{redis_proc.port}/0"
        else:
            endpoints["redis_url"] = s.redis_url
        endpoints["clickhouse_dsn"] = s.clickhouse_dsn or f"chdb://{self.paths.chdb}"
        self._save()
        ensure_topics(endpoints["kafka_bootstrap"], all_topics(s), s.topic_partitions)
        env = {
            **s.to_env(),
            "OMNI_HOME": str(self.paths.home),
            "OMNI_KAFKA_BOOTSTRAP": endpoints["kafka_bootstrap"],
            "OMNI_REDIS_URL": endpoints["redis_url"],
            "OMNI_CLICKHOUSE_DSN": endpoints["clickhouse_dsn"],
        }
        sink = start_sink(env, logs, wait=None)
        endpoints["sink_url"] = f"http://127.0.0.1:{sink.port}"
        self._add(
            "sink", sink, lambda p=sink.port: start_sink(env, logs, port=p, wait=None), "starting"
        )
        self._healthy("sink", 90)
        workers = [start_worker(env, logs, i, wait=None) for i in range(1, s.workers + 1)]
        for w in workers:
            index, port = int(w.name.split("-")[1]), w.port
            self._add(
                w.name,
                w,
                lambda i=index, p=port: start_worker(env, logs, i, port=p, wait=None),
                status="starting",
            )
        for w in workers:
            self._healthy(w.name, 120)

    def _pause_workers(self) -> None:
        """Stop the workers as on shutdown (SIGTERM, SIGKILL after 45 s) and record them
        ``paused``; a failed one stays ``failed``."""
        self.state["workers"] = "pausing"
        self._save()
        for name, child in self._workers():
            if child.status == "failed":
                continue
            print(f"{name} pausing", flush=True)
            child.proc.stop(timeout=45)
            child.exit_code = child.proc.exit_code
            child.status = "paused"
            self._save()
        self.workers_paused = True
        self.state["workers"] = "paused"
        self._save()
        print("workers paused", flush=True)

    def _resume_workers(self) -> None:
        """Start the paused workers again, as a restart does (same port), all at once,
        then wait for each to be healthy; one that does not start is ``dead`` (and so
        restarted by _watch)."""
        self.state["workers"] = "resuming"
        self._save()
        paused = [(name, child) for name, child in self._workers() if child.status == "paused"]
        for _, child in paused:
            child.proc = child.restart()
            child.status = "resuming"
            child.exit_code = None
            self._save()
        for name, child in paused:
            try:
                child.proc.wait_healthy(90)
                child.status = "healthy"
                print(f"{name} resumed", flush=True)
            except StartFailed as exc:
                print(f"{name} resume failed: {exc}", flush=True)
                child.status = "dead"
            self._save()
        self.workers_paused = False
        self.state["workers"] = "running"
        self._save()

    def _watch(self) -> None:
        while not self.stopping:
            pause_wanted = self.paths.pause.exists()
            if pause_wanted and not self.workers_paused:
                self._pause_workers()
            elif not pause_wanted and self.workers_paused:
                self._resume_workers()
            for name, child in self.children.items():
                if child.status in ("failed", "paused") or child.proc.alive:
                    continue
                child.exit_code = child.proc.exit_code
                now = time.time()
                child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S]
                if child.restart is None or len(child.restarts) >= MAX_RESTARTS:
                    child.status = "failed"
                    print(f"{name} died (exit {child.exit_code}); not restarting", flush=True)
                else:
                    child.status = "restarting"
                    self._save()
                    print(f"{name} died (exit {child.exit_code}); restarting", flush=True)
                    child.restarts.append(now)
                    try:
                        # recorded as soon as it runs: its own exit code is the one
                        # reported if it fails, and a record names it meanwhile
                        child.proc = child.restart()
                        self._save()
                        child.proc.wait_healthy(90)
                        child.status = "healthy"
                    except StartFailed as exc:
                        print(f"{name} restart failed: {exc}", flush=True)
                        child.status = "dead"
                self._save()
            time.sleep(0.5)

    def _stop_all(self) -> None:
        self.state["state"] = "stopping"
        with contextlib.suppress(OSError):
            self._save()
        # workers first (they flush into the sink), then the sink, then the services
        order = sorted(
            self.children, key=lambda n: (not n.startswith("worker"), n != "sink", n != "redis")
        )
        for name in order:
            self.children[name].proc.stop(timeout=45)


# -- what the CLI calls ---------------------------------------------------------------------


def status(settings: Settings) -> dict[str, Any]:
    paths = Paths(settings.home.resolve())
    state = _read_state(paths)
    if state is None:
        return {"state": "not running", "home": str(paths.home), "components": {}}
    sup = state.get("supervisor", {})
    state["supervisor"]["alive"] = is_running(sup.get("pid", 0), sup.get("start_time"))
    endpoints = state.get("endpoints", {})
    for name, comp in state.get("components", {}).items():
        alive = is_running(comp["pid"], comp.get("start_time"))
        comp["alive"] = alive
        if not alive:
            comp["healthy"] = False
        elif name in ("broker", "redis"):
            comp["healthy"] = tcp_ok(comp["port"])
        else:
            comp["healthy"] = http_ok(f"http://127.0.0.1:{comp['port']}/readyz")
    if not state["supervisor"]["alive"] and state.get("state") in ("starting", "running"):
        state["state"] = "supervisor died"
    state["endpoints"] = endpoints
    return state


def raise_if_failed(settings: Settings) -> None:
    """Raise ``StartFailed`` naming each component that is down for good."""
    state = status(settings)
    broken = [
        f"{name} (see {c['log']})"
        for name, c in state.get("components", {}).items()
        if c.get("status") == "failed" or (c.get("status") == "dead" and not c["alive"])
    ]
    if broken or state["state"] not in ("running", "starting"):
        raise StartFailed(f"stack {state['state']}; failed: {', '.join(broken) or 'none'}")


def _running_supervisor(paths: Paths) -> dict[str, Any]:
    state = _read_state(paths)
    sup = (state or {}).get("supervisor", {})
    if state is None or not is_running(sup.get("pid", 0), sup.get("start_time")):
        raise NotRunning(f"no stack runs under {paths.home}: `omni up` first")
    if state.get("state") != "running":
        raise NotRunning(f"the stack under {paths.home} is {state.get('state')}, not running")
    return state


def pause_workers(settings: Settings, timeout: float = 150.0) -> list[str]:
    """Have the supervisor stop its workers and keep them stopped; wait until every one
    has exited. Returns the workers' names. Raises ``NotRunning`` without a running
    stack and ``TimeoutError`` when they are not all stopped within ``timeout``."""
    paths = Paths(settings.home.resolve())
    _running_supervisor(paths)
    paths.pause.touch()

    def stopped(state: dict[str, Any], workers: dict[str, Any]) -> tuple[bool, list[str]]:
        alive = sorted(n for n, c in workers.items() if c["alive"])
        return state.get("workers") == "paused" and not alive, alive

    return _await_workers(paths, settings, timeout, "paused", stopped)


def resume_workers(settings: Settings, timeout: float = 150.0) -> list[str]:
    """Let the supervisor start its workers again; wait until every one is healthy.
    Returns the workers' names. Raises ``NotRunning`` without a running stack,
    ``StartFailed`` when a worker does not start and ``TimeoutError`` after ``timeout``."""
    paths = Paths(settings.home.resolve())
    _running_supervisor(paths)
    paths.pause.unlink(missing_ok=True)

    def healthy(state: dict[str, Any], workers: dict[str, Any]) -> tuple[bool, list[str]]:
        running = state.get("workers") == "running"
        broken = [f"{n} (see {c['log']})" for n, c in workers.items()
                  if c.get("status") in ("failed", "dead")]  # fmt: skip
        if running and broken:
            raise StartFailed(f"workers not resumed: {', '.join(sorted(broken))}")
        waiting = sorted(n for n, c in workers.items() if not c["healthy"])
        return running and not waiting, waiting

    return _await_workers(paths, settings, timeout, "healthy", healthy)


def _await_workers(
    paths: Paths,
    settings: Settings,
    timeout: float,
    goal: str,
    reached: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, list[str]]],
) -> list[str]:
    """Poll the stack's state until ``reached(state, workers)`` says so; it also names the
    workers still in the way, for the timeout's message. Returns the workers' names."""
    deadline = time.monotonic() + timeout
    while True:
        state = status(settings)
        if not state["supervisor"]["alive"]:
            raise NotRunning(f"the supervisor under {paths.home} exited")
        workers = {n: c for n, c in state["components"].items() if n.startswith("worker")}
        done, in_the_way = reached(state, workers)
        if done:
            return sorted(workers)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"workers not {goal} after {timeout:g}s (waiting for "
                f"{', '.join(in_the_way) or 'the supervisor'}); see {paths.logs}"
            )
        time.sleep(0.2)


def up(settings: Settings, timeout: float = 180.0, on_progress: Any = print) -> dict[str, Any]:
    paths = Paths(settings.home.resolve())
    paths.logs.mkdir(parents=True, exist_ok=True)
    if _lock_held(paths):
        current = _read_state(paths) or {}
        pid = current.get("supervisor", {}).get("pid", "?")
        raise AlreadyRunning(
            f"a stack already runs under {paths.home} (supervisor pid {pid}); `omni down` first"
        )
    # a supervisor killed outright leaves its children running, and this record is all
    # that names them: never start over it
    left = [
        name
        for name, comp in ((_read_state(paths) or {}).get("components") or {}).items()
        if is_running(comp["pid"], comp.get("start_time"))
    ]
    if left:
        raise AlreadyRunning(
            f"the supervisor under {paths.home} died, but the stack's {', '.join(left)} still "
            "run; `omni down` stops them"
        )
    with contextlib.suppress(FileNotFoundError):
        paths.state.unlink()
    env = {**os.environ, **settings.to_env(), "OMNI_HOME": str(paths.home)}
    log = open(paths.logs / "supervisor.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        omni_command("supervise"),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    log.close()
    try:
        return _wait_up(settings, paths, proc, timeout, on_progress)
    except KeyboardInterrupt:  # interrupted while starting: the supervisor stops what it started
        proc.terminate()
        proc.wait(timeout)
        raise


def _wait_up(
    settings: Settings, paths: Paths, proc: subprocess.Popen, timeout: float, on_progress: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        state = _read_state(paths) or {}
        for name, comp in state.get("components", {}).items():
            if name not in seen and comp.get("status") == "healthy":
                seen.add(name)
                on_progress(f"  {name:<9} healthy  (log: {comp['log']})")
        if state.get("state") == "running":
            return status(settings)
        if state.get("state") == "failed" or proc.poll() is not None:
            proc.wait(60)
            stopped = _read_state(Paths(paths.home)) or json.loads(
                (paths.home / "stack.stopped.json").read_text()
            )
            raise StartFailed(
                stopped.get("error") or f"supervisor exited; see {paths.logs / 'supervisor.log'}"
            )
        time.sleep(0.2)
    proc.terminate()
    raise StartFailed(f"stack not up after {timeout:.0f}s; see {paths.logs}")


def down(settings: Settings, timeout: float = 120.0) -> list[str]:
    """Stop the supervisor (which stops its children); then make sure every recorded
    process is gone. Returns the names of what was stopped."""
    paths = Paths(settings.home.resolve())
    state = _read_state(paths)
    if state is None:
        raise NotRunning(f"no stack runs under {paths.home}")
    sup = state.get("supervisor", {})
    if is_running(sup.get("pid", 0), sup.get("start_time")):
        os.kill(sup["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_running(sup["pid"], sup.get("start_time")) and time.monotonic() < deadline:
            time.sleep(0.1)
    stopped = []
    for name, comp in state.get("components", {}).items():
        if is_running(comp["pid"], comp.get("start_time")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(comp["pid"], signal.SIGKILL)
        stopped.append(name)
    deadline = time.monotonic() + 10  # SIGKILL is not instant: gone when this returns
    while time.monotonic() < deadline and any(
        is_running(c["pid"], c.get("start_time")) for c in state.get("components", {}).values()
    ):
        time.sleep(0.05)
    if is_running(sup.get("pid", 0), sup.get("start_time")):
        os.kill(sup["pid"], signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        paths.state.unlink()
    return stopped
