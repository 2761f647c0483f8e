"""``omni bench-broker`` end to end with a tiny configuration: the traffic it claims went
through, and the linger it claims to compare is the one the producer used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_broker_measures_what_it_says(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    argv = [
        sys.executable,
        "-m",
        "streams.cli",
        "bench-broker",
        "--json",
        "--rate",
        "200",
        "--seconds",
        "3",
        "--lingers",
        "0,150",
        "--fill",
        "300",
        "--partitions",
        "1",
    ]
    done = subprocess.run(
        argv, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)

    no_linger, linger = r["by_linger"]
    held = r["held"]
    steps = [no_linger, linger, held["empty"], held["after"]]
    assert [m["linger_ms"] for m in steps] == [0, 150, 0, 0]
    for m in steps:
        # every message produced in the window was consumed in it (give or take the tail)
        assert m["consumed_per_s"] == pytest.approx(200, rel=0.2), m
        assert 0 < m["p50_ms"] <= m["p99_ms"] and m["broker_cores"] > 0, m
    # the producer really lingered: a message waits for its batch for up to 150 ms
    assert linger["p50_ms"] > no_linger["p50_ms"] + 30
    assert held["batches"] == 300 and held["fill_seconds"] > 0


def test_bench_broker_refuses_a_bad_linger_list(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench-broker", "--lingers", "5,fast"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "expected comma-separated whole numbers" in done.stderr
