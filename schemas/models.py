"""Pydantic models mirroring the ``.avsc`` files field by field (a test proves it).

They carry the checks a single record can make on itself (quantities positive, money
not negative, an openid has its appid, a refund has its amount). Checks that need the
clock or configuration (event time window, identifier blocklist) live in
``streams.core.validation``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

_CENT = Decimal("0.01")


def _in_cents(value: Decimal) -> Decimal:
    """Money with exactly two places, as the schemas' ``decimal(14, 2)`` writes it: "1.000",
    "1E+1" and "0E-5" are valid amounts (pydantic counts places after normalising), and
    Avro would refuse them as written. Applied when a record is dumped (``to_avro``), so
    validating what the workers decode, always in cents already, costs nothing more."""
    return value if value.as_tuple().exponent == -2 else value.quantize(_CENT)


Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2),
    PlainSerializer(_in_cents, return_type=Decimal),
]
Text = Annotated[str, Field(min_length=1, max_length=256)]
#: an instant a reader can turn back into a datetime: 0001-01-01T00:00+08:00 is in year 0
#: in UTC, which Avro's timestamp-millis writes and no reader can give back
Instant = Annotated[
    AwareDatetime,
    Field(ge=datetime(1, 1, 2, tzinfo=UTC), le=datetime(9999, 12, 30, tzinfo=UTC)),
]
#: a store or warehouse holding stock: the views key stock as ``<sku>@<location>``, so a
#: location never contains "@" (SKU "A@B" at "C" and SKU "A" at "B@C" would be one key)
AnyLocation = Annotated[str, Field(max_length=256, pattern=r"^[^@]*$")]
Location = Annotated[AnyLocation, Field(min_length=1)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro expects it (enums as their symbols)."""
        return self.model_dump(mode="python")


class IdentifierKind(StrEnum):
    phone = "phone"
    unionid = "unionid"
    openid = "openid"
    app_user = "app_user"
    member_card = "member_card"
    device = "device"


class DeviceRole(StrEnum):
    personal = "personal"
    shared_store_device = "shared_store_device"
    guide_scanner = "guide_scanner"


class Identifier(_Record):
    kind: IdentifierKind
    value: Annotated[str, Field(max_length=256)]
    #: an openid's key is ``openid:<app_id>:<value>``: an app id never contains ":"
    app_id: Annotated[str, Field(max_length=256, pattern=r"^[^:]*$")] | None = None
    device_role: DeviceRole | None = None

    @model_validator(mode="after")
    def _scoped(self) -> Identifier:
        if self.kind == IdentifierKind.openid and not self.app_id:
            raise ValueError("an openid needs the app_id that issued it")
        if self.kind != IdentifierKind.device and self.device_role is not None:
            raise ValueError("device_role is only for kind=device")
        return self


class Consent(_Record):
    marketing: bool = False
    analytics: bool = True


class Envelope(_Record):
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    event_time: Instant
    time_zone: str = "Asia/Shanghai"
    produced_time: Instant
    source: Text
    identifiers: list[Identifier] = Field(default_factory=list, max_length=32)
    consent: Consent = Consent()


class OrderLine(_Record):
    sku: Text
    quantity: Annotated[int, Field(gt=0, le=100_000)]
    unit_price: Money


class ScanKind(StrEnum):
    checkout = "checkout"
    member_code = "member_code"


class PaymentMethod(StrEnum):
    wechat_pay = "wechat_pay"
    alipay = "alipay"
    unionpay = "unionpay"
    card = "card"
    cash = "cash"
    none = "none"
    other = "other"


class StoreScan(_Record):
    envelope: Envelope
    store_id: Location
    staff_id: str | None = None
    scan_kind: ScanKind = ScanKind.checkout
    lines: list[OrderLine] = Field(default_factory=list, max_length=500)
    paid_amount: Money
    payment_method: PaymentMethod = PaymentMethod.other


class LivePlatform(StrEnum):
    douyin = "douyin"
    wechat_channels = "wechat_channels"
    taobao_live = "taobao_live"
    kuaishou = "kuaishou"
    other = "other"


class LivestreamClick(_Record):
    envelope: Envelope
    platform: LivePlatform
    room_id: Text
    host_id: Text
    sku: str | None = None


class ClaimChannel(StrEnum):
    wechat = "wechat"
    app = "app"
    mini_program = "mini_program"
    livestream = "livestream"
    store = "store"
    other = "other"


class RedEnvelopeClaim(_Record):
    envelope: Envelope
    campaign_id: Text
    envelope_id: Text
    face_value: Money
    channel: ClaimChannel


class AppKind(StrEnum):
    app = "app"
    mini_program = "mini_program"


class FulfilmentMode(StrEnum):
    delivery = "delivery"
    pickup = "pickup"


class Fulfilment(_Record):
    mode: FulfilmentMode
    store_id: AnyLocation | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None

    @model_validator(mode="after")
    def _pickup_has_store(self) -> Fulfilment:
        if self.mode == FulfilmentMode.pickup and not self.store_id:
            raise ValueError("a pick-up order needs store_id")
        return self


