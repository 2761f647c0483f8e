"""``python -m tests.views_bench``: the comparison it rests on tells a changed Redis state
apart, and a run against the committed script reports the same state."""

from __future__ import annotations

import pytest

from tests import views_bench

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batches() -> list:
    return views_bench.prepared_batches(600, 100)


def test_same_script_same_state_and_counted_commands(batches: list) -> None:
    script = views_bench.script_at(None)
    first = views_bench.run_variant(script, batches, count_calls=False)
    again = views_bench.run_variant(script, batches, count_calls=False)
    assert first["state"] == again["state"] and len(first["state"]) > 100
    assert first["redis_cpu_us"] > 0 and first["call_wall_us"] > 0
    assert 0 < first["worker_cpu_us"] < first["call_wall_us"]
    # the script's commands run inside it: part of its time, not all of it
    assert 0 < first["commands_us"] < first["script_us"] < first["call_wall_us"]
    calls = views_bench.run_variant(script, batches, count_calls=True)["calls"]
    # every event sets its dedupe record: at least one SET per event applied
    assert calls["SET"] >= 0.9 and sum(calls.values()) > 5


def test_a_script_that_counts_differently_leaves_a_different_state(batches: list) -> None:
    script = views_bench.script_at(None)
    changed = script.replace("'n', num(h[4]) + 1", "'n', num(h[4]) + 2")
    assert changed != script
    # side by side, as the bench runs them: each on its own server, the batches interleaved
    both = views_bench.run_variants({"a": script, "b": changed}, batches, count_calls=False)
    a, b = both["a"]["state"], both["b"]["state"]
    assert a != b
    differing = [k for k in a if a[k] != b.get(k)]
    assert differing and all(k.startswith(b"omni:m:") for k in differing)
