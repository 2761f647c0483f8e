"""An order's life in the Redis views, exactly: reservation, then pick-up or shipping
(the reservation becomes the sale), cancellation (released, points taken back), partial
refunds (points back in proportion), statuses arriving before their order."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis

from connectors.redis_views import Outcome, RedisViews, event_item
from streams.core.plan import EventPlan, StockOp, plan_event
from streams.core.rules import PointsPolicy, Rules, parse_budgets

from ..unit.factories import app_order, envelope, line
from .conftest import Services

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


class Shop:
    def __init__(self, services: Services) -> None:
        client = redis.Redis.from_url(services.redis_url)
        self.views = RedisViews(client, prefix=f"o{uuid.uuid4().hex[:8]}:")
        self.offset = 0

    def _apply(self, plan: EventPlan, topic: str = "t/0") -> Outcome:
        self.offset += 1
        return self.views.apply([event_item(plan, topic, self.offset)])[0]

    def _plan(self, kind: str, **fields: object) -> EventPlan:
        base: dict = {
            "event_id": f"e{self.offset + 1}",
            "touchpoint_type": kind,
            "event_time": T0 + timedelta(seconds=self.offset),
            "channel": "app",
            "identity_keys": (),
            "points": 0,
            "stock": (),
        }
        return EventPlan(**{**base, **fields})  # type: ignore[arg-type]

    def receive(self, sku: str, location: str, quantity: int) -> None:
        op = StockOp("receive", sku, location, quantity)
        self._apply(self._plan("inventory_adjustment", channel="erp", stock=(op,)))

    def order(
        self, order_id: str, paid: str, *lines: tuple[str, str, int], pickup: bool = False
    ) -> Outcome:
        held = tuple(StockOp("reserve", sku, loc, q) for sku, loc, q in lines)
        return self._apply(
            self._plan(
                "app_order",
                identity_keys=("card:C1",),
                points=int(Decimal(paid)),
                stock=held,
                order_id=order_id,
                amount=Decimal(paid),
                purchase=True,
                pickup=pickup,
            )
        )

    def status(self, order_id: str, status: str, refund: str = "0", at: str = "") -> Outcome:
        plan = self._plan(
            "order_status",
            channel="other",
            order_id=order_id,
            order_status=status,
            amount=Decimal(refund),
            store_id=at,
        )
        return self._apply(plan, topic="status/0")

    def stock(self, sku: str, location: str) -> tuple[int, int, int]:
        row = self.views.stock(sku, location)[0]
        return row["on_hand"], row["reserved"], row["available_to_promise"]

    def points(self) -> int:
        member = self.views.member("card:C1")
        assert member is not None
        return member["points"]


def test_pick_up_turns_the_reservation_into_the_sale(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 10)
    shop.order("ORD1", "99.00", ("SKU1", "S1", 3))
    assert shop.stock("SKU1", "S1") == (10, 3, 7)
    shop.status("ORD1", "picked_up")
    assert shop.stock("SKU1", "S1") == (7, 0, 7)
    shop.status("ORD1", "cancelled")  # too late: nothing changes
    assert shop.stock("SKU1", "S1") == (7, 0, 7)
    assert shop.points() == 99
    stats = shop.views.stats()
    assert (stats["orders_fulfilled"], stats.get("orders_cancelled", 0)) == (1, 0)


def test_cancellation_releases_stock_and_takes_the_points_back(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 5)
    shop.receive("SKU2", "S1", 5)
    shop.order("ORD1", "120.50", ("SKU1", "S1", 2), ("SKU2", "S1", 5))
    assert (shop.stock("SKU1", "S1"), shop.stock("SKU2", "S1")) == ((5, 2, 3), (5, 5, 0))
    assert shop.points() == 120
    shop.status("ORD1", "cancelled")
    assert (shop.stock("SKU1", "S1"), shop.stock("SKU2", "S1")) == ((5, 0, 5), (5, 0, 5))
    assert shop.points() == 0
    shop.status("ORD1", "cancelled")  # a second cancellation (another event): no effect
    assert shop.points() == 0
    stats = shop.views.stats()
    assert (stats["points_reversed"], stats["reservations_released"]) == (120, 1)


def test_partial_refunds_take_points_back_in_proportion(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "WH", 100)
    shop.order("ORD1", "200.00", ("SKU1", "WH", 4))
    shop.status("ORD1", "shipped")
    shop.status("ORD1", "refunded", "50.00")  # a quarter: 50 of 200 points
    assert shop.points() == 150
    shop.status("ORD1", "refunded", "150.00")  # the rest
    assert shop.points() == 0
    shop.status("ORD1", "refunded", "10.00")  # never more than was granted
    assert shop.points() == 0
    assert shop.views.stats()["points_reversed"] == 200
    assert shop.stock("SKU1", "WH") == (96, 0, 96)


def test_a_backordered_order_holds_nothing_and_cancels_cleanly(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 1)
    assert shop.order("ORD1", "10.00", ("SKU1", "S1", 2)).backordered
    assert shop.stock("SKU1", "S1") == (1, 0, 1)
    shop.status("ORD1", "cancelled")
    assert shop.stock("SKU1", "S1") == (1, 0, 1)
    assert shop.points() == 0


def test_a_backordered_order_that_ships_leaves_the_shelf_it_ships_from(
    services: Services,
) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "WH", 1)
    shop.receive("SKU2", "WH", 9)
    assert shop.order("ORD1", "10.00", ("SKU1", "WH", 2), ("SKU2", "WH", 3)).backordered
    shop.receive("SKU1", "WH", 5)  # the stock it waited for
    shipped = shop.status("ORD1", "shipped", at="WH")
    assert (shop.stock("SKU1", "WH"), shop.stock("SKU2", "WH")) == ((4, 0, 4), (6, 0, 6))
    assert [(m.sku, m.kind, m.on_hand_delta) for m in shipped.stock_moves] == [
        ("SKU1", "sale", -2),
        ("SKU2", "sale", -3),
    ]
    shop.status("ORD1", "shipped", at="WH")  # a second shipment (another event): no effect
    assert shop.stock("SKU1", "WH") == (4, 0, 4)
    assert shop.views.stats()["orders_fulfilled"] == 1


def test_a_backordered_pick_up_leaves_its_store_and_an_unplaced_shipment_is_counted(
    services: Services,
) -> None:
    shop = Shop(services)
    assert shop.order("ORD1", "10.00", ("SKU1", "S1", 2), pickup=True).backordered
    shop.receive("SKU1", "S1", 3)
    shop.status("ORD1", "picked_up")  # no store on the status: the order's own
    assert shop.stock("SKU1", "S1") == (1, 0, 1)
    # a delivery order, backordered, shipped with no store named: nothing to take it from
    shop.receive("SKU2", "WH", 1)
    assert shop.order("ORD2", "10.00", ("SKU2", "WH", 4)).backordered
    shop.status("ORD2", "shipped")
    assert shop.stock("SKU2", "WH") == (1, 0, 1)
    stats = shop.views.stats()
    assert (stats["orders_fulfilled"], stats["backorders_unplaced"]) == (2, 1)


def test_a_shipment_read_before_its_backordered_order_waits_with_its_store(
    services: Services,
) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "WH", 1)
    shop.status("ORD1", "shipped", at="WH2")  # the status topic was read first
    shop.receive("SKU1", "WH2", 5)
    assert shop.order("ORD1", "10.00", ("SKU1", "WH", 3)).backordered
    assert (shop.stock("SKU1", "WH"), shop.stock("SKU1", "WH2")) == ((1, 0, 1), (2, 0, 2))


def test_a_status_before_its_order_waits_for_it(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 10)
    shop.status("ORD1", "cancelled")  # the status topic was read first
    assert shop.views.stats()["statuses_early"] == 1
    shop.order("ORD1", "30.00", ("SKU1", "S1", 4))
    assert shop.stock("SKU1", "S1") == (10, 0, 10)
    assert shop.points() == 0
    assert shop.views.stats()["orders_cancelled"] == 1


def test_a_redelivered_status_changes_nothing(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 10)
    shop.order("ORD1", "30.00", ("SKU1", "S1", 4))
    plan = shop._plan("order_status", order_id="ORD1", order_status="picked_up")
    first = [event_item(plan, "status/0", 500)]
    shop.views.apply(first)
    stats = shop.views.stats()
    assert [o.status for o in shop.views.apply(first)] == ["replay"]
    assert shop.views.stats() == stats
    assert shop.stock("SKU1", "S1") == (6, 0, 6)


def test_red_envelopes_past_their_budget_are_refused_not_awarded(services: Services) -> None:
    client = redis.Redis.from_url(services.redis_url)
    budgets = parse_budgets("CMP-1=2:0,CMP-2=0:25")
    views = RedisViews(
        client, prefix=f"b{uuid.uuid4().hex[:8]}:", points=PointsPolicy(budgets=budgets)
    )

    def claim(n: int, campaign: str, face: str) -> Outcome:
        plan = EventPlan(
            event_id=f"c{n}",
            touchpoint_type="red_envelope_claim",
            event_time=T0,
            channel="wechat",
            identity_keys=("unionid:u1",),
            points=10,
            stock=(),
            campaign_id=campaign,
            amount=Decimal(face),
        )
        return views.apply([event_item(plan, "claims/0", n)])[0]

    # by count: two envelopes
    assert [claim(n, "CMP-1", "5").claim_refused for n in range(3)] == [False, False, True]
    # by money: 25 yuan; a 20 after a 10 would pass it, a 5 still fits
    assert [claim(n, "CMP-2", f).claim_refused for n, f in [(3, "10"), (4, "20"), (5, "5")]] == [
        False,
        True,
        False,
    ]
    claim(6, "CMP-3", "50")  # no budget
    member = views.member("unionid:u1")
    assert member is not None and member["points"] == 10 * 5
    stats = views.stats()
    assert (stats["claims_refused"], stats["points_total"]) == (2, 50)
    campaign = {k.decode(): int(v) for k, v in client.hgetall(views.prefix + "c:CMP-2").items()}
    assert campaign == {"claims": 2, "cents": 1500, "refused": 1}
    # a redelivered refused claim stays refused and counts nothing more
    again = views.apply([event_item(EventPlan("c2", "red_envelope_claim", T0, "wechat",
                                              ("unionid:u1",), 10, (), campaign_id="CMP-1",
                                              amount=Decimal("5")), "claims/0", 2)])  # fmt: skip
    assert again[0].status == "replay" and again[0].claim_refused
    assert views.stats() == stats


def test_the_ledger_and_the_member_view_follow_every_change(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "WH", 100)
    shop.order("ORD1", "800.00", ("SKU1", "WH", 1))
    shop.order("ORD2", "400.00", ("SKU1", "WH", 1))
    shop.status("ORD1", "shipped")
    out = shop.status("ORD1", "refunded", "200.00")
    # the reversal is in the event's log, as a ledger entry of that status event
    assert [(c.action, c.other, c.reason, c.points) for c in out.identity_log] == [
        ("points", "e5", "reverse:refunded", -200)
    ]
    member = shop.views.member("card:C1")
    assert member is not None
    assert member["points"] == 1000
    assert member["tier"] == "silver"  # by lifetime points earned: 1200
    assert (member["rfm"]["frequency"], member["rfm"]["monetary"]) == (2, "1200")
    assert member["rfm"]["segment"] == "medium"
    assert member["recent_points"] == [
        {"event_id": "e5", "rule": "reverse:refunded", "points": "-200"},
        {"event_id": "e3", "rule": "earn:app_order", "points": "400"},
        {"event_id": "e2", "rule": "earn:app_order", "points": "800"},
    ]


def test_a_delivery_ships_from_the_nearest_location_that_has_every_line(
    services: Services,
) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "NEAR", 5)
    shop.receive("SKU2", "NEAR", 1)
    shop.receive("SKU1", "FAR", 50)
    shop.receive("SKU2", "FAR", 50)

    def deliver(order_id: str, q2: int) -> Outcome:
        held = (StockOp("reserve", "SKU1", "NEAR", 2), StockOp("reserve", "SKU2", "NEAR", q2))
        plan = shop._plan("app_order", identity_keys=("card:C1",), stock=held,
                          order_id=order_id, candidates=("NEAR", "FAR"))  # fmt: skip
        return shop._apply(plan)

    deliver("ORD1", 1)  # NEAR has both lines
    assert (shop.stock("SKU1", "NEAR"), shop.stock("SKU2", "NEAR")) == ((5, 2, 3), (1, 1, 0))
    deliver("ORD2", 1)  # NEAR is out of SKU2: the whole order goes to FAR, never split
    assert (shop.stock("SKU1", "NEAR"), shop.stock("SKU1", "FAR")) == ((5, 2, 3), (50, 2, 48))
    assert shop.views.stats()["reserved_further"] == 1
    shop.status("ORD2", "shipped")  # the sale is taken where it was reserved
    assert (shop.stock("SKU1", "FAR"), shop.stock("SKU2", "FAR")) == ((48, 0, 48), (49, 0, 49))
    assert deliver("ORD3", 60).backordered is not False  # nobody has 60: backordered
    assert shop.stock("SKU2", "FAR") == (49, 0, 49)


def test_a_sku_on_several_lines_is_never_oversold(services: Services) -> None:
    """Available to promise never goes negative, however an order spells its lines (the
    plan reserves each SKU once, for the sum of its lines)."""
    shop = Shop(services)
    shop.receive("SKU-0001", "S002", 5)  # the factories' pick-up store

    def order(n: int, *quantities: int) -> Outcome:
        record = app_order(
            envelope=envelope(event_id=f"order-{n}"),
            order_id=f"ORD-{n}",
            lines=[line("SKU-0001", q) for q in quantities],
        )
        shop.offset += 1
        now = record.envelope.event_time
        plan = plan_event("app_order", record, Rules(phone_key=b"k"), now)
        return shop.views.apply([event_item(plan, "t/0", shop.offset)])[0]

    too_many = order(1, 3, 3)
    assert too_many.backordered and too_many.stock_moves == ()
    assert shop.stock("SKU-0001", "S002") == (5, 0, 5)
    fits = order(2, 2, 3)
    assert not fits.backordered and [m.reserved_delta for m in fits.stock_moves] == [5]
    assert shop.stock("SKU-0001", "S002") == (5, 5, 0)
    shop.status("ORD-2", "cancelled")
    assert shop.stock("SKU-0001", "S002") == (5, 0, 5)


def test_an_app_order_is_attributed_to_the_last_touch_within_the_window(
    services: Services,
) -> None:
    client = redis.Redis.from_url(services.redis_url)
    policy = PointsPolicy(attribution_window_s=3600)
    views = RedisViews(client, prefix=f"a{uuid.uuid4().hex[:8]}:", points=policy)
    offset = iter(range(1, 100))

    def event(kind: str, keys: tuple[str, ...], minutes: int, touch: str = "") -> Outcome:
        plan = EventPlan(f"e{minutes}-{kind}", kind, T0 + timedelta(minutes=minutes), "app",
                         keys, 0, (), touch=touch, order_id=f"ORD-{minutes}")  # fmt: skip
        return views.apply([event_item(plan, "t/0", next(offset))])[0]

    # an anonymous viewer clicks in a livestream, then buys signed in on that phone
    event("livestream_click", ("device:d1",), 0, touch="livestream:R01")
    assert event("app_order", ("card:C1", "device:d1"), 30).attribution == "livestream:R01"
    # a later touch wins; an order past the window is nobody's
    event("red_envelope_claim", ("card:C1",), 40, touch="red_envelope:CMP-1")
    assert event("app_order", ("card:C1",), 99).attribution == "red_envelope:CMP-1"
    assert event("app_order", ("card:C1",), 101).attribution == ""
    # a guide's contact at the till (another member, merged in later) is the latest touch
    event("store_scan", ("phone:" + "a" * 32,), 150, touch="guide:G007")
    assert event("app_order", ("card:C1", "phone:" + "a" * 32), 160).attribution == "guide:G007"
    assert views.stats()["orders_attributed"] == 3


def member_events(views: RedisViews) -> Callable[..., Outcome]:
    offsets = iter(range(1, 1000))

    def event(
        kind: str,
        days: float,
        points: int = 0,
        touch: str = "",
        keys: tuple[str, ...] = ("card:C1",),
        **more: object,
    ) -> Outcome:
        if kind == "app_order":
            more.setdefault("order_id", f"ORD-{days}")  # every order its own
        plan = EventPlan(f"{kind}-{days}", kind, T0 + timedelta(days=days), "app",
                         keys, points, (), touch=touch, **more)  # type: ignore[arg-type]  # fmt: skip
        return views.apply([event_item(plan, "t/0", next(offsets))])[0]

    return event


def test_tier_and_campaign_multipliers_scale_what_is_earned(services: Services) -> None:
    policy = PointsPolicy(
        tier_multipliers={"silver": Decimal("1.5")},
        campaign_multipliers={"CMP-9": Decimal("2")},
    )
    views = RedisViews(redis.Redis.from_url(services.redis_url),
                       prefix=f"t{uuid.uuid4().hex[:8]}:", points=policy)  # fmt: skip
    event = member_events(views)
    assert event("app_order", 0, points=999).points == 999  # bronze: x1
    assert event("app_order", 1, points=1).points == 1  # still bronze before it: 1000 now
    assert event("app_order", 2, points=100).points == 150  # silver: x1.5
    event("red_envelope_claim", 3, touch="red_envelope:CMP-9")
    assert event("app_order", 3.5, points=100).points == 300  # silver x1.5, campaign x2
    member = views.member("card:C1")
    assert member is not None and (member["points"], member["tier"]) == (1450, "silver")


def test_overdraft_and_expiry_policies(services: Services) -> None:
    policy = PointsPolicy(overdraft=50, expiry_days=30)
    views = RedisViews(redis.Redis.from_url(services.redis_url),
                       prefix=f"x{uuid.uuid4().hex[:8]}:", points=policy)  # fmt: skip
    event = member_events(views)
    event("app_order", 0, points=100, order_id="ORD1", amount=Decimal("100"))
    event("store_scan", 10, points=30)  # balance 130
    out = event("livestream_click", 45)  # 35 days without activity: the balance lapses
    assert [(c.reason, c.points) for c in out.identity_log] == [("expire:inactive", -130)]
    assert views.stats()["points_expired"] == 130
    out = event("order_status", 46, order_id="ORD1", order_status="cancelled")
    # 100 to take back from a balance of 0: the overdraft allows down to -50
    assert [c.points for c in out.identity_log if c.action == "points"] == [-50]
    assert views.stats()["points_unrecovered"] == 50
    member = views.member("card:C1")
    assert member is not None and member["points"] == -50


@pytest.mark.parametrize(
    ("card_days", "phone_days", "left", "lapsed"),
    [
        (0, 40, 40, 100),  # the card's balance lapsed, the phone's is active: 100 lapse
        (40, 0, 100, 40),  # the other way round: the phone's 40 lapse
        (0, 1, 0, 140),  # both lapsed: the merged balance lapses, in one entry
        (20, 30, 140, 0),  # neither lapsed
    ],
)
def test_a_lapsed_balance_does_not_live_on_through_a_merge(
    services: Services, card_days: int, phone_days: int, left: int, lapsed: int
) -> None:
    """The merged member takes the later activity of the two: without this, a balance
    that had lapsed would be kept alive by linking an active account."""
    policy = PointsPolicy(expiry_days=30)
    views = RedisViews(redis.Redis.from_url(services.redis_url),
                       prefix=f"x{uuid.uuid4().hex[:8]}:", points=policy)  # fmt: skip
    event = member_events(views)
    event("store_scan", card_days, 100, keys=("card:C1",))
    event("livestream_click", phone_days, 40, keys=("phone:P1",))
    out = event("store_scan", 45, keys=("card:C1", "phone:P1"))
    assert [c.action for c in out.identity_log if c.action == "merge"] == ["merge"]
    expired = [c.points for c in out.identity_log if c.reason == "expire:inactive"]
    assert expired == ([-lapsed] if lapsed else [])
    member = views.member("phone:P1")
    assert member is not None and member["points"] == left
    assert views.stats().get("points_expired", 0) == lapsed


def test_an_uncollected_pick_up_is_released_when_its_hold_lapses(services: Services) -> None:
    shop = Shop(services)
    shop.views = RedisViews(shop.views.client, prefix=shop.views.prefix,
                            points=PointsPolicy(pickup_hold_hours=2))  # fmt: skip
    shop.receive("SKU1", "S1", 5)
    held = (StockOp("reserve", "SKU1", "S1", 3),)
    plan = shop._plan("app_order", identity_keys=("card:C1",), stock=held, order_id="ORD1",
                      pickup=True, event_id="order")  # fmt: skip
    shop.views.apply([event_item(plan, "t/0", 100)], now_ms=int(T0.timestamp() * 1000))
    assert shop.stock("SKU1", "S1") == (5, 3, 2)
    later = int((T0 + timedelta(hours=3)).timestamp() * 1000)
    click = shop._plan("livestream_click", event_id="click")
    shop.views.apply([event_item(click, "t/0", 101)], now_ms=later)
    assert shop.stock("SKU1", "S1") == (5, 0, 5)
    assert shop.views.stats()["holds_expired"] == 1
    shop.status("ORD1", "picked_up")  # collected after all: a sale from the shelf
    assert shop.stock("SKU1", "S1") == (2, 0, 2)


def test_a_paid_or_refunded_pick_up_still_lapses(services: Services) -> None:
    """Only a pick-up, a shipment or a cancellation ends a pick-up order's hold."""
    shop = Shop(services)
    shop.views = RedisViews(shop.views.client, prefix=shop.views.prefix,
                            points=PointsPolicy(pickup_hold_hours=2))  # fmt: skip
    shop.receive("SKU1", "S1", 5)
    within = int(T0.timestamp() * 1000)
    for n, status in enumerate(("paid", "refunded")):
        held = (StockOp("reserve", "SKU1", "S1", 2),)
        order = shop._plan("app_order", identity_keys=("card:C1",), stock=held, pickup=True,
                           order_id=f"O{n}", event_id=f"order{n}", amount=Decimal(10))  # fmt: skip
        then = shop._plan("order_status", channel="other", order_id=f"O{n}",
                          order_status=status, amount=Decimal(1), event_id=f"s{n}")  # fmt: skip
        for plan in (order, then):
            shop.offset += 1
            shop.views.apply([event_item(plan, "t/0", shop.offset)], now_ms=within)
    assert shop.stock("SKU1", "S1") == (5, 4, 1)
    later = int((T0 + timedelta(hours=3)).timestamp() * 1000)
    click = shop._plan("livestream_click", event_id="click")
    shop.offset += 1
    shop.views.apply([event_item(click, "t/0", shop.offset)], now_ms=later)
    assert shop.stock("SKU1", "S1") == (5, 0, 5)
    assert shop.views.stats()["holds_expired"] == 2


