"""``omni bench``'s baselines: one that fails costs the run only its own numbers, and the
report says which one and why."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from connectors.embedded import StartFailed
from streams import bench


def _failing() -> dict[str, Any]:
    raise StartFailed("bare-faust-2 exited with 1; see logs/bare-faust-2.log")


def test_a_failed_baseline_is_kept_as_its_error_and_noted() -> None:
    notes: list[str] = []
    got = bench._baseline("bare_faust", notes.append, _failing)
    assert got == {"error": "bare-faust-2 exited with 1; see logs/bare-faust-2.log"}
    assert notes == [
        "baseline bare_faust failed: bare-faust-2 exited with 1; see logs/bare-faust-2.log"
    ]


def test_a_measured_baseline_is_passed_through() -> None:
    got = bench._baseline("confluent_kafka", lambda _: None, lambda: {"events_per_s": 5.0})
    assert got == {"events_per_s": 5.0}


def test_an_unexpected_error_is_not_taken_for_a_failed_baseline() -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("events_per_s")

    with pytest.raises(KeyError):
        bench._baseline("bare_faust", lambda _: None, broken)


BASELINES = {
    "confluent_kafka": {"events_per_s": 40_000.0},
    "bare_faust": {"error": "bare-faust-1 exited with 1"},
    "bare_faust_stock": {"events_per_s": 10_000.0, "window_s": 20.0},
}


def test_ratios_name_each_baseline_and_none_for_one_not_measured() -> None:
    assert bench.ratios(5_000.0, BASELINES) == {
        "pipeline_vs_confluent": 0.125,
        "pipeline_vs_bare_faust": None,
        "pipeline_vs_bare_faust_stock": 0.5,
    }
    # a baseline that read nothing gives no ratio either; one not run, no key
    assert bench.ratios(5_000.0, {"bare_faust": {"events_per_s": 0.0}}) == {
        "pipeline_vs_bare_faust": None
    }


def test_the_report_says_which_baseline_failed_and_why() -> None:
    lines = list(bench.baseline_rows(BASELINES, bench.ratios(5_000.0, BASELINES)))
    assert lines == [
        ("confluent-kafka consumer", "40,000 events/s (pipeline = 12.50%)"),
        ("bare faust agent", "FAILED: bare-faust-1 exited with 1"),
        ("bare faust agent (stock)", "10,000 events/s over 20 s (pipeline = 50%)"),
    ]
    assert bench.failed_baselines({"baselines": BASELINES}) == {
        "bare_faust": "bare-faust-1 exited with 1"
    }


def test_a_measured_bare_agent_is_named_by_its_drain_loop() -> None:
    measured = {
        "bare_faust": {"events_per_s": 20_000.0, "window_s": 20.0, "faust_drain": "patched"}
    }
    assert list(bench.baseline_rows(measured, bench.ratios(5_000.0, measured))) == [
        ("bare faust agent (patched)", "20,000 events/s over 20 s (pipeline = 25%)")
    ]
    assert bench.failed_baselines({"baselines": measured}) == {}


def test_without_the_bare_faust_baseline_its_target_is_not_met() -> None:
    result = {
        "pipeline": {"events_per_s_per_worker": 5_000.0},
        "latency": {"rate_target": 1_000.0, "p99_ms": 400.0, "measured": 30_000},
        "redis": {
            "member_keys_bytes_per_member": 900.0,
            "members": 100_000,
            "bytes_per_member": 3_000.0,
        },
        "rss": {"max_abs_growth_pct": 1.0, "soak_s": 700.0},
        "ratios": bench.ratios(5_000.0, BASELINES),
    }
    # the patched agent failed: judged against the stock one, which was measured
    target = bench._targets(result)["pipeline_vs_bare_faust"]
    assert target["value"] == "50%" and target["met"] is False
    # neither measured: no verdict but "not met"
    result["ratios"] = bench.ratios(5_000.0, {"confluent_kafka": BASELINES["confluent_kafka"]})
    target = bench._targets(result)["pipeline_vs_bare_faust"]
    assert target["value"] == "no baseline" and target["met"] is False
    # the others are judged on the run's own numbers as before
    assert bench._targets(result)["latency_p99"]["met"] is True


def test_the_bare_faust_target_is_judged_against_the_faster_agent() -> None:
    # (before: against the patched agent only, 75 % "met" here)
    measured = {
        "bare_faust": {"events_per_s": 10_000.0, "window_s": 20.0, "faust_drain": "patched"},
        "bare_faust_stock": {"events_per_s": 16_000.0, "window_s": 20.0, "faust_drain": "stock"},
    }
    result = {
        "pipeline": {"events_per_s_per_worker": 7_500.0},
        "latency": {"rate_target": 1_000.0, "p99_ms": 400.0, "measured": 30_000},
        "redis": {"member_keys_bytes_per_member": 900.0, "members": 100_000,
                  "bytes_per_member": 3_000.0},
        "rss": {"max_abs_growth_pct": 1.0, "soak_s": 700.0},
        "ratios": bench.ratios(7_500.0, measured),
    }  # fmt: skip
    target = bench._targets(result)["pipeline_vs_bare_faust"]
    assert (target["value"], target["met"]) == ("47%", False)


def test_cpu_seconds_count_the_children_a_process_reaped() -> None:
    # redis-server's AOF rewrite is a forked child: its CPU is Redis's (before: left out)
    before = bench.cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert bench.cpu_seconds(os.getpid()) - before >= 0.1


def test_the_rate_runs_from_the_first_batch_that_landed_not_from_the_windows_start() -> None:
    # 5,000 events/s in batches of 2,000 every 0.4 s; the window opens 0.01 s before a
    # landing, sampled every 0.05 s (before: 5,300+ for the window, the first batch
    # counted over 0.01 s of its 0.4)
    samples = [(0.0, 0)] + [
        (0.05 * i, 2_000 * (1 + int((0.05 * i - 0.01) // 0.4))) for i in range(1, 200)
    ]
    changes = bench._changes(samples)
    assert changes[0][1] == 2_000
    assert bench._rate_between(changes, 0.0, 10.0) == pytest.approx(5_000, rel=0.01)
