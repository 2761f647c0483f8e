"""The fault drills of ``make chaos``, short version, through the command itself: every
message accounted for and every mismatch column 0.

Only the drills no other test runs in an equivalent form are run here: a Redis restart
mid-stream and a 10% malformed flood. SIGKILLed and rolling-restarted workers are in
test_crash_exactness.py, a sink killed between insert and commit and failing ClickHouse
inserts in test_sink_faults.py; ``make chaos`` runs all six."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos import COLUMNS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRILLS = ("redis_restart", "malformed_flood")


def test_short_drills_lose_and_double_nothing() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--short", "--json", "--only", ",".join(DRILLS)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(run.stdout)
    results = {r["scenario"]: r for r in report["results"]}
    assert tuple(results) == DRILLS, run.stderr
    for name, r in results.items():
        assert r["events_in"] > 0
        assert r["accounted"] == r["events_in"], (name, r["details"])
        assert r["processed"] + r["dead_lettered"] == r["events_in"]
        assert r["mismatches"] == dict.fromkeys(COLUMNS, 0), (name, r["details"])
    flood = results["malformed_flood"]
    assert 0.08 * flood["events_in"] < flood["dead_lettered"] < 0.12 * flood["events_in"]
    assert report["ok"] is True
    assert run.returncode == 0, run.stderr
