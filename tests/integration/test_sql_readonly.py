"""`omni sql` is read-only by ClickHouse's own readonly setting (not string checks)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from .conftest import Running

pytestmark = pytest.mark.integration


def omni_sql(stack: Running, statement: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "sql", statement, "--json"],
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


def test_omni_sql_refuses_writes(run_stack: Callable[..., Running]) -> None:
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