def test_collecting_stock_the_shelf_sold_meanwhile_leaves_on_hand_at_zero(
    services: Services,
) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 5)
    shop.order("ORD1", "10.00", ("SKU1", "S1", 5))
    sale = (StockOp("sale", "SKU1", "S1", 4),)  # a checkout at the till takes 4 of them
    shop._apply(shop._plan("store_scan", channel="store", stock=sale))
    assert shop.stock("SKU1", "S1") == (1, 5, -4)
    shop.status("ORD1", "picked_up")
    assert shop.stock("SKU1", "S1") == (0, 0, 0)
    assert shop.views.stats()["stock_discrepancies"] == 1


def test_a_refused_claim_is_no_touch(services: Services) -> None:
    """A claim refused past its budget earns nothing, and lends its campaign's multiplier
    to no later order."""
    client = redis.Redis.from_url(services.redis_url)
    policy = PointsPolicy(budgets=parse_budgets("CMP-1=1:0"),
                          campaign_multipliers={"CMP-1": Decimal("2")})  # fmt: skip
    views = RedisViews(client, prefix=f"r{uuid.uuid4().hex[:8]}:", points=policy)
    offsets = iter(range(1, 100))

    def event(kind: str, key: str, minutes: int, points: int, **more: object) -> Outcome:
        plan = EventPlan(f"{key}-{kind}", kind, T0 + timedelta(minutes=minutes), "app",
                         (key,), points, (), **more)  # type: ignore[arg-type]  # fmt: skip
        return views.apply([event_item(plan, "t/0", next(offsets))])[0]

    claim = {"campaign_id": "CMP-1", "amount": Decimal("5.00"), "touch": "red_envelope:CMP-1"}
    assert not event("red_envelope_claim", "card:C0", 0, 10, **claim).claim_refused
    assert event("red_envelope_claim", "card:C1", 1, 10, **claim).claim_refused
    order = event("app_order", "card:C1", 2, 100, order_id="ORD1", amount=Decimal("100.00"))
    assert (order.attribution, order.points) == ("", 100)
    order = event("app_order", "card:C0", 3, 100, order_id="ORD2", amount=Decimal("100.00"))
    assert (order.attribution, order.points) == ("red_envelope:CMP-1", 200)


