"""From one validated record to an EventPlan, at a fixed clock; and the checks a record
makes on itself."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.models import (
    AdjustmentKind,
    AppKind,
    ClaimChannel,
    DeviceRole,
    Fulfilment,
    FulfilmentMode,
    OrderLine,
    OrderStatusKind,
    ScanKind,
)
from streams.core.errors import InvalidTouchpoint
from streams.core.plan import EventPlan, StockOp, plan_event
from streams.core.rules import Rules

from .factories import (
    EVENT_TIME,
    NOW,
    app_order,
    app_user,
    card,
    device,
    envelope,
    inventory_adjustment,
    line,
    livestream_click,
    openid,
    order_status,
    phone,
    red_envelope_claim,
    store_scan,
    unionid,
)

RULES = Rules(phone_key=b"k")
PHONE_KEY = "phone:" + hmac.new(b"k", b"+8613800138000", hashlib.sha256).hexdigest()[:32]


def _invalid(
    type_name: str, record: Any, rules: Rules = RULES, stamped: datetime | None = None
) -> InvalidTouchpoint:
    with pytest.raises(InvalidTouchpoint) as info:
        plan_event(type_name, record, rules, NOW, stamped)
    return info.value


# -- store scans ---------------------------------------------------------------------------


def test_store_scan_checkout() -> None:
    plan = plan_event("store_scan", store_scan(), RULES, NOW)
    assert plan == EventPlan(
        event_id="evt-0001",
        touchpoint_type="store_scan",
        event_time=EVENT_TIME,
        channel="store",
        identity_keys=(PHONE_KEY,),
        points=129,
        stock=(
            StockOp("sale", "SKU-0001", "S001", 2),
            StockOp("sale", "SKU-0002", "S001", 1),
        ),
        store_id="S001",
        quantity=3,
        amount=Decimal("129.90"),
        purchase=True,
        touch="guide:G001",
    )


@pytest.mark.parametrize(
    ("paid", "per_yuan", "points"),
    [("129.90", 1, 129), ("129.90", 2, 258), ("0.99", 1, 0), ("100.00", 3, 300), ("0", 5, 0)],
)
def test_checkout_points_per_whole_yuan(paid: str, per_yuan: int, points: int) -> None:
    rules = Rules(phone_key=b"k", points_per_yuan=per_yuan)
    plan = plan_event("store_scan", store_scan(paid_amount=Decimal(paid)), rules, NOW)
    assert plan.points == points


def test_member_code_scan_earns_nothing() -> None:
    scan = store_scan(scan_kind=ScanKind.member_code, lines=[], paid_amount=Decimal("129.90"))
    plan = plan_event("store_scan", scan, RULES, NOW)
    assert (plan.points, plan.stock, plan.quantity) == (0, (), 0)
    # no order either: the dashboards count store scans with an amount as orders
    assert (plan.amount, plan.purchase) == (Decimal(0), False)


def test_sale_is_taken_from_the_scanning_store() -> None:
    scan = store_scan(store_id="S009", lines=[line("SKU-0007", 5, "1.00")])
    plan = plan_event("store_scan", scan, RULES, NOW)
    assert plan.stock == (StockOp("sale", "SKU-0007", "S009", 5),)
    assert (plan.store_id, plan.quantity) == ("S009", 5)


# -- app orders ------------------------------------------------------------------------------


def test_pickup_order_reserves_at_the_pickup_store() -> None:
    plan = plan_event("app_order", app_order(), RULES, NOW)
    assert plan == EventPlan(
        event_id="evt-0001",
        touchpoint_type="app_order",
        event_time=EVENT_TIME,
        channel="app",
        identity_keys=(PHONE_KEY, "app:app_0000001"),  # phone ranks above app
        points=117,
        stock=(
            StockOp("reserve", "SKU-0001", "S002", 2),
            StockOp("reserve", "SKU-0004", "S002", 3),
        ),
        store_id="S002",
        order_id="ORD-0001",
        quantity=5,
        amount=Decimal("117.00"),
        purchase=True,
        pickup=True,
    )


def test_delivery_order_reserves_at_the_delivery_location() -> None:
    order = app_order(
        app_kind=AppKind.mini_program,
        envelope=envelope(identifiers=[openid(app_id="wx-mini-01")]),
        fulfilment=Fulfilment(mode=FulfilmentMode.delivery, latitude=31.2, longitude=121.5),
    )
    rules = Rules(
        phone_key=b"k",
        delivery_locations=(("WH-NORTH", 39.9, 116.4), ("WH-SOUTH", 23.1, 113.3)),
        points_per_yuan=2,
    )
    plan = plan_event("app_order", order, rules, NOW)
    assert plan.stock == (
        StockOp("reserve", "SKU-0001", "WH-NORTH", 2),
        StockOp("reserve", "SKU-0004", "WH-NORTH", 3),
    )
    assert plan.channel == "mini_program"
    assert plan.store_id == ""
    assert plan.points == 234
    assert plan.identity_keys == ("openid:wx-mini-01:o_01_00000001",)
    # Shanghai is nearer Beijing than Guangzhou; the views fall back to the next
    assert plan.candidates == ("WH-NORTH", "WH-SOUTH")


def test_default_delivery_location() -> None:
    order = app_order(fulfilment=Fulfilment(mode=FulfilmentMode.delivery))
    plan = plan_event("app_order", order, RULES, NOW)
    assert {op.location for op in plan.stock} == {"WH-EAST"}


def test_a_sku_on_several_lines_is_reserved_once_for_their_sum() -> None:
    lines = [line("SKU-0004", 1), line("SKU-0001", 3), line("SKU-0004", 2), line("SKU-0001", 3)]
    plan = plan_event("app_order", app_order(lines=lines), RULES, NOW)
    assert plan.stock == (
        StockOp("reserve", "SKU-0004", "S002", 3),
        StockOp("reserve", "SKU-0001", "S002", 6),
    )
    assert plan.quantity == 9


# -- other touchpoints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "planned"),
    [
        (ClaimChannel.wechat, "wechat"),
        (ClaimChannel.mini_program, "mini_program"),
        (ClaimChannel.store, "store"),
        (ClaimChannel.other, "other"),
    ],
)
def test_red_envelope_claim(channel: ClaimChannel, planned: str) -> None:
    rules = Rules(phone_key=b"k", red_envelope_bonus_points=25)
    plan = plan_event("red_envelope_claim", red_envelope_claim(channel=channel), rules, NOW)
    assert plan == EventPlan(
        event_id="evt-0001",
        touchpoint_type="red_envelope_claim",
        event_time=EVENT_TIME,
        channel=planned,
        identity_keys=("unionid:u_00000001",),
        points=25,
        stock=(),
        campaign_id="CMP-1",
        amount=Decimal("20.00"),
        touch="red_envelope:CMP-1",
    )


def test_red_envelope_default_bonus() -> None:
    assert plan_event("red_envelope_claim", red_envelope_claim(), RULES, NOW).points == 10


def test_livestream_click() -> None:
    plan = plan_event("livestream_click", livestream_click(), RULES, NOW)
    assert plan == EventPlan(
        event_id="evt-0001",
        touchpoint_type="livestream_click",
        event_time=EVENT_TIME,
        channel="livestream",
        identity_keys=("openid:wx-channels-01:o_01_00000001", "device:dev-00000001"),
        points=0,
        stock=(),
        room_id="R01",
        touch="livestream:R01",
    )


def test_refund_status() -> None:
    status = order_status(status=OrderStatusKind.refunded, refund_amount=Decimal("58.50"))
    plan = plan_event("order_status", status, RULES, NOW)
    assert plan == EventPlan(
        event_id="evt-0001",
        touchpoint_type="order_status",
        event_time=EVENT_TIME,
        channel="other",
        identity_keys=(),
        points=0,
        stock=(),
        store_id="S002",
        order_id="ORD-0001",
        amount=Decimal("58.50"),
        order_status="refunded",
    )


# -- stock movements -----------------------------------------------------------------------------


def test_receipt_is_a_receive() -> None:
    plan = plan_event("inventory_adjustment", inventory_adjustment(), RULES, NOW)
    assert plan == EventPlan(
        event_id="evt-0001",
        touchpoint_type="inventory_adjustment",
        event_time=EVENT_TIME,
        channel="erp",
        identity_keys=(),
        points=0,
        stock=(StockOp("receive", "SKU-0001", "S001", 40),),
        store_id="S001",
        quantity=40,
    )


def test_transfer_names_its_source() -> None:
    move = inventory_adjustment(
        kind=AdjustmentKind.transfer, location_id="S004", from_location_id="WH-EAST", quantity=7
    )
    plan = plan_event("inventory_adjustment", move, RULES, NOW)
    assert plan.stock == (StockOp("transfer", "SKU-0001", "S004", 7, "WH-EAST"),)


@pytest.mark.parametrize("quantity", [0, 13])
def test_count_sets_the_figure(quantity: int) -> None:
    count = inventory_adjustment(kind=AdjustmentKind.count, location_id="S005", quantity=quantity)
    plan = plan_event("inventory_adjustment", count, RULES, NOW)
    assert plan.stock == (StockOp("count", "SKU-0001", "S005", quantity, ""),)


# -- the clock -------------------------------------------------------------------------------


def _at(offset: timedelta) -> Any:
    return store_scan(envelope=envelope(event_time=NOW + offset))


def test_event_too_far_in_the_future() -> None:
    exc = _invalid("store_scan", _at(timedelta(hours=1, milliseconds=1)))
    assert (exc.field, exc.reason, exc.detail) == (
        "envelope.event_time",
        "in_future",
        "more than 1:00:00 ahead",
    )


def test_event_too_old() -> None:
    exc = _invalid("store_scan", _at(-timedelta(days=90, milliseconds=1)))
    assert (exc.field, exc.reason, exc.detail) == (
        "envelope.event_time",
        "too_old",
        "more than 90 days, 0:00:00 ago",
    )


@pytest.mark.parametrize("offset", [timedelta(hours=1), -timedelta(days=90), timedelta(0)])
def test_window_edges_are_accepted(offset: timedelta) -> None:
    plan = plan_event("store_scan", _at(offset), RULES, NOW)
    assert plan.event_time == NOW + offset


def test_window_follows_the_rules() -> None:
    rules = Rules(phone_key=b"k", max_future=timedelta(minutes=5), max_past=timedelta(days=1))
    assert _invalid("store_scan", _at(timedelta(minutes=6)), rules).reason == "in_future"
    assert _invalid("store_scan", _at(-timedelta(days=2)), rules).reason == "too_old"
    assert plan_event("store_scan", _at(-timedelta(hours=23)), rules, NOW).points == 129


@pytest.mark.parametrize(
    ("stamp", "judged_by"),
    [
        (None, timedelta(0)),  # no timestamp: the worker's clock
        (-timedelta(hours=20), -timedelta(hours=20)),  # within a day: believed
        (-timedelta(days=1), -timedelta(days=1)),
        (-timedelta(days=1, seconds=1), timedelta(0)),  # older: not believed
        (-timedelta(days=3 * 365), timedelta(0)),  # a producer stamping event time
        (timedelta(minutes=5), timedelta(0)),  # ahead of the worker: its clock
    ],
)
def test_age_is_judged_by_a_kafka_timestamp_within_a_day(
    stamp: timedelta | None, judged_by: timedelta
) -> None:
    stamped = None if stamp is None else NOW + stamp
    edge = judged_by - timedelta(days=90)  # the oldest event that passes
    assert plan_event("store_scan", _at(edge), RULES, NOW, stamped).event_time == NOW + edge
    exc = _invalid("store_scan", _at(edge - timedelta(milliseconds=1)), stamped=stamped)
    assert exc.reason == "too_old"


def test_how_far_ahead_is_judged_by_the_workers_clock_whatever_the_timestamp() -> None:
    """A later delivery is only more lenient: a message timestamp far back (1970) does not
    make a current event 'in_future'."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert plan_event("store_scan", _at(timedelta(minutes=5)), RULES, NOW, epoch).points == 129
    assert _invalid("store_scan", _at(timedelta(hours=2)), stamped=epoch).reason == "in_future"


