"""``python -m tests.sink_bench``: a drain on fresh services reports every record written,
in the batches asked for, and what it cost."""

from __future__ import annotations

import pytest

from tests import sink_bench

pytestmark = pytest.mark.integration


def test_a_small_drain_is_measured() -> None:
    made = list(sink_bench.records(600))
    minutes = sum(1 for type_name, _ in made if type_name == "minute_aggregate")
    assert minutes > 0 and {t for t, _ in made} == set(sink_bench.TABLE_TYPES)
    got = sink_bench.run(600, 200, sink_bench.ROOT, settle=0)
    assert got["rows"] <= len(made) and got["batches"] >= 3
    # every table but the per-minute rows' went to ClickHouse as Avro
    assert got["rows_avro"] == len(made) - minutes
    assert got["cpu_us_per_row"] > 0 and got["settled_cpu_us_per_row"] >= got["cpu_us_per_row"]
