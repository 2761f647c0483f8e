"""After `omni forget`, nothing of the person is left in other members' stored results or
merge-log rows, and nothing of theirs comes back on a redelivery (docs/identity.md,
"Look-up and erasure")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis

from connectors.clickhouse import Warehouse
from connectors.redis_views import RedisViews, event_item
from streams.core.plan import EventPlan
from streams.pipeline import Inbound, identity_records
from streams.sink import COLUMNS

from .conftest import Services
from .test_redis_views import plan

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
X_CARD, X_PHONE = "card:C-X-0042", "phone:" + "f" * 32  # the person who asks to be erased
Y_CARD = "card:C-Y-0007"  # another customer


@pytest.fixture
def views(services: Services) -> RedisViews:
    client = redis.Redis.from_url(services.redis_url)
    return RedisViews(client, prefix=f"pv{uuid.uuid4().hex[:8]}:", dedupe_ttl_s=3600)


@pytest.fixture
def warehouse(chdb_warehouse: Warehouse) -> Warehouse:
    return chdb_warehouse


def _apply_and_sink(views: RedisViews, warehouse: Warehouse, plans: list[EventPlan], n: int):
    """Apply the plans as one batch, as a worker would, and insert the merge-log records
    the worker would publish into ClickHouse, as the sink would."""
    items = [event_item(p, "s/0", i) for i, p in enumerate(plans)]
    outcomes = views.apply(items)
    rows = []
    for i, (p, o) in enumerate(zip(plans, outcomes, strict=True)):
        if o.emits_fact:
            msg = Inbound("t", 0, i, None, None)
            for rec in identity_records(p, o, msg, T0):
                rows.append([rec[c] for c in COLUMNS["identity_event"]])
    if rows:
        warehouse.insert("identity_events", COLUMNS["identity_event"], rows, f"batch-{n}")
    return outcomes


def _forget(views: RedisViews, warehouse: Warehouse, lookup: str) -> dict:
    """What `omni forget` does (streams/cli.py forget), in the same order."""
    erased = views.forget(lookup, 1)
    assert erased is not None
    keys = erased.pop("keys")
    views.blank_results([erased["one_id"], *erased["absorbed"]], keys)
    warehouse.erase([erased["one_id"]], erased["absorbed"], erased["identifiers"], keys)
    return erased


def _stored_results(views: RedisViews) -> list[bytes]:
    return [views.client.get(k) or b"" for k in views.client.scan_iter(match=views.prefix + "e:*")]


def _identity_rows_naming(warehouse: Warehouse, needle: str) -> list:
    return warehouse.query(
        "SELECT event_id, action, one_id, other_one_id, identifiers_before, identifiers_other"
        " FROM identity_events FINAL WHERE has(identifiers_before, {k:String})"
        " OR has(identifiers_other, {k:String})",
        {"k": needle},
    ).rows


def test_forget_leaves_no_identifier_in_another_members_refused_merge(
    views: RedisViews, warehouse: Warehouse
) -> None:
    plans = [
        plan("y-1", Y_CARD, minutes=1),  # O1: Y
        plan("x-1", X_CARD, X_PHONE, minutes=2),  # O2: X
        # a till scans both cards: two carded members are never fused (refused, flagged)
        plan("y-2", Y_CARD, X_CARD, minutes=3),
    ]
    _apply_and_sink(views, warehouse, plans, 1)
    erased = _forget(views, warehouse, X_CARD)
    assert erased["one_id"] == "O2"
    # Redis: no stored result names X's identifiers or OneID any more
    leftover = [v for v in _stored_results(views) if b"C-X-0042" in v or b"O2" in v]
    assert leftover == [], leftover
    # the worker dies before its commit: the batch is redelivered, the stored results
    # re-emitted, and the sink writes them to ClickHouse again
    _apply_and_sink(views, warehouse, plans, 2)
    assert _identity_rows_naming(warehouse, X_CARD) == []


def test_forget_leaves_no_identifier_in_another_members_not_linked_entry(
    views: RedisViews, warehouse: Warehouse
) -> None:
    plans = [
        plan("y-1", Y_CARD, minutes=1),  # O1: Y
        # a till scans Y's card and X's (not known yet): X's card is not linked to Y
        # (limit:card), logged under Y's OneID
        plan("y-2", Y_CARD, X_CARD, minutes=2),
        plan("x-1", X_CARD, X_PHONE, minutes=3),  # O2: X
    ]
    _apply_and_sink(views, warehouse, plans, 1)
    erased = _forget(views, warehouse, X_CARD)
    assert erased["one_id"] == "O2"
    # ClickHouse: the merge log still holds X's card number after the erasure
    assert _identity_rows_naming(warehouse, X_CARD) == []
    # Redis: Y's stored result still names X's card number
    leftover = [v for v in _stored_results(views) if b"C-X-0042" in v]
    assert leftover == [], leftover


@pytest.mark.parametrize("refused", [False, True], ids=["not_linked", "refused merge"])
def test_an_identifier_the_script_writes_escaped_is_scrubbed_too(
    views: RedisViews, warehouse: Warehouse, refused: bool
) -> None:
    """The script's cjson writes "/" as "\\/": a card "C/X/0042" was not found in the
    stored results as orjson spells it, and stayed where only the key names the person."""
    card = "card:C/X/0042"
    plans = [plan("y-1", Y_CARD, minutes=1), plan("y-2", Y_CARD, card, minutes=3),
             plan("x-1", card, minutes=2 if refused else 4)]  # fmt: skip
    _apply_and_sink(views, warehouse, sorted(plans, key=lambda p: p.event_time), 1)
    _forget(views, warehouse, card)
    assert [v for v in _stored_results(views) if b"0042" in v] == []
    assert _identity_rows_naming(warehouse, card) == []