# -- identifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "build"),
    [
        ("store_scan", store_scan),
        ("livestream_click", livestream_click),
        ("red_envelope_claim", red_envelope_claim),
        ("app_order", app_order),
    ],
)
def test_touchpoints_need_identifiers(type_name: str, build: Any) -> None:
    exc = _invalid(type_name, build(envelope=envelope(identifiers=[])))
    assert (exc.field, exc.reason) == ("envelope.identifiers", "no_identifiers")


def test_status_and_stock_need_no_identifiers() -> None:
    assert plan_event("order_status", order_status(), RULES, NOW).identity_keys == ()
    assert plan_event("inventory_adjustment", inventory_adjustment(), RULES, NOW).identity_keys == (
        ()
    )


@pytest.mark.parametrize("role", [DeviceRole.shared_store_device, DeviceRole.guide_scanner])
def test_shared_devices_are_left_out(role: DeviceRole) -> None:
    ids = [device("pad-01", role), card(), device("dev-7", DeviceRole.personal)]
    plan = plan_event("store_scan", store_scan(envelope=envelope(identifiers=ids)), RULES, NOW)
    assert plan.identity_keys == ("card:C00000001", "device:dev-7")


def test_only_a_shared_device_still_plans_with_no_keys() -> None:
    ids = [device("pad-01", DeviceRole.shared_store_device)]
    plan = plan_event("store_scan", store_scan(envelope=envelope(identifiers=ids)), RULES, NOW)
    assert plan.identity_keys == ()


