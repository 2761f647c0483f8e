"""Synthetic omnichannel traffic, deterministic for a given seed.

Members show up across channels with overlapping identifiers (a card at the till, a phone
in the app, a unionid when claiming a red envelope, openids per WeChat app), so the
identity graph has real stitching to do; anonymous livestream viewers identify later on
the same device; 40 % of app orders come from recent livestream viewers and 20 % from
recent red-envelope claimers (mini-program orders carry the unionid a claim does); red-envelope
campaigns run past their budgets (``campaign_budgets``); orders are picked up, shipped,
cancelled or partly refunded; stock is received before it is sold; some events arrive
late and out of order, some are re-sent (duplicates) and some messages are malformed.
"""

from __future__ import annotations

import io
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import fastavro

from schemas.codec import SINGLE_OBJECT_MAGIC
from schemas.contract import contract
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
    InventoryAdjustment,
    LivePlatform,
    LivestreamClick,
    OrderLine,
    OrderStatus,
    OrderStatusKind,
    PaymentMethod,
    RedEnvelopeClaim,
    ScanKind,
    StoreScan,
    Touchpoint,
    type_name_of,
)

STORES = [f"S{n:03d}" for n in range(1, 11)]
WAREHOUSES = ["WH-EAST", "WH-NORTH"]
MINI_PROGRAM_APP = "wx-mini-01"
CHANNELS_APP = "wx-channels-01"
SERVICE_ACCOUNT_APP = "wx-service-01"
#: red-envelope campaigns; share of claims each gets
CAMPAIGNS = ("CMP-1", "CMP-2", "CMP-3")


def campaign_budgets(events: int) -> str:
    """Budgets (``OMNI_CAMPAIGN_BUDGETS`` form) that a run of ``events`` exhausts: CMP-1
    runs out of envelopes, CMP-2 out of money, CMP-3 has no budget."""
    claims = max(1, int(events * 0.15 / len(CAMPAIGNS)))
    return f"CMP-1={claims // 2}:0,CMP-2=0:{claims * 10}"


@dataclass(frozen=True)
class SimMessage:
    """One message to produce: a valid record, or raw bytes for a given type's topic."""

    type_name: str
    record: Touchpoint | None = None
    raw: bytes | None = None
    key: bytes | None = None

    @property
    def malformed(self) -> bool:
        return self.record is None


@dataclass
class _Member:
    index: int
    phone: str
    card: str | None
    unionid: str | None
    app_user: str | None
    device: str
    openids: dict[str, str] = field(default_factory=dict)