class AppOrder(_Record):
    envelope: Envelope
    order_id: Text
    app_id: Text
    app_kind: AppKind
    lines: list[OrderLine] = Field(min_length=1, max_length=500)
    total_amount: Money
    discount_amount: Money
    paid_amount: Money
    fulfilment: Fulfilment


class OrderStatusKind(StrEnum):
    paid = "paid"
    cancelled = "cancelled"
    refunded = "refunded"
    picked_up = "picked_up"
    shipped = "shipped"


class OrderStatus(_Record):
    envelope: Envelope
    order_id: Text
    status: OrderStatusKind
    refund_amount: Money | None = None
    #: where a backordered order's lines leave the shelf when it ships (no ``@``: a stock key)
    store_id: AnyLocation | None = None

    @model_validator(mode="after")
    def _refund_has_amount(self) -> OrderStatus:
        if self.status == OrderStatusKind.refunded and self.refund_amount is None:
            raise ValueError("a refund needs refund_amount")
        return self


class AdjustmentKind(StrEnum):
    receipt = "receipt"
    transfer = "transfer"
    count = "count"


class InventoryAdjustment(_Record):
    envelope: Envelope
    kind: AdjustmentKind
    sku: Text
    location_id: Location
    from_location_id: AnyLocation | None = None
    quantity: Annotated[int, Field(ge=0, le=10_000_000)]

    @model_validator(mode="after")
    def _movement_rules(self) -> InventoryAdjustment:
        if self.kind == AdjustmentKind.transfer and not self.from_location_id:
            raise ValueError("a transfer needs from_location_id")
        if self.kind == AdjustmentKind.transfer and self.from_location_id == self.location_id:
            raise ValueError("a transfer moves stock between two locations")
        if self.kind != AdjustmentKind.count and self.quantity == 0:
            raise ValueError("a receipt or transfer moves at least one unit")
        return self


class TouchpointFact(_Record):
    """What the workers emit and the sink writes (see ``touchpoint_fact.avsc``)."""

    event_id: str
    touchpoint_type: str
    event_time: datetime
    processed_time: datetime
    channel: str
    store_id: str = ""
    one_id: str = ""
    new_member: bool = False
    order_id: str = ""
    campaign_id: str = ""
    room_id: str = ""
    quantity: int = 0
    amount: Decimal
    points: int = 0
    source_topic: str
    source_partition: int
    source_offset: int
    outcome: str = ""
    attribution: str = ""
    order_status: str = ""


class IdentityEvent(_Record):
    """An entry of the identity merge log (see ``identity_event.avsc``)."""

    event_id: str
    seq: int
    event_time: datetime
    processed_time: datetime
    action: str
    one_id: str
    other_one_id: str = ""
    reason: str = ""
    identifiers_before: list[str] = []
    identifiers_other: list[str] = []
    points_moved: int = 0
    source_topic: str
    source_partition: int
    source_offset: int


class PointsEntry(_Record):
    """An entry of the points ledger (see ``points_entry.avsc``)."""

    event_id: str
    rule: str
    one_id: str
    points: int
    event_time: datetime
    processed_time: datetime
    source_topic: str
    source_partition: int
    source_offset: int


class StockMovement(_Record):
    """A change of one SKU's stock at one location (see ``stock_movement.avsc``)."""

    event_id: str
    sku: str
    location: str
    kind: str
    on_hand_delta: int
    reserved_delta: int
    on_hand: int
    reserved: int
    version: int
    event_time: datetime
    processed_time: datetime
    source_topic: str
    source_partition: int
    source_offset: int


class MinuteAggregate(_Record):
    """Absolute counts of a minute x channel x type x store (see ``minute_aggregate.avsc``)."""

    minute: datetime
    channel: str
    touchpoint_type: str
    store_id: str
    events: int
    gmv: Decimal
    orders: int
    claims: int
    refunds: Decimal
    processed_time: datetime


Touchpoint = (
    StoreScan | LivestreamClick | RedEnvelopeClaim | AppOrder | OrderStatus | InventoryAdjustment
)

#: type name (the ``.avsc`` file stem, and the ``type`` field of the JSON-lines form) -> model
MODELS: dict[str, type[_Record]] = {
    "store_scan": StoreScan,
    "livestream_click": LivestreamClick,
    "red_envelope_claim": RedEnvelopeClaim,
    "app_order": AppOrder,
    "order_status": OrderStatus,
    "inventory_adjustment": InventoryAdjustment,
    "touchpoint_fact": TouchpointFact,
    "identity_event": IdentityEvent,
    "points_entry": PointsEntry,
    "stock_movement": StockMovement,
    "minute_aggregate": MinuteAggregate,
}


def type_name_of(record: BaseModel) -> str:
    for name, model in MODELS.items():
        if type(record) is model:
            return name
    raise KeyError(f"{type(record).__name__} is not a contract model")


def describe_validation_error(exc: ValidationError) -> tuple[str, str, str]:
    """(field, reason, detail) of the first error, without the offending input value."""
    first = exc.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or "record"
    return field, first["type"], first["msg"]