def test_duplicate_identifiers_appear_once_in_first_seen_order() -> None:
    ids = [
        card(),
        phone("13800138000"),
        unionid(),
        card(" C00000001 "),
        phone("+86 138-0013-8000"),
        app_user(),
    ]
    plan = plan_event("store_scan", store_scan(envelope=envelope(identifiers=ids)), RULES, NOW)
    assert plan.identity_keys == (
        "card:C00000001",
        PHONE_KEY,
        "unionid:u_00000001",
        "app:app_0000001",
    )


def test_one_illegal_identifier_rejects_the_event() -> None:
    ids = [card(), unionid("undefined")]
    exc = _invalid("store_scan", store_scan(envelope=envelope(identifiers=ids)))
    assert (exc.field, exc.reason) == ("identifiers.unionid", "illegal_value")


def test_extra_illegal_identifiers_from_the_rules() -> None:
    rules = Rules(phone_key=b"k", extra_illegal_identifiers=frozenset({"c00000001"}))
    exc = _invalid("store_scan", store_scan(envelope=envelope(identifiers=[card()])), rules)
    assert (exc.field, exc.reason) == ("identifiers.member_card", "illegal_value")


# -- checks a record makes on itself -------------------------------------------------------------


@pytest.mark.parametrize("quantity", [0, -1, 100_001])
def test_order_line_quantity(quantity: int) -> None:
    with pytest.raises(ValidationError) as info:
        OrderLine(sku="SKU-0001", quantity=quantity, unit_price=Decimal("1.00"))
    assert info.value.errors()[0]["loc"] == ("quantity",)


