"""``python -m tests.faust_bench``: bare agents of two checkouts read every message of
topics it fills, and the report carries a pass of each."""

from __future__ import annotations

import json

import pytest

from tests import faust_bench

pytestmark = pytest.mark.integration


def test_a_pass_of_each_checkout_reads_what_was_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = str(faust_bench.ROOT)
    code = faust_bench.main(["--messages", "30000", "--rounds", "1", "--code", root, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["messages"] == 30_000
    assert set(report["variants"]) == {"working tree", root}
    for variant in report["variants"].values():
        (cpu,), (rate,) = variant["cpu_us_per_event"], variant["events_per_s"]
        # a bare agent costs tens of microseconds an event; nothing is read twice
        assert 1 < cpu < 5_000 and rate > 0
