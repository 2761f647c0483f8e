"""The Redis views adapter against a real redis-server: atomic batches, the offset guard,
event-id dedupe, merges and all-or-nothing reservations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from connectors.redis_views import RedisViews, dead_item, event_item
from streams.core.plan import EventPlan, StockOp

from .conftest import Services

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def views(services: Services) -> RedisViews:
    client = redis.Redis.from_url(services.redis_url)
    return RedisViews(client, prefix=f"v{uuid.uuid4().hex[:8]}:", dedupe_ttl_s=3600)


def plan(
    event_id: str, *keys: str, points: int = 0, stock: tuple[StockOp, ...] = (), minutes: int = 0
) -> EventPlan:
    return EventPlan(
        event_id=event_id,
        touchpoint_type="store_scan",
        event_time=T0 + timedelta(minutes=minutes),
        channel="store",
        identity_keys=keys,
        points=points,
        stock=stock,
    )


def test_new_duplicate_replay_and_dead_are_counted_once(views: RedisViews) -> None:
    first = [
        event_item(plan("e1", "card:C1", points=10), "topic/0", 0),
        dead_item("topic/0", 1),
        event_item(plan("e2", "card:C2", points=5), "topic/1", 0),
    ]
    assert [o.status for o in views.apply(first)] == ["new", "dead", "new"]
    # the same offsets again (a redelivered batch): nothing changes
    assert [o.status for o in views.apply(first)] == ["replay", "replay_dead", "replay"]
    # the same event re-sent by its producer at a new offset: a duplicate, no effect
    resent = [event_item(plan("e1", "card:C1", points=10), "topic/0", 2)]
    assert [o.status for o in views.apply(resent)] == ["duplicate"]
    stats = views.stats()
    assert stats["processed"] == 3
    assert stats["dead_lettered"] == 1
    assert stats["duplicates"] == 1
    assert stats["facts"] == 2
    assert stats["points_total"] == 15
    assert stats["members"] == 2


def test_replay_returns_the_first_result(views: RedisViews) -> None:
    [first] = views.apply([event_item(plan("e1", "card:C1"), "t/0", 5)])
    [again] = views.apply([event_item(plan("e1", "card:C1"), "t/0", 5)])
    assert first.status == "new" and first.new_member
    assert again.status == "replay"
    assert (again.one_id, again.new_member) == (first.one_id, first.new_member)


def test_link_merges_into_the_older_oneid_and_carries_points(views: RedisViews) -> None:
    views.apply([event_item(plan("a", "card:C1", points=100), "t/0", 0)])
    views.apply([event_item(plan("b", "phone:abc", points=7, minutes=5), "t/0", 1)])
    older = views.resolve("card:C1")
    younger = views.resolve("phone:abc")
    assert older != younger
    [linked] = views.apply(
        [event_item(plan("c", "phone:abc", "card:C1", points=1, minutes=9), "t/0", 2)]
    )
    assert linked.one_id == older
    assert views.resolve("phone:abc") == older
    assert views.resolve(f"oneid:{younger}") == older  # the absorbed id resolves forever
    member = views.member("card:C1")
    assert member is not None
    assert member["points"] == 108
    assert member["events"] == 3
    assert member["identifiers"] == ["card:C1", "phone:abc"]
    assert member["first_seen_ms"] == int(T0.timestamp() * 1000)
    assert member["last_seen_ms"] == int((T0 + timedelta(minutes=9)).timestamp() * 1000)
    stats = views.stats()
    assert (stats["members"], stats["merges"]) == (1, 1)


def test_reservation_is_all_or_nothing_and_never_oversells(views: RedisViews) -> None:
    receive = (StockOp("receive", "SKU1", "S1", 3), StockOp("receive", "SKU2", "S1", 1))
    views.apply([event_item(plan("r", stock=receive), "s/0", 0)])
    both = (StockOp("reserve", "SKU1", "S1", 2), StockOp("reserve", "SKU2", "S1", 2))
    [refused] = views.apply([event_item(plan("o1", "app:1", stock=both), "o/0", 0)])
    assert refused.backordered
    assert [r["reserved"] for r in views.stock("SKU1")] == [0]  # no partial hold
    fits = (StockOp("reserve", "SKU1", "S1", 2), StockOp("reserve", "SKU2", "S1", 1))
    [held] = views.apply([event_item(plan("o2", "app:1", stock=fits), "o/0", 1)])
    assert not held.backordered
    assert views.stock("SKU1", "S1") == [
        {"sku": "SKU1", "location": "S1", "on_hand": 3, "reserved": 2, "available_to_promise": 1}
    ]
    assert views.stock("SKU2")[0]["available_to_promise"] == 0


def test_sale_never_takes_on_hand_below_zero(views: RedisViews) -> None:
    views.apply([event_item(plan("r", stock=(StockOp("receive", "SKU1", "S1", 2),)), "s/0", 0)])
    views.apply(
        [event_item(plan("s", "card:C", stock=(StockOp("sale", "SKU1", "S1", 5),)), "s/0", 1)]
    )
    assert views.stock("SKU1", "S1")[0]["on_hand"] == 0
    assert views.stats()["stock_discrepancies"] == 1


def test_sale_of_stock_the_views_never_saw(views: RedisViews) -> None:
    [sold] = views.apply(
        [event_item(plan("s", "card:C", stock=(StockOp("sale", "SKU9", "S1", 2),)), "s/0", 0)]
    )
    assert sold.status == "new"
    assert views.stock("SKU9", "S1") == []
    assert views.stats()["stock_discrepancies"] == 1


def test_the_stock_of_a_sku_is_that_skus_whatever_characters_it_holds(
    views: RedisViews,
) -> None:
    # a SKU may hold "@" and glob characters; a location may not hold "@"
    receipts = [("A", "S1", 5), ("A@B", "C", 7), ("AX", "S1", 9), ("TEE[RED]*", "S2", 3)]
    views.apply(
        [
            event_item(plan(f"r{n}", stock=(StockOp("receive", sku, loc, q),)), "s/0", n)
            for n, (sku, loc, q) in enumerate(receipts)
        ]
    )

    def held(sku: str, location: str | None = None) -> list[tuple[str, str, int]]:
        return [(r["sku"], r["location"], r["on_hand"]) for r in views.stock(sku, location)]

    assert held("A") == [("A", "S1", 5)]  # not A@B's stock at C, nor AX's
    assert held("A@B") == [("A@B", "C", 7)]
    assert held("A?") == []
    assert held("*") == []
    assert held("TEE[RED]*") == [("TEE[RED]*", "S2", 3)]
    assert held("TEE[RED]*", "S2") == [("TEE[RED]*", "S2", 3)]
    assert held("A", "S2") == held("A", "*") == []


def test_an_erased_persons_events_re_emit_nothing_and_stay_duplicates(
    views: RedisViews,
) -> None:
    items = [
        event_item(plan("ev-1", "card:C-ERASE", points=10), "s/0", 0),
        event_item(plan("ev-2", "phone:p1", points=20), "s/0", 1),
        event_item(plan("ev-3", "card:C-ERASE", "phone:p1", points=30), "s/0", 2),
        event_item(plan("ev-4", "card:OTHER", points=5), "s/0", 3),
    ]
    views.apply(items)
    erased = views.forget("card:C-ERASE", 1)
    assert erased is not None and (erased["one_id"], erased["absorbed"]) == ("O1", ["O2"])
    # a redelivery (the worker died before its commit) re-emitted their facts, merge log
    # and identifiers: now the script sees no member left behind the stored result
    again = views.apply(items)
    assert [(o.status, o.one_id) for o in again] == [("replay_expired", "")] * 3 + [
        ("replay", "O3")
    ]
    # and the stored results themselves keep nothing of them, their TTL kept
    assert views.blank_results(["O1", "O2"]) == 3
    stored = {k: views.client.get(k) for k in views.client.scan_iter(match=views.prefix + "e:*")}
    assert sorted(stored.values()) == [b"", b"", b"", b"O3|1||5"]
    assert all(0 < views.client.ttl(k) <= 3600 for k in stored)
    # a re-sent event of theirs (another offset) is still a duplicate: no one comes back
    [resent] = views.apply([event_item(plan("ev-1", "card:C-ERASE", points=10), "s/0", 4)])
    assert resent.status == "duplicate"
    assert views.member("card:C-ERASE") is None
    assert views.blank_results(["O1", "O2"]) == 0


def test_text_beyond_ascii_arrives_in_redis_as_sent(views: RedisViews) -> None:
    # the batch goes to the script as UTF-8 JSON; Lua's cjson must read it byte for byte
    receive = (StockOp("receive", "茶-龙井", "上海·静安店", 4),)
    views.apply([event_item(plan("r", stock=receive), "s/0", 0)])
    sold = (StockOp("sale", "茶-龙井", "上海·静安店", 1),)
    [sale] = views.apply([event_item(plan("s", "openid:微信用户é", stock=sold), "s/0", 1)])
    assert sale.status == "new"
    assert views.resolve("openid:微信用户é") == sale.one_id
    assert [(m.sku, m.location, m.on_hand) for m in sale.stock_moves] == [
        ("茶-龙井", "上海·静安店", 3)
    ]
    assert views.stock("茶-龙井") == [
        {"sku": "茶-龙井", "location": "上海·静安店", "on_hand": 3, "reserved": 0,
         "available_to_promise": 3}
    ]  # fmt: skip