@pytest.mark.parametrize("paid", ["-0.01", "1.001"])
def test_paid_amount_is_money(paid: str) -> None:
    with pytest.raises(ValidationError) as info:
        store_scan(paid_amount=Decimal(paid))
    assert info.value.errors()[0]["loc"] == ("paid_amount",)


def test_pickup_needs_a_store() -> None:
    with pytest.raises(ValidationError, match="a pick-up order needs store_id"):
        Fulfilment(mode=FulfilmentMode.pickup)
    with pytest.raises(ValidationError, match="a pick-up order needs store_id"):
        Fulfilment(mode=FulfilmentMode.pickup, store_id="")


@pytest.mark.parametrize(
    "build",
    [
        lambda: store_scan(store_id="S1@X"),
        lambda: Fulfilment(mode=FulfilmentMode.pickup, store_id="S1@X"),
        lambda: inventory_adjustment(location_id="WH@1"),
        lambda: inventory_adjustment(kind=AdjustmentKind.transfer, from_location_id="WH@1"),
        lambda: order_status(store_id="WH@1"),
    ],
)
def test_a_location_never_holds_an_at_sign(build: Any) -> None:
    """Stock is keyed ``<sku>@<location>``: SKU "A@B" at "C" and SKU "A" at "B@C" would
    be one key."""
    with pytest.raises(ValidationError) as info:
        build()
    assert info.value.errors()[0]["type"] == "string_pattern_mismatch"


