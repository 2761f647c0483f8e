"""The saved dashboard queries (connectors/dashboard/*.sql) on a known data set in a real
chDB: each runs read-only and gives the numbers worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.clickhouse import (
    RowsRefused,
    Warehouse,
    dashboard_parameters,
    dashboard_queries,
)
from streams.settings import Settings
from streams.sink import COLUMNS

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)


def fact(n: int, kind: str, channel: str, one_id: str, amount: str = "0", **more: Any) -> list:
    row = {
        "event_id": f"e{n}", "touchpoint_type": kind, "event_time": NOW + timedelta(seconds=n),
        "processed_time": NOW, "channel": channel, "store_id": "", "one_id": one_id,
        "new_member": False, "order_id": "", "campaign_id": "", "room_id": "", "quantity": 1,
        "amount": Decimal(amount), "points": 0, "source_topic": "t", "source_partition": 0,
        "source_offset": n, "outcome": "", "attribution": "", "order_status": "", **more,
    }  # fmt: skip
    return [row[c] for c in COLUMNS["touchpoint_fact"]]


FACTS = [
    fact(1, "livestream_click", "livestream", "O1", room_id="R1", new_member=True),
    fact(2, "livestream_click", "livestream", "O2", room_id="R1", new_member=True),
    fact(3, "app_order", "app", "O1", "100.00", attribution="livestream:R1"),
    fact(4, "app_order", "app", "O1", "50.00"),
    fact(5, "store_scan", "store", "O3", "30.00", store_id="S1", new_member=True),
    fact(6, "red_envelope_claim", "wechat", "O2", "10", campaign_id="C1"),
    fact(7, "red_envelope_claim", "wechat", "O3", "10", campaign_id="C1",
         outcome="claim_refused"),
    fact(8, "app_order", "mini_program", "O2", "20.00", attribution="red_envelope:C1"),
    # an order sent again under a new event id: in no count
    fact(10, "app_order", "app", "O3", "30.00", store_id="S1", outcome="order_repeated"),
]  # fmt: skip


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    path: Path = tmp_path_factory.mktemp("chdb")
    w = Warehouse.connect(f"chdb://{path}")
    w.migrate()
    w.insert("touchpoint_facts", COLUMNS["touchpoint_fact"], FACTS, "t1")
    w.insert("touchpoint_facts", COLUMNS["touchpoint_fact"], FACTS[:3], "t2")  # re-emitted
    ledger = [["e3", "earn:app_order", "O1", 100, NOW, NOW, "t", 0, 3],
              ["e4", "earn:app_order", "O1", 50, NOW, NOW, "t", 0, 4],
              ["e9", "reverse:cancelled", "O1", -50, NOW, NOW, "t", 0, 9]]  # fmt: skip
    w.insert("points_ledger", COLUMNS["points_entry"], ledger, "l1")
    # per-minute rows as the workers send them: absolute, versioned by events; the app
    # bucket was first sent after one order, then after both
    minute = [["app", "app_order", "", 1, "100", 1, 0], ["app", "app_order", "", 2, "150", 2, 0],
              ["store", "store_scan", "S1", 1, "30", 1, 0],
              ["mini_program", "app_order", "", 1, "20", 1, 0],
              ["livestream", "livestream_click", "", 2, "0", 0, 0],
              ["wechat", "red_envelope_claim", "", 2, "0", 0, 1]]  # fmt: skip
    rows = [
        [NOW, c, t, s, e, Decimal(g), o, cl, Decimal(0), NOW] for c, t, s, e, g, o, cl in minute
    ]
    w.insert("touchpoint_minute", COLUMNS["minute_aggregate"], rows[:3], "m1")
    w.insert("touchpoint_minute", COLUMNS["minute_aggregate"], rows[1:], "m2")
    moves = [["SKU1", 1, "receive", 10, 10], ["SKU1", 2, "sale", -3, 7],
             ["SKU1", 3, "sale", -3, 4], ["SKU1", 3, "sale", -3, 4],  # re-emitted
             ["SKU2", 1, "receive", 20, 20]]  # fmt: skip
    w.insert(
        "stock_movements",
        COLUMNS["stock_movement"],
        [[f"m{v}", sku, "S1", kind, d, 0, on, 0, v, NOW, NOW, "t", 0, v]
         for sku, v, kind, d, on in moves],
        "s1",
    )  # fmt: skip
    yield w
    w.close()


def run(warehouse: Warehouse, name: str) -> list[dict]:
    zone, sql = Settings.model_fields["reporting_time_zone"].default, dashboard_queries()[name]
    result = warehouse.query(sql, dashboard_parameters(zone, sql))
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_every_saved_query_runs_read_only(warehouse: Warehouse) -> None:
    assert len(dashboard_queries()) >= 9
    for name in dashboard_queries():
        run(warehouse, name)


def test_gmv_splits_and_order_values(warehouse: Warehouse) -> None:
    split = {r["side"]: (r["orders"], r["gmv"]) for r in run(warehouse, "online_offline_split")}
    assert split == {"offline": (1, Decimal("30")), "online": (3, Decimal("170"))}
    aov = {r["channel"]: r["aov"] for r in run(warehouse, "average_order_value")}
    assert aov == {"app": 75, "mini_program": 20, "store": 30}
    assert [(r["store_id"], r["gmv"]) for r in run(warehouse, "store_leaderboard")] == [
        ("S1", Decimal("30"))
    ]


def test_per_minute_aggregates_take_the_newest_version(warehouse: Warehouse) -> None:
    got = {
        r["channel"]: (r["orders"], r["gmv"], r["events"], r["members"])
        for r in run(warehouse, "gmv_per_minute")
    }
    assert got == {
        # O1 twice, and O3 sending an order again (an event, though not an order): members
        # come from the facts, the counts from the minute rows above
        "app": (2, Decimal("150"), 2, 2),
        "livestream": (0, Decimal("0"), 2, 2),
        "mini_program": (1, Decimal("20"), 1, 1),
        "store": (1, Decimal("30"), 1, 1),
        "wechat": (0, Decimal("0"), 2, 2),
    }


def test_low_stock_reads_the_newest_movement(warehouse: Warehouse) -> None:
    rows = run(warehouse, "low_stock")
    assert [(r["sku"], r["location"], r["on_hand"], r["available"]) for r in rows] == [
        ("SKU1", "S1", 4, 4)
    ]


def test_conversions(warehouse: Warehouse) -> None:
    [room] = run(warehouse, "livestream_conversion")
    assert (room["room_id"], room["viewers"], room["buyers"], room["gmv"]) == (
        "R1",
        2,
        1,
        Decimal("100"),
    )
    assert room["conversion"] == 0.5
    [campaign] = run(warehouse, "red_envelope_conversion")
    assert (campaign["claims"], campaign["refused"], campaign["orders"]) == (1, 1, 1)
    assert campaign["conversion"] == 1.0
    [day] = run(warehouse, "new_members_per_day")
    assert (day["new_members"], day["from_public"], day["public_to_own"]) == (3, 2, 2)
    [repurchase] = run(warehouse, "repurchase_rate")
    assert (repurchase["buyers"], repurchase["repeat_buyers"]) == (3, 1)


def test_points_liability(warehouse: Warehouse) -> None:
    rows = {r["rule"]: r["points"] for r in run(warehouse, "points_liability")}
    assert rows == {"earn:app_order": 150, "reverse:cancelled": -50}


@pytest.mark.parametrize(
    "value", [{"quantity": 2**40}, {"amount": Decimal("1e30")}, {"points": "many"}]
)
def test_a_row_its_columns_cannot_take_is_refused_not_waited_for(
    warehouse: Warehouse, value: dict[str, Any]
) -> None:
    """The sink dead-letters refused rows (tests/integration/test_sink_records.py); an
    unavailable warehouse it waits for. A value no retry would make fit is a refusal."""
    before = warehouse.query("SELECT count() FROM touchpoint_facts").rows
    with pytest.raises(RowsRefused) as refused:
        warehouse.insert(
            "touchpoint_facts",
            COLUMNS["touchpoint_fact"],
            [
                fact(90, "app_order", "app", "O9", "1.00"),
                fact(91, "app_order", "app", "O9", **value),
            ],
            "refused",
        )
    assert refused.value.detail and "O9" not in refused.value.detail
    assert warehouse.query("SELECT count() FROM touchpoint_facts").rows == before
