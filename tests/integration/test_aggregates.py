"""Per-minute aggregates and stock movements, end to end on real processes: two workers
share the partitions, so one minute's bucket is counted by both; the aggregate rows in
ClickHouse must equal the pure core's reference per bucket, the distinct members the
facts', and the stock movements must replay to the Redis stock of every key with no gap
and no duplicate."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from streams import reads
from streams.demo import wait_accounted

from ..harness import count_kinds, minute_mismatches, stock_mismatches, traffic
from .conftest import Running

pytestmark = pytest.mark.integration


def test_minute_aggregates_and_stock_movements_equal_the_reference(
    run_stack: Callable[..., Running],
) -> None:
    stack = run_stack(workers=2, sink_batch_rows=400)
    sim = traffic(stack, 3000, seed=71)
    wait_accounted(stack.views, stack.endpoints, 3000, timeout=180)

    assert minute_mismatches(stack, sim.messages or [], timeout=60) == []
    assert stock_mismatches(stack, timeout=60) == []

    # the dashboard reads them through one view; a sample of what it shows
    live = reads.query(
        stack.endpoints,
        "SELECT sum(events), sum(orders), sum(gmv), sum(claims) FROM touchpoint_minute_live",
    ).rows[0]
    facts = reads.query(
        stack.endpoints,
        "SELECT count(), countIf(touchpoint_type = 'red_envelope_claim' AND "
        "outcome != 'claim_refused') FROM touchpoint_facts FINAL",
    ).rows[0]
    assert int(live[0]) == int(facts[0]) > 2500
    assert int(live[3]) == int(facts[1]) > 0
    assert int(live[1]) > 0 and Decimal(str(live[2])) > 0
    kinds = count_kinds(stack)
    assert {"receive", "sale", "reserve"} <= set(kinds), kinds
