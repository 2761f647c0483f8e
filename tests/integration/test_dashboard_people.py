"""Dashboard panels that count people count a member once, whatever OneIDs were merged
into it after its facts were written, and count days in the reporting time zone. Each
test loads a small, hand-checked set of facts into its own chDB and runs one saved query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.clickhouse import Warehouse
from streams.sink import COLUMNS

from .test_dashboard_queries import fact as queries_fact
from .test_dashboard_queries import run

pytestmark = pytest.mark.integration
NOW = datetime(2024, 6, 1, 4, 0, tzinfo=UTC)  # noon in Shanghai: one day in any zone


def fact(n: int, kind: str, channel: str, one_id: str, amount: str = "0", **more: Any) -> list:
    """A fact of test_dashboard_queries, its events a minute apart from NOW."""
    return queries_fact(n, kind, channel, one_id, amount,
                        **{"event_time": NOW + timedelta(minutes=n), **more})  # fmt: skip


def merge_entry(n: int, survivor: str, absorbed: str) -> list:
    row = {
        "event_id": f"e{n}", "seq": 0, "event_time": NOW + timedelta(minutes=n),
        "processed_time": NOW, "action": "merge", "one_id": survivor, "other_one_id": absorbed,
        "reason": "", "identifiers_before": ["phone:h"], "identifiers_other": ["card:C1"],
        "points_moved": 0, "source_topic": "t", "source_partition": 0, "source_offset": n,
    }  # fmt: skip
    return [row[c] for c in COLUMNS["identity_event"]]


@pytest.fixture
def warehouse(chdb_warehouse: Warehouse) -> Warehouse:
    return chdb_warehouse


def _one_person_under_two_oneids(warehouse: Warehouse) -> None:
    """One person: O2 (phone, app) buys in the app; O5 (card) is created at the till and
    buys there; a guide then scans their member code showing card and phone, which merges
    O5 into the older O2 (docs/identity.md). One member (OneID O2) who bought twice."""
    facts = [
        fact(1, "app_order", "app", "O2", "50.00", new_member=True, order_id="ORD-1"),
        fact(2, "store_scan", "store", "O5", "30.00", store_id="S1", new_member=True),
        fact(3, "store_scan", "store", "O2", "0.00", store_id="S1"),  # member code scan
    ]
    warehouse.insert("touchpoint_facts", COLUMNS["touchpoint_fact"], facts, "merge-f")
    warehouse.insert("identity_events", COLUMNS["identity_event"], [merge_entry(3, "O2", "O5")],
                     "merge-i")  # fmt: skip


def test_repurchase_rate_follows_oneid_merges(warehouse: Warehouse) -> None:
    _one_person_under_two_oneids(warehouse)
    [repurchase] = run(warehouse, "repurchase_rate")
    # one buyer who bought twice: a repeat buyer
    assert (repurchase["buyers"], repurchase["repeat_buyers"], repurchase["repurchase_rate"]) == (
        1,
        1,
        1.0,
    )


def test_repurchase_rate_leaves_out_cancelled_and_fully_refunded_orders(
    warehouse: Warehouse,
) -> None:
    """Three people order twice each in the app. O1's second order is cancelled, O2's
    refunded in two parts that add up to what was paid, O3's refunded in part: only O3
    bought twice. (A store checkout has no order id: never undone.)"""

    def order(n: int, one_id: str, amount: str) -> list:
        return fact(n, "app_order", "app", one_id, amount, order_id=f"ORD-{n}")

    def status(n: int, order_n: int, kind: str, amount: str = "0") -> list:
        return fact(n, "order_status", "other", "", amount, order_id=f"ORD-{order_n}",
                    order_status=kind)  # fmt: skip

    facts = [
        order(1, "O1", "40.00"), order(2, "O1", "60.00"), status(3, 2, "cancelled"),
        order(4, "O2", "40.00"), order(5, "O2", "60.00"),
        status(6, 5, "refunded", "25.00"), status(7, 5, "refunded", "35.00"),
        order(8, "O3", "40.00"), order(9, "O3", "60.00"), status(10, 9, "refunded", "59.99"),
        fact(11, "store_scan", "store", "O4", "30.00", store_id="S1"),
        status(12, 8, "paid"),
    ]  # fmt: skip
    warehouse.insert("touchpoint_facts", COLUMNS["touchpoint_fact"], facts, "undone")
    [repurchase] = run(warehouse, "repurchase_rate")
    assert (repurchase["buyers"], repurchase["repeat_buyers"]) == (4, 1)


def test_new_members_follow_oneid_merges(warehouse: Warehouse) -> None:
    _one_person_under_two_oneids(warehouse)
    [day] = run(warehouse, "new_members_per_day")
    # one person joined: new members minus merges (docs/operations.md, identity column)
    assert day["new_members"] == 1


def test_merges_of_merges_are_followed_whatever_order_they_were_written_in(
    warehouse: Warehouse,
) -> None:
    """O1 buys in the app, O2 at the till, O3 clicks a livestream; O3 absorbs O2 (written
    first), then O1 absorbs O3: one person, O1, who bought twice."""
    facts = [
        fact(1, "app_order", "app", "O1", "50.00", new_member=True, order_id="ORD-1"),
        fact(2, "store_scan", "store", "O2", "30.00", store_id="S1", new_member=True),
        fact(3, "livestream_click", "livestream", "O3", new_member=True, room_id="R1"),
    ]
    warehouse.insert("touchpoint_facts", COLUMNS["touchpoint_fact"], facts, "chain-f")
    merges = [merge_entry(5, "O1", "O3"), merge_entry(4, "O3", "O2")]
    warehouse.insert("identity_events", COLUMNS["identity_event"], merges, "chain-i")

    [repurchase] = run(warehouse, "repurchase_rate")
    assert (repurchase["buyers"], repurchase["repeat_buyers"]) == (1, 1)
    [day] = run(warehouse, "new_members_per_day")
    assert day["new_members"] == 1
    survivors = warehouse.query("SELECT one_id, survivor FROM one_id_survivors ORDER BY one_id")
    assert survivors.rows == [["O2", "O1"], ["O3", "O1"]]


def test_new_members_are_counted_on_the_local_day(warehouse: Warehouse) -> None:
    """A member who joins at a Shanghai till at 07:30 on 1 June (envelope time_zone
    Asia/Shanghai, "for local-time reporting") is a new member of 1 June, not 31 May."""
    joined = datetime(2024, 6, 1, 7, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    row = fact(1, "store_scan", "store", "O1", "30.00", store_id="S1", new_member=True)
    row[COLUMNS["touchpoint_fact"].index("event_time")] = joined.astimezone(UTC)
    warehouse.insert("touchpoint_facts", COLUMNS["touchpoint_fact"], [row], "tz-f")

    [day] = run(warehouse, "new_members_per_day")
    assert (str(day["day"]), day["new_members"]) == ("2024-06-01", 1)


def test_person_facts_has_every_column_of_the_facts(warehouse: Warehouse) -> None:
    """A view's columns are fixed when it is made: a migration that adds a column to
    touchpoint_facts makes person_facts again (0010)."""

    def columns(table: str) -> list[str]:
        sql = f"SELECT name FROM system.columns WHERE table = '{table}' ORDER BY position"
        return [name for (name,) in warehouse.client.query(sql).result_rows]

    assert columns("person_facts") == [*columns("touchpoint_facts"), "person"]