class Simulation:
    def __init__(
        self,
        events: int,
        members: int | None = None,
        seed: int = 7,
        duplicate_share: float = 0.02,
        malformed_share: float = 0.01,
        skus: int = 40,
        start: datetime | None = None,
        keep_messages: bool = False,
        resend_window: int | None = None,
    ):
        self.events = events
        self.rng = random.Random(seed)
        self.uuid_rng = random.Random(seed + 1)
        self.members_n = members or max(10, events // 8)
        self.duplicate_share = duplicate_share
        self.malformed_share = malformed_share
        self.skus = [
            (f"SKU-{n:04d}", Decimal(self.rng.randrange(1990, 59900)) / 100) for n in range(skus)
        ]
        # the run ends about now: events are on average 200 ms apart
        self.clock = start or datetime.now(UTC) - timedelta(milliseconds=200 * events + 60_000)
        self.members = [self._member(i) for i in range(self.members_n)]
        self.open_orders: list[tuple[str, str, Decimal]] = []  # (order_id, mode, paid)
        self.fulfilled: list[tuple[str, Decimal]] = []  # may be refunded in part later
        self.clickers: list[_Member] = []  # recent livestream viewers; some of them buy
        self.claimers: list[_Member] = []  # recent red-envelope claimers; some of them buy
        self.sent: list[SimMessage] = []
        #: re-sent duplicates come from the last this many records (None: from all), which
        #: keeps memory flat on long runs (``omni bench``)
        self.resend_window = resend_window
        self.counts: Counter[str] = Counter()
        #: every message yielded, in order (for references in tests), when asked to keep them
        self.messages: list[SimMessage] | None = [] if keep_messages else None

    def _id(self) -> str:
        return str(uuid.UUID(int=self.uuid_rng.getrandbits(128), version=4))

    def _member(self, i: int) -> _Member:
        r = self.rng
        phone = f"1{r.choice('3578')}{r.randrange(0, 10**9):09d}"
        if phone.startswith("179"):  # parts of 179 are no mobile range: the SDK refuses them
            phone = "178" + phone[3:]
        return _Member(
            index=i,
            phone=phone,
            card=f"C{i:08d}" if r.random() < 0.7 else None,
            unionid=f"u_{i:08d}" if r.random() < 0.6 else None,
            app_user=f"app_{i:07d}" if r.random() < 0.5 else None,
            device=f"dev-{i:08d}",
            # each WeChat app gives the same person its own openid
            openids={
                app: f"o{n}_{i:08d}"
                for n, app in enumerate((MINI_PROGRAM_APP, CHANNELS_APP, SERVICE_ACCOUNT_APP))
            },
        )

    # -- envelope helpers ---------------------------------------------------------------
    def _tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self.rng.randrange(1, 400))
        # a few events arrive late and out of order
        if self.rng.random() < 0.03:
            return self.clock - timedelta(minutes=self.rng.randrange(1, 180))
        return self.clock

    def _envelope(self, source: str, identifiers: list[Identifier]) -> Envelope:
        when = self._tick()
        return Envelope(
            event_id=self._id(),
            event_time=when,
            produced_time=max(when, self.clock),
            source=source,
            identifiers=identifiers,
            consent=Consent(marketing=self.rng.random() < 0.4, analytics=True),
        )

    def _some(self, m: _Member, *kinds: str) -> list[Identifier]:
        out = []
        for kind in kinds:
            if kind == "phone":
                out.append(Identifier(kind=IdentifierKind.phone, value=m.phone))
            elif kind == "card" and m.card:
                out.append(Identifier(kind=IdentifierKind.member_card, value=m.card))
            elif kind == "unionid" and m.unionid:
                out.append(Identifier(kind=IdentifierKind.unionid, value=m.unionid))
            elif kind == "app" and m.app_user:
                out.append(Identifier(kind=IdentifierKind.app_user, value=m.app_user))
            elif kind == "device":
                out.append(
                    Identifier(
                        kind=IdentifierKind.device, value=m.device, device_role=DeviceRole.personal
                    )
                )
            elif kind.startswith("openid:"):
                app = kind.split(":", 1)[1]
                out.append(Identifier(kind=IdentifierKind.openid, value=m.openids[app], app_id=app))
        return out or [Identifier(kind=IdentifierKind.phone, value=m.phone)]

    def _lines(self, max_lines: int = 3) -> list[OrderLine]:
        most = min(max_lines, len(self.skus))
        picked = self.rng.sample(self.skus, self.rng.randrange(1, most + 1))
        return [
            OrderLine(sku=sku, quantity=self.rng.randrange(1, 3), unit_price=price)
            for sku, price in picked
        ]

    # -- touchpoints --------------------------------------------------------------------
    def receipt(self, sku: str, location: str, quantity: int) -> InventoryAdjustment:
        return InventoryAdjustment(
            envelope=self._envelope("wms", []), kind=AdjustmentKind.receipt, sku=sku,
            location_id=location, quantity=quantity,
        )  # fmt: skip

    def store_scan(self, m: _Member) -> StoreScan:
        ids = self._some(m, *self.rng.choice([("card",), ("phone",), ("card", "phone")]))
        lines = self._lines()
        paid = sum((ln.unit_price * ln.quantity for ln in lines), Decimal("0"))
        return StoreScan(
            envelope=self._envelope(f"pos-{self.rng.choice(STORES)}", ids),
            store_id=self.rng.choice(STORES),
            staff_id=f"G{self.rng.randrange(1, 40):03d}",
            scan_kind=ScanKind.checkout,
            lines=lines,
            paid_amount=paid.quantize(Decimal("0.01")),
            payment_method=self.rng.choice(list(PaymentMethod)[:5]),
        )

    def livestream_click(self, m: _Member) -> LivestreamClick:
        self.clickers = [*self.clickers[-49:], m]
        anonymous = self.rng.random() < 0.3
        ids = (
            self._some(m, "device")
            if anonymous
            else self._some(m, f"openid:{CHANNELS_APP}", "device")
        )
        return LivestreamClick(
            envelope=self._envelope("live-platform", ids),
            platform=self.rng.choice([LivePlatform.douyin, LivePlatform.wechat_channels]),
            room_id=f"R{self.rng.randrange(1, 6):02d}",
            host_id=f"H{self.rng.randrange(1, 4):02d}",
            sku=self.rng.choice(self.skus)[0],
        )

    def red_envelope_claim(self, m: _Member) -> RedEnvelopeClaim:
        self.claimers = [*self.claimers[-49:], m]
        return RedEnvelopeClaim(
            envelope=self._envelope(
                "campaign", self._some(m, "unionid", f"openid:{SERVICE_ACCOUNT_APP}")
            ),
            campaign_id=self.rng.choice(CAMPAIGNS),
            envelope_id=self._id()[:12],
            face_value=Decimal(self.rng.choice([5, 10, 20, 50])),
            channel=self.rng.choice([ClaimChannel.wechat, ClaimChannel.mini_program]),
        )

    def app_order(self, m: _Member) -> AppOrder:
        lines = self._lines()
        total = sum((ln.unit_price * ln.quantity for ln in lines), Decimal("0")).quantize(
            Decimal("0.01")
        )
        discount = (total * Decimal(self.rng.choice([0, 0, 5, 10])) / 100).quantize(Decimal("0.01"))
        pickup = self.rng.random() < 0.4
        kind = self.rng.choice([AppKind.app, AppKind.mini_program])
        ids = (
            self._some(m, "app", "phone", "device")
            if kind == AppKind.app
            # a mini-program login gives the unionid too: it links the order to the
            # person's red-envelope claims (made through the service account)
            else self._some(m, f"openid:{MINI_PROGRAM_APP}", "unionid", "phone")
        )
        order = AppOrder(
            envelope=self._envelope("app-backend", ids),
            order_id=f"ORD-{self._id()[:13]}",
            app_id=MINI_PROGRAM_APP if kind == AppKind.mini_program else "brand-app",
            app_kind=kind,
            lines=lines,
            total_amount=total,
            discount_amount=discount,
            paid_amount=total - discount,
            fulfilment=Fulfilment(
                mode=FulfilmentMode.pickup if pickup else FulfilmentMode.delivery,
                store_id=self.rng.choice(STORES) if pickup else None,
                latitude=None if pickup else 31.2 + self.rng.random(),
                longitude=None if pickup else 121.4 + self.rng.random(),
            ),
        )
        self.open_orders.append((order.order_id, order.fulfilment.mode.value, order.paid_amount))
        return order

    def order_status(self) -> OrderStatus:
        envelope = self._envelope("app-backend", [])
        if self.fulfilled and self.rng.random() < 0.15:
            # a partial refund of a fulfilled order (at most one each)
            order_id, paid = self.fulfilled.pop(self.rng.randrange(len(self.fulfilled)))
            share = Decimal(self.rng.randrange(10, 90)) / 100
            refund = (paid * share).quantize(Decimal("0.01"))
            return OrderStatus(
                envelope=envelope,
                order_id=order_id,
                status=OrderStatusKind.refunded,
                refund_amount=refund,
            )
        order_id, mode, paid = self.open_orders.pop(self.rng.randrange(len(self.open_orders)))
        status = OrderStatusKind.picked_up if mode == "pickup" else OrderStatusKind.shipped
        if self.rng.random() < 0.15:
            status = OrderStatusKind.cancelled
        else:
            self.fulfilled.append((order_id, paid))
        return OrderStatus(envelope=envelope, order_id=order_id, status=status)

    # -- malformed ------------------------------------------------------------------------
    def malformed(self) -> SimMessage:
        kind = self.rng.choice(["garbage", "truncated", "negative_quantity", "no_identifiers"])
        if kind == "garbage":
            return SimMessage("store_scan", raw=b"\x7bnot avro at all\x7d")
        valid = self.store_scan(self.rng.choice(self.members))
        info = contract().schema("store_scan")
        record = valid.to_avro()
        if kind == "negative_quantity":
            record["lines"][0]["quantity"] = -3
        elif kind == "no_identifiers":
            record["envelope"]["identifiers"] = []
        body = io.BytesIO()
        fastavro.schemaless_writer(body, info.parsed, record)
        raw = SINGLE_OBJECT_MAGIC + info.fingerprint + body.getvalue()
        if kind == "truncated":
            raw = raw[: len(raw) // 2]
        return SimMessage("store_scan", raw=raw, key=valid.store_id.encode())

    # -- the stream -----------------------------------------------------------------------
    def _record(self, record: Touchpoint) -> SimMessage:
        msg = SimMessage(type_name_of(record), record=record)
        self.sent.append(msg)
        if self.resend_window and len(self.sent) > 2 * self.resend_window:
            del self.sent[: -self.resend_window]
        return msg

    def __iter__(self) -> Iterator[SimMessage]:
        produced = 0
        stock_each = max(20, self.events // 20)
        for sku, _ in self.skus:
            for location in (*STORES, *WAREHOUSES):
                if produced >= self.events:
                    return
                # warehouses serve every delivery order: they hold far more
                quantity = stock_each * (20 if location in WAREHOUSES else 1)
                yield self._count(self._record(self.receipt(sku, location, quantity)))
                produced += 1
        while produced < self.events:
            roll = self.rng.random()
            if roll < self.malformed_share:
                msg = self.malformed()
            elif roll < self.malformed_share + self.duplicate_share and self.sent:
                msg = self.rng.choice(self.sent)  # re-sent: same event_id
            else:
                m = self.rng.choice(self.members)
                pick = self.rng.random()
                if pick < 0.30:
                    msg = self._record(self.store_scan(m))
                elif pick < 0.58:
                    msg = self._record(self.livestream_click(m))
                elif pick < 0.73:
                    msg = self._record(self.red_envelope_claim(m))
                elif pick < 0.93 or not self.open_orders:
                    # 40 % of app orders come from recent livestream viewers, 20 % from
                    # recent red-envelope claimers
                    recent = self.rng.random()
                    if self.clickers and recent < 0.4:
                        m = self.rng.choice(self.clickers)
                    elif self.claimers and recent < 0.6:
                        m = self.rng.choice(self.claimers)
                    msg = self._record(self.app_order(m))
                else:
                    msg = self._record(self.order_status())
            yield self._count(msg)
            produced += 1

    def _count(self, msg: SimMessage) -> SimMessage:
        self.counts["malformed" if msg.malformed else msg.type_name] += 1
        if self.messages is not None:
            self.messages.append(msg)
        return msg
