"""The sink's API: loopback by default; beyond loopback only with a token, which every
endpoint but the probes requires; the CLI sends it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from .conftest import Running

pytestmark = pytest.mark.integration
TOKEN = "t0ken-" + "x" * 26


def get(port: int, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_sink_refuses_to_listen_beyond_loopback_without_a_token(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=0, sink=False)
    open_sink = stack.start_extra_sink("sink-open", OMNI_SINK_HTTP_HOST="0.0.0.0")
    deadline = time.monotonic() + 60
    while open_sink.alive and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_sink.exit_code == 78
    said = " ".join(open_sink.log_path.read_text().split())  # (the terminal wraps lines)
    assert "without a token: set OMNI_SINK_API_TOKEN" in said


def test_with_a_token_every_endpoint_but_the_probes_requires_it(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=0, sink=False)
    guarded = stack.start_extra_sink(
        "sink-guarded", OMNI_SINK_HTTP_HOST="0.0.0.0", OMNI_SINK_API_TOKEN=TOKEN
    ).wait_healthy(90)
    stack.use_sink(guarded)
    assert TOKEN not in guarded.log_path.read_text()
    port = guarded.port
    assert (get(port, "/healthz"), get(port, "/readyz")) == (200, 200)
    assert (get(port, "/stats"), get(port, "/metrics")) == (401, 401)
    assert get(port, "/stats", "wrong") == 401
    assert (get(port, "/stats", TOKEN), get(port, "/metrics", TOKEN)) == (200, 200)
    # the dashboard's page and scripts hold no data: open; its data is guarded
    assert (get(port, "/dashboard/"), get(port, "/dashboard/vendor/chart.umd.min.js")) == (200, 200)
    assert (get(port, "/dashboard/data"), get(port, "/dashboard/data", TOKEN)) == (401, 200)
    assert get(port, "/dashboard/../sink.py") == 401  # nothing else is served as a file

    def omni_sql(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", "sql", "SELECT 1 AS one", "--json"],
            capture_output=True, text=True, env={**stack.env, **env}, timeout=60,
        )  # fmt: skip

    assert omni_sql({}).returncode != 0
    answered = omni_sql({"OMNI_SINK_API_TOKEN": TOKEN})
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout) == [{"one": 1}]
