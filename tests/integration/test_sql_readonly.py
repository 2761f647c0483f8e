"""`omni sql` is read-only by ClickHouse's own readonly setting (not string checks)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Running

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def omni_sql(stack: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "sql", *args, "--json"],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=60,
    )


WRITES = [
    "INSERT INTO erasures (one_id) VALUES ('O1')",
    "DROP TABLE touchpoint_facts",
    "ALTER TABLE touchpoint_facts DELETE WHERE 1",
    "CREATE TABLE x (a Int8) ENGINE = Memory",
    "SELECT 1 SETTINGS readonly = 0",
    "SET readonly = 0",
]


def test_omni_sql_refuses_writes_and_runs_saved_queries(run_stack: Callable[..., Running]) -> None:
    """Embedded chDB by default; a ClickHouse server with OMNI_TEST_BACKEND=containers."""
    stack = run_stack(workers=0, sink=True)
    for statement in WRITES:
        refused = omni_sql(stack, statement)
        assert refused.returncode != 0, statement
        assert "refused" in refused.stderr, statement
    counted = omni_sql(stack, "SELECT count() AS n FROM erasures")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == '[{"n": 0}]'
    assert "touchpoint_facts" in omni_sql(stack, "SHOW TABLES").stdout
    # each saved query opens with a `--` comment (as an argument, an unknown option), and
    # one takes the reporting time zone as a parameter: -f reads them from their files
    for path in sorted((ROOT / "connectors" / "dashboard").glob("*.sql")):
        ran = omni_sql(stack, "-f", str(path))
        assert ran.returncode == 0, (path.name, ran.stderr)
        assert isinstance(json.loads(ran.stdout), list), path.name
    neither = omni_sql(stack)
    assert neither.returncode != 0 and "STATEMENT or --file" in neither.stderr


def test_the_read_api_answers_every_request_with_json(run_stack: Callable[..., Running]) -> None:
    stack = run_stack(workers=0, sink=True)
    assert stack.sink is not None
    url = f"http://127.0.0.1:{stack.sink.port}"

    def post(data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"{url}/query", data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, strict_json(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, strict_json(exc.read())

    # before: each of these dropped the connection without an answer
    for body in (b'["SELECT 1"]', b'"SELECT 1"', b'{"sql": "SELECT 1", "parameters": "x"}'):
        status, reply = post(body)
        assert status == 400 and reply["error"].startswith("bad request"), (body, reply)
    # 0 / 0 is NaN in ClickHouse, which JSON has not: null (before: the reply held NaN, and
    # the dashboard's page refused every panel over it)
    assert post(b'{"sql": "SELECT 0 / 0 AS x, 1 / 0 AS y"}') == (
        200, {"columns": ["x", "y"], "rows": [[None, None]]}
    )  # fmt: skip
    with urllib.request.urlopen(f"{url}/dashboard/data", timeout=60) as reply:
        panels = strict_json(reply.read())
    assert panels["repurchase_rate"]["rows"] == [[0, 0, None]]


def strict_json(data: bytes) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=refuse)