def test_an_app_id_never_holds_a_colon() -> None:
    """openid keys are ``openid:<app_id>:<value>``: ("a:b", "c") and ("a", "b:c") would
    be one person."""
    with pytest.raises(ValidationError) as info:
        openid("b:c", app_id="wx:a")
    assert info.value.errors()[0]["loc"] == ("app_id",)
    assert openid("b:c", app_id="wx-a").app_id == "wx-a"  # a colon in the openid is fine


def test_a_transfer_moves_between_two_locations() -> None:
    with pytest.raises(ValidationError, match="between two locations"):
        inventory_adjustment(kind=AdjustmentKind.transfer, from_location_id="S001")
    moved = inventory_adjustment(kind=AdjustmentKind.transfer, from_location_id="WH1")
    assert moved.from_location_id == "WH1"


@pytest.mark.parametrize(
    "when",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8))),  # year 0 in UTC
        datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-8))),  # year 10000
    ],
)
@pytest.mark.parametrize("field", ["event_time", "produced_time"])
def test_an_instant_no_reader_could_give_back_is_refused(field: str, when: datetime) -> None:
    """Avro writes such an instant; decoding it fails, so the record would reach the
    workers only to be dead-lettered as bad Avro."""
    with pytest.raises(ValidationError) as info:
        envelope(**{field: when})
    assert info.value.errors()[0]["loc"] == (field,)


def test_refund_needs_an_amount() -> None:
    with pytest.raises(ValidationError, match="a refund needs refund_amount"):
        order_status(status=OrderStatusKind.refunded)
    zero = order_status(status=OrderStatusKind.refunded, refund_amount=Decimal("0"))
    assert zero.refund_amount == Decimal("0")


def test_transfer_needs_a_source() -> None:
    with pytest.raises(ValidationError, match="a transfer needs from_location_id"):
        inventory_adjustment(kind=AdjustmentKind.transfer)


@pytest.mark.parametrize("kind", [AdjustmentKind.receipt, AdjustmentKind.transfer])
def test_receipt_and_transfer_move_at_least_one_unit(kind: AdjustmentKind) -> None:
    with pytest.raises(ValidationError, match="moves at least one unit"):
        inventory_adjustment(kind=kind, from_location_id="WH-EAST", quantity=0)


def test_app_order_needs_a_line() -> None:
    with pytest.raises(ValidationError) as info:
        app_order(lines=[])
    assert info.value.errors()[0]["loc"] == ("lines",)


def test_models_are_frozen_and_closed() -> None:
    with pytest.raises(ValidationError):
        order_status(note="extra field")
    status = order_status()
    with pytest.raises(ValidationError):
        status.order_id = "ORD-2"  # type: ignore[misc]
    assert status.order_id == "ORD-0001"
