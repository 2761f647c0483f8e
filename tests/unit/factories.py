"""Builders of valid contract models for the unit tests.

Every builder takes keyword overrides for its top-level fields; ``full_*`` builders set
every optional field to a non-default value, ``minimal_*`` builders set only what the
model requires.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from schemas.models import (
    AdjustmentKind,
    AppKind,
    AppOrder,
    ClaimChannel,
    Consent,
    DeviceRole,
    Envelope,
    Fulfilment,
    FulfilmentMode,
    Identifier,
    IdentifierKind,
    IdentityEvent,
    InventoryAdjustment,
    LivePlatform,
    LivestreamClick,
    MinuteAggregate,
    OrderLine,
    OrderStatus,
    OrderStatusKind,
    PaymentMethod,
    PointsEntry,
    RedEnvelopeClaim,
    ScanKind,
    StockMovement,
    StoreScan,
    TouchpointFact,
)

#: The fixed "now" of the plan tests; event times are a few minutes before it.
NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
EVENT_TIME = NOW - timedelta(minutes=5)
PRODUCED_TIME = NOW - timedelta(minutes=4, seconds=59, milliseconds=250)
PHONE = "13800138000"
PHONE_E164 = "+8613800138000"
SHANGHAI = timezone(timedelta(hours=8))


# -- identifiers ----------------------------------------------------------------------


def phone(value: str = PHONE) -> Identifier:
    return Identifier(kind=IdentifierKind.phone, value=value)


def card(value: str = "C00000001") -> Identifier:
    return Identifier(kind=IdentifierKind.member_card, value=value)


def unionid(value: str = "u_00000001") -> Identifier:
    return Identifier(kind=IdentifierKind.unionid, value=value)


def app_user(value: str = "app_0000001") -> Identifier:
    return Identifier(kind=IdentifierKind.app_user, value=value)


def openid(value: str = "o_01_00000001", app_id: str = "wx-mini-01") -> Identifier:
    return Identifier(kind=IdentifierKind.openid, value=value, app_id=app_id)


def device(
    value: str = "dev-00000001", role: DeviceRole | None = DeviceRole.personal
) -> Identifier:
    return Identifier(kind=IdentifierKind.device, value=value, device_role=role)


def all_identifiers() -> list[Identifier]:
    """One identifier of every kind, with app_id and device_role set where they apply."""
    return [phone(), unionid(), openid(), app_user(), card(), device()]


# -- envelope and parts -----------------------------------------------------------------


def envelope(
    identifiers: list[Identifier] | None = None,
    event_time: datetime = EVENT_TIME,
    event_id: str = "evt-0001",
    **fields: Any,
) -> Envelope:
    data: dict[str, Any] = {
        "event_id": event_id,
        "event_time": event_time,
        "produced_time": PRODUCED_TIME,
        "source": "pos-S001",
        "identifiers": [phone()] if identifiers is None else identifiers,
    }
    return Envelope(**{**data, **fields})


def full_envelope(event_id: str = "evt-full-0001") -> Envelope:
    return Envelope(
        event_id=event_id,
        # not UTC on purpose: the instant must survive, whatever the zone
        event_time=datetime(2024, 6, 1, 19, 55, 0, 123000, tzinfo=SHANGHAI),
        time_zone="Asia/Urumqi",
        produced_time=datetime(2024, 6, 1, 11, 55, 1, 456000, tzinfo=UTC),
        source="pos-S001",
        identifiers=all_identifiers(),
        consent=Consent(marketing=True, analytics=False),
    )


def minimal_envelope(event_id: str = "evt-min-0001") -> Envelope:
    return Envelope(
        event_id=event_id, event_time=EVENT_TIME, produced_time=PRODUCED_TIME, source="wms"
    )


def line(sku: str = "SKU-0001", quantity: int = 1, unit_price: str = "10.00") -> OrderLine:
    return OrderLine(sku=sku, quantity=quantity, unit_price=Decimal(unit_price))


# -- touchpoints with keyword overrides -------------------------------------------------


def store_scan(**fields: Any) -> StoreScan:
    data: dict[str, Any] = {
        "envelope": envelope(),
        "store_id": "S001",
        "staff_id": "G001",
        "scan_kind": ScanKind.checkout,
        "lines": [line("SKU-0001", 2, "50.00"), line("SKU-0002", 1, "29.90")],
        "paid_amount": Decimal("129.90"),
        "payment_method": PaymentMethod.wechat_pay,
    }
    return StoreScan(**{**data, **fields})


def livestream_click(**fields: Any) -> LivestreamClick:
    data: dict[str, Any] = {
        "envelope": envelope(identifiers=[openid(app_id="wx-channels-01"), device()]),
        "platform": LivePlatform.douyin,
        "room_id": "R01",
        "host_id": "H01",
        "sku": "SKU-0003",
    }
    return LivestreamClick(**{**data, **fields})


def red_envelope_claim(**fields: Any) -> RedEnvelopeClaim:
    data: dict[str, Any] = {
        "envelope": envelope(identifiers=[unionid()]),
        "campaign_id": "CMP-1",
        "envelope_id": "RE-000000001",
        "face_value": Decimal("20.00"),
        "channel": ClaimChannel.wechat,
    }
    return RedEnvelopeClaim(**{**data, **fields})


def app_order(**fields: Any) -> AppOrder:
    data: dict[str, Any] = {
        "envelope": envelope(identifiers=[app_user(), phone()]),
        "order_id": "ORD-0001",
        "app_id": "brand-app",
        "app_kind": AppKind.app,
        "lines": [line("SKU-0001", 2, "50.00"), line("SKU-0004", 3, "10.00")],
        "total_amount": Decimal("130.00"),
        "discount_amount": Decimal("13.00"),
        "paid_amount": Decimal("117.00"),
        "fulfilment": Fulfilment(mode=FulfilmentMode.pickup, store_id="S002"),
    }
    return AppOrder(**{**data, **fields})


def order_status(**fields: Any) -> OrderStatus:
    data: dict[str, Any] = {
        "envelope": envelope(identifiers=[]),
        "order_id": "ORD-0001",
        "status": OrderStatusKind.picked_up,
        "store_id": "S002",
    }
    return OrderStatus(**{**data, **fields})


def inventory_adjustment(**fields: Any) -> InventoryAdjustment:
    data: dict[str, Any] = {
        "envelope": envelope(identifiers=[]),
        "kind": AdjustmentKind.receipt,
        "sku": "SKU-0001",
        "location_id": "S001",
        "quantity": 40,
    }
    return InventoryAdjustment(**{**data, **fields})


# -- fully populated and minimal instances of every contract type -------------------------


def full_store_scan() -> StoreScan:
    return StoreScan(
        envelope=full_envelope(),
        store_id="S001",
        staff_id="G007",
        scan_kind=ScanKind.member_code,
        lines=[line("SKU-0001", 2, "50.00"), line("SKU-0002", 1, "29.90")],
        paid_amount=Decimal("129.90"),
        payment_method=PaymentMethod.alipay,
    )


def full_livestream_click() -> LivestreamClick:
    return LivestreamClick(
        envelope=full_envelope(),
        platform=LivePlatform.kuaishou,
        room_id="R02",
        host_id="H03",
        sku="SKU-0009",
    )


def full_red_envelope_claim() -> RedEnvelopeClaim:
    return RedEnvelopeClaim(
        envelope=full_envelope(),
        campaign_id="CMP-2",
        envelope_id="RE-000000002",
        face_value=Decimal("50.00"),
        channel=ClaimChannel.livestream,
    )


def full_app_order() -> AppOrder:
    return AppOrder(
        envelope=full_envelope(),
        order_id="ORD-0002",
        app_id="wx-mini-01",
        app_kind=AppKind.mini_program,
        lines=[line("SKU-0001", 1, "199.00"), line("SKU-0005", 4, "0.99")],
        total_amount=Decimal("202.96"),
        discount_amount=Decimal("2.96"),
        paid_amount=Decimal("200.00"),
        fulfilment=Fulfilment(
            mode=FulfilmentMode.pickup, store_id="S003", latitude=31.2304, longitude=121.4737
        ),
    )


def full_order_status() -> OrderStatus:
    return OrderStatus(
        envelope=full_envelope(),
        order_id="ORD-0002",
        status=OrderStatusKind.refunded,
        refund_amount=Decimal("99.50"),
        store_id="S003",
    )


def full_inventory_adjustment() -> InventoryAdjustment:
    return InventoryAdjustment(
        envelope=full_envelope(),
        kind=AdjustmentKind.transfer,
        sku="SKU-0001",
        location_id="S001",
        from_location_id="WH-EAST",
        quantity=12,
    )


def full_touchpoint_fact() -> TouchpointFact:
    return TouchpointFact(
        event_id="evt-full-0001",
        touchpoint_type="store_scan",
        event_time=datetime(2024, 6, 1, 11, 55, 0, 123000, tzinfo=UTC),
        processed_time=datetime(2024, 6, 1, 11, 55, 2, 9000, tzinfo=UTC),
        channel="store",
        store_id="S001",
        one_id="O42",
        new_member=True,
        order_id="ORD-0002",
        campaign_id="CMP-2",
        room_id="R02",
        quantity=3,
        amount=Decimal("129.90"),
        points=-129,
        source_topic="omni.touchpoint.store_scan",
        source_partition=5,
        source_offset=123456789012,
        outcome="backordered",
        attribution="livestream:R02",
        order_status="refunded",
    )


def minimal_store_scan() -> StoreScan:
    return StoreScan(envelope=minimal_envelope(), store_id="S001", paid_amount=Decimal("0.00"))


def minimal_livestream_click() -> LivestreamClick:
    return LivestreamClick(
        envelope=minimal_envelope(), platform=LivePlatform.other, room_id="R01", host_id="H01"
    )


def minimal_red_envelope_claim() -> RedEnvelopeClaim:
    return RedEnvelopeClaim(
        envelope=minimal_envelope(),
        campaign_id="CMP-1",
        envelope_id="RE-1",
        face_value=Decimal("5"),
        channel=ClaimChannel.other,
    )


def minimal_app_order() -> AppOrder:
    return AppOrder(
        envelope=minimal_envelope(),
        order_id="ORD-1",
        app_id="brand-app",
        app_kind=AppKind.app,
        lines=[line()],
        total_amount=Decimal("10.00"),
        discount_amount=Decimal("0.00"),
        paid_amount=Decimal("10.00"),
        fulfilment=Fulfilment(mode=FulfilmentMode.delivery),
    )


def minimal_order_status() -> OrderStatus:
    return OrderStatus(envelope=minimal_envelope(), order_id="ORD-1", status=OrderStatusKind.paid)


def minimal_inventory_adjustment() -> InventoryAdjustment:
    return InventoryAdjustment(
        envelope=minimal_envelope(),
        kind=AdjustmentKind.count,
        sku="SKU-0001",
        location_id="S001",
        quantity=0,
    )


def minimal_touchpoint_fact() -> TouchpointFact:
    return TouchpointFact(
        event_id="evt-min-0001",
        touchpoint_type="inventory_adjustment",
        event_time=EVENT_TIME,
        processed_time=NOW,
        channel="erp",
        amount=Decimal("0.00"),
        source_topic="omni.stock.inventory_adjustment",
        source_partition=0,
        source_offset=0,
    )


def full_identity_event() -> IdentityEvent:
    return IdentityEvent(
        event_id="evt-full-0001",
        seq=1,
        event_time=datetime(2024, 6, 1, 11, 55, 0, 123000, tzinfo=UTC),
        processed_time=datetime(2024, 6, 1, 11, 55, 2, 9000, tzinfo=UTC),
        action="merge",
        one_id="O7",
        other_one_id="O42",
        reason="",
        identifiers_before=["card:M0001", "device:d-1"],
        identifiers_other=["phone:5f2c"],
        points_moved=120,
        source_topic="omni.touchpoint.store_scan",
        source_partition=5,
        source_offset=123456789012,
    )


def minimal_identity_event() -> IdentityEvent:
    return IdentityEvent(
        event_id="evt-min-0001",
        seq=0,
        event_time=EVENT_TIME,
        processed_time=NOW,
        action="not_linked",
        one_id="O1",
        source_topic="omni.touchpoint.app_order",
        source_partition=0,
        source_offset=0,
    )


def full_points_entry() -> PointsEntry:
    return PointsEntry(
        event_id="evt-full-0001",
        rule="reverse:refunded",
        one_id="O42",
        points=-58,
        event_time=datetime(2024, 6, 1, 11, 55, 0, 123000, tzinfo=UTC),
        processed_time=datetime(2024, 6, 1, 11, 55, 2, 9000, tzinfo=UTC),
        source_topic="omni.touchpoint.order_status",
        source_partition=5,
        source_offset=123456789012,
    )


def full_stock_movement() -> StockMovement:
    return StockMovement(
        event_id="evt-full-0001",
        sku="SKU-0001",
        location="S001",
        kind="fulfil",
        on_hand_delta=-2,
        reserved_delta=-2,
        on_hand=7,
        reserved=1,
        version=12,
        event_time=datetime(2024, 6, 1, 11, 55, 0, 123000, tzinfo=UTC),
        processed_time=datetime(2024, 6, 1, 11, 55, 2, 9000, tzinfo=UTC),
        source_topic="omni.touchpoint.order_status",
        source_partition=5,
        source_offset=123456789012,
    )


def full_minute_aggregate() -> MinuteAggregate:
    return MinuteAggregate(
        minute=datetime(2024, 6, 1, 11, 55, tzinfo=UTC),
        channel="store",
        touchpoint_type="store_scan",
        store_id="S001",
        events=31,
        gmv=Decimal("12345.67"),
        orders=9,
        claims=0,
        refunds=Decimal("99.50"),
        processed_time=datetime(2024, 6, 1, 11, 55, 2, 9000, tzinfo=UTC),
    )


FULL: dict[str, Callable[[], Any]] = {
    "store_scan": full_store_scan,
    "livestream_click": full_livestream_click,
    "red_envelope_claim": full_red_envelope_claim,
    "app_order": full_app_order,
    "order_status": full_order_status,
    "inventory_adjustment": full_inventory_adjustment,
    "touchpoint_fact": full_touchpoint_fact,
    "identity_event": full_identity_event,
    "points_entry": full_points_entry,
    "stock_movement": full_stock_movement,
    "minute_aggregate": full_minute_aggregate,
}
MINIMAL: dict[str, Callable[[], Any]] = {
    "store_scan": minimal_store_scan,
    "livestream_click": minimal_livestream_click,
    "red_envelope_claim": minimal_red_envelope_claim,
    "app_order": minimal_app_order,
    "order_status": minimal_order_status,
    "inventory_adjustment": minimal_inventory_adjustment,
    "touchpoint_fact": minimal_touchpoint_fact,
    "identity_event": minimal_identity_event,
    "points_entry": full_points_entry,
    "stock_movement": full_stock_movement,
    "minute_aggregate": full_minute_aggregate,
}