def test_a_full_refund_in_parts_takes_every_point_back(services: Services) -> None:
    """Each part's share is not floored on its own: 129 points, refunded in two halves."""
    shop = Shop(services)
    shop.receive("SKU1", "S1", 5)
    shop.order("ORD1", "129.90", ("SKU1", "S1", 1))
    assert shop.points() == 129
    shop.status("ORD1", "refunded", "64.95")
    assert shop.points() == 129 - 64  # floor(129 × ½)
    shop.status("ORD1", "refunded", "64.95")
    assert shop.points() == 0  # floor(129 × 1) back in all, not 64 + 64
    shop.status("ORD1", "refunded", "1.00")  # refunded past what was paid: nothing more
    assert shop.points() == 0 and shop.views.stats()["points_reversed"] == 129


def test_an_order_sent_again_under_a_new_event_id_is_applied_once(services: Services) -> None:
    shop = Shop(services)
    shop.receive("SKU1", "S1", 5)
    first = shop.order("ORD1", "99.00", ("SKU1", "S1", 2))
    again = shop.order("ORD1", "99.00", ("SKU1", "S1", 2))  # e2, not e1: no duplicate
    assert (first.status, first.points, first.order_repeated) == ("new", 99, False)
    assert (again.status, again.points, again.order_repeated) == ("new", 0, True)
    assert again.one_id == first.one_id and not again.stock_moves
    assert shop.stock("SKU1", "S1") == (5, 2, 3) and shop.points() == 99
    shop.status("ORD1", "cancelled")  # the one order, released once
    assert shop.stock("SKU1", "S1") == (5, 0, 5) and shop.points() == 0
    stats = shop.views.stats()
    assert (stats["orders"], stats["orders_repeated"], stats["reservations"]) == (1, 1, 1)
