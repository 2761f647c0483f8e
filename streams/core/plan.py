"""From one validated record to an ``EventPlan``: everything the views must do for it,
decided without touching any store. The Redis adapter executes plans atomically."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from schemas.models import (
    AppOrder,
    FulfilmentMode,
    InventoryAdjustment,
    LivestreamClick,
    OrderLine,
    OrderStatus,
    RedEnvelopeClaim,
    ScanKind,
    StoreScan,
    Touchpoint,
)
from streams.core.errors import InvalidTouchpoint
from streams.core.identity import identity_key
from streams.core.rules import Rules, by_priority

#: Touchpoints must say who; order statuses and stock movements need not.
NEEDS_IDENTIFIERS = frozenset({"store_scan", "livestream_click", "red_envelope_claim", "app_order"})

#: Channel of a touchpoint; the order of this tuple fixes each channel's bit in the views.
CHANNELS: tuple[str, ...] = ("store", "livestream", "wechat", "app", "mini_program", "other", "erp")
OFFLINE_CHANNELS = frozenset({"store"})


class StockOp(NamedTuple):
    """``sale``: on hand down; ``receive``: on hand up; ``count``: on hand set;
    ``transfer``: from one location to another; ``reserve``: hold for an order."""

    kind: str
    sku: str
    location: str
    quantity: int
    from_location: str = ""


class EventPlan(NamedTuple):
    event_id: str
    touchpoint_type: str
    event_time: datetime
    channel: str
    identity_keys: tuple[str, ...]
    points: int
    stock: tuple[StockOp, ...]
    store_id: str = ""
    order_id: str = ""
    campaign_id: str = ""
    room_id: str = ""
    quantity: int = 0
    amount: Decimal = Decimal("0.00")
    #: order_status only: paid | cancelled | refunded | picked_up | shipped
    order_status: str = ""
    #: a purchase (a store checkout, an app order): counts for recency/frequency/monetary
    purchase: bool = False
    #: a delivery order: where it may be served from, nearest first (reserve ops name the
    #: first; the views take the first that can serve every line)
    candidates: tuple[str, ...] = ()
    #: a pick-up order: its reservation is held for a while, then released
    pickup: bool = False
    #: a touch orders can be attributed to: livestream:<room>, red_envelope:<campaign>,
    #: guide:<staff id>
    touch: str = ""


def _per_sku(lines: Iterable[OrderLine]) -> dict[str, int]:
    """An order's quantity of each SKU, in the order the SKUs first appear: the views
    reserve an order all at one location or not at all, checking each SKU's available
    stock against what the order needs of it, so a SKU on several lines is reserved once,
    for their sum (two lines of 3 against 5 on the shelf: backordered, not oversold)."""
    need: dict[str, int] = {}
    for ln in lines:
        need[ln.sku] = need.get(ln.sku, 0) + ln.quantity
    return need


def received_at(stamped: datetime | None, now: datetime, rules: Rules) -> datetime:
    """When an event reached Kafka, to judge its age by: its message's timestamp when that
    lies within ``rules.stamp_trust`` before ``now``, else ``now``. Every delivery of a
    message then decides the same (a batch redelivered to another worker after its views
    were applied re-emits its facts instead of dead-lettering an event gone past the age
    limit meanwhile), and a backlog that waited for the workers is not aged out by the
    wait; a timestamp far off (a producer's clock reset, or one that stamps messages with
    their events' own time) is not believed."""
    if stamped is None or stamped > now or stamped < now - rules.stamp_trust:
        return now
    return stamped


def plan_event(
    type_name: str,
    record: Touchpoint,
    rules: Rules,
    now: datetime,
    stamped: datetime | None = None,
) -> EventPlan:
    """Validate what needs the clock or configuration, then plan. ``stamped``: the
    message's Kafka timestamp (``received_at``). Raises ``InvalidTouchpoint``."""
    env = record.envelope
    # ahead of the worker's clock: a later delivery is only more lenient, so it is safe
    if env.event_time > now + rules.max_future:
        raise InvalidTouchpoint(
            "envelope.event_time", "in_future", f"more than {rules.max_future} ahead"
        )
    if env.event_time < received_at(stamped, now, rules) - rules.max_past:
        raise InvalidTouchpoint("envelope.event_time", "too_old", f"more than {rules.max_past} ago")
    if type_name in NEEDS_IDENTIFIERS and not env.identifiers:
        raise InvalidTouchpoint("envelope.identifiers", "no_identifiers")
    keys = [
        identity_key(i, rules.phone_key, rules.extra_illegal_identifiers) for i in env.identifiers
    ]
    # A shared device tells nothing about who is there: it never joins the graph.
    linkable = by_priority(tuple(dict.fromkeys(k.key for k in keys if not k.shared)))
    base = {
        "event_id": env.event_id,
        "touchpoint_type": type_name,
        "event_time": env.event_time,
        "identity_keys": linkable,
    }
    match record:
        case StoreScan():
            # only a checkout sells: a guide's member-code scan takes nothing off the
            # shelf, earns nothing and is no order, whatever lines it carries
            checkout = record.scan_kind == ScanKind.checkout
            sold = tuple(
                StockOp("sale", ln.sku, record.store_id, ln.quantity) for ln in record.lines
            )
            points = 0
            if checkout:
                points = rules.points_for_payment(record.paid_amount, type_name, "store")
            return EventPlan(
                **base,
                channel="store",
                points=points,
                stock=sold if checkout else (),
                store_id=record.store_id,
                quantity=sum(ln.quantity for ln in record.lines),
                amount=record.paid_amount if checkout else Decimal(0),
                purchase=checkout,
                touch=f"guide:{record.staff_id}" if record.staff_id else "",
            )
        case LivestreamClick():
            return EventPlan(
                **base,
                channel="livestream",
                points=0,
                stock=(),
                room_id=record.room_id,
                touch=f"livestream:{record.room_id}",
            )
        case RedEnvelopeClaim():
            channel = record.channel.value if record.channel.value in CHANNELS else "other"
            return EventPlan(
                **base,
                channel=channel,
                points=rules.red_envelope_bonus_points,
                stock=(),
                campaign_id=record.campaign_id,
                amount=record.face_value,
                touch=f"red_envelope:{record.campaign_id}",
            )
        case AppOrder():
            fulfilment = record.fulfilment
            pickup = fulfilment.mode == FulfilmentMode.pickup
            candidates = () if pickup else rules.nearest(fulfilment.latitude, fulfilment.longitude)
            location = fulfilment.store_id if pickup else candidates[0]
            assert location is not None  # the model requires a store for pick-up
            held = tuple(
                StockOp("reserve", sku, location, quantity)
                for sku, quantity in _per_sku(record.lines).items()
            )
            # (a pick-up order has no candidates; the views hold its reservation for a while)
            return EventPlan(
                **base,
                channel=record.app_kind.value,
                points=rules.points_for_payment(
                    record.paid_amount, type_name, record.app_kind.value
                ),
                stock=held,
                store_id=record.fulfilment.store_id or "",
                order_id=record.order_id,
                quantity=sum(ln.quantity for ln in record.lines),
                amount=record.paid_amount,
                purchase=True,
                candidates=candidates,
                pickup=pickup,
            )
        case OrderStatus():
            return EventPlan(
                **base,
                channel="other",
                points=0,
                stock=(),
                store_id=record.store_id or "",
                order_id=record.order_id,
                amount=record.refund_amount or Decimal("0.00"),
                order_status=record.status.value,
            )
        case InventoryAdjustment():
            op = StockOp(
                record.kind.value if record.kind.value != "receipt" else "receive",
                record.sku,
                record.location_id,
                record.quantity,
                record.from_location_id or "",
            )
            return EventPlan(
                **base,
                channel="erp",
                points=0,
                stock=(op,),
                store_id=record.location_id,
                quantity=record.quantity,
            )
    raise InvalidTouchpoint("type", "unknown_type", type(record).__name__)
