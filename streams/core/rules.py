"""Business rules as plain values: what counts as valid, how points are earned, where
stock is taken from. Built once from the settings at an entry point."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

#: Identity kinds, highest priority first: an event's identifiers are tried in this order,
#: and the member of the first one already known is the one the event belongs to.
IDENTITY_PRIORITY: tuple[str, ...] = ("card", "phone", "unionid", "app", "openid", "device")


@dataclass(frozen=True)
class IdentityPolicy:
    """The safety rules of the identity graph, enforced atomically in
    ``connectors/lua/apply_batch.lua`` (documented in docs/identity.md).

    * ``limits``: the most identifiers of a kind one OneID may hold. An event that would
      break a limit does not merge (or link that identifier) and is flagged.
    * ``review``: kinds that identify a person. Two members who each hold their own
      identifier of such a kind are never fused: the merge is refused and queued for review.
    """

    limits: tuple[tuple[str, int], ...] = (
        ("card", 1),
        ("phone", 1),
        ("unionid", 1),
        ("app", 1),
        ("openid", 10),
        ("device", 10),
    )
    review: tuple[str, ...] = ("card", "phone")

    @classmethod
    def parse(cls, limits: str, review: str) -> IdentityPolicy:
        """``"phone=1,device=10"`` (unnamed kinds keep their default) and ``"card,phone"``."""
        merged = dict(cls.limits)
        for part in filter(None, (p.strip() for p in limits.split(","))):
            kind, sep, value = part.partition("=")
            kind = kind.strip()
            if not sep or kind not in IDENTITY_PRIORITY or not value.strip().isdigit():
                raise ValueError(
                    f"identity limit {part!r}: expected KIND=N with KIND one of "
                    + ", ".join(IDENTITY_PRIORITY)
                )
            if int(value) < 1:
                raise ValueError(f"identity limit {part!r}: at least 1")
            merged[kind] = int(value)
        kinds = tuple(filter(None, (k.strip() for k in review.split(","))))
        unknown = [k for k in kinds if k not in IDENTITY_PRIORITY]
        if unknown:
            raise ValueError(f"identity review kinds: unknown {', '.join(unknown)}")
        ordered = tuple((k, merged[k]) for k in IDENTITY_PRIORITY if k in merged)
        return cls(ordered, kinds)

    def as_script_argument(self) -> dict[str, list]:
        return {"limits": [list(pair) for pair in self.limits], "review": list(self.review)}


@dataclass(frozen=True)
class Budget:
    """A red-envelope campaign's budget: claims and face value in cents (0: no limit).
    Enforced atomically in ``connectors/lua/apply_batch.lua``: a claim that would pass
    either is refused, awards nothing, and is recorded as ``claim_refused``."""

    claims: int
    amount_cents: int


def parse_rates(text: str, what: str) -> dict[str, Decimal]:
    """``"app_order=2,store=1.5"`` -> {key: rate}; rates are not negative."""
    rates = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            rate = Decimal(value.strip())
        except ArithmeticError:
            rate = None
        if not sep or not key.strip() or rate is None or not rate.is_finite() or rate < 0:
            raise ValueError(f"{what} {part!r}: expected KEY=NUMBER (not negative)")
        rates[key.strip()] = rate
    return rates


@dataclass(frozen=True)
class PointsPolicy:
    """The points and stock rules applied inside the atomic batch script
    (``connectors/lua/apply_batch.lua``), where the member's state is:

    * ``budgets``: red-envelope campaign budgets;
    * ``attribution_window_s``: an app order is attributed to the member's last touch
      (livestream click, red-envelope claim, guide contact) at most this old;
    * ``tier_multipliers``: earned points x the member's tier multiplier (``TIERS``);
    * ``campaign_multipliers``: x the campaign's, for orders attributed to its envelope;
    * ``overdraft``: how far a reversal may take a balance below zero (0: never);
    * ``expiry_days``: a balance untouched this long (event time) lapses (0: never);
    * ``pickup_hold_hours``: a pick-up reservation is released after this long.
    """

    budgets: dict[str, Budget] = field(default_factory=dict)
    attribution_window_s: int = 24 * 3600
    tier_multipliers: dict[str, Decimal] = field(default_factory=dict)
    campaign_multipliers: dict[str, Decimal] = field(default_factory=dict)
    overdraft: int = 0
    expiry_days: int = 0
    pickup_hold_hours: int = 72

    def as_script_argument(self) -> dict:
        return {
            "budgets": {c: [b.claims, b.amount_cents] for c, b in self.budgets.items()},
            "window_ms": self.attribution_window_s * 1000,
            "tiers": [
                [floor, name, float(self.tier_multipliers.get(name, 1))] for floor, name in TIERS
            ],
            "campaign_mult": {c: float(m) for c, m in self.campaign_multipliers.items()},
            "overdraft": self.overdraft,
            "expiry_ms": self.expiry_days * 86_400_000,
            "hold_ms": self.pickup_hold_hours * 3_600_000,
        }


def parse_budgets(text: str) -> dict[str, Budget]:
    """``"CMP-1=500:0,CMP-2=0:20000"`` -> budgets (count, yuan)."""
    budgets = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        campaign, sep, limits = part.partition("=")
        count, colon, amount = limits.partition(":")
        try:
            budget = Budget(int(count), int(Decimal(amount or "0") * 100))
        except (ArithmeticError, ValueError):
            budget = None
        if not sep or not campaign.strip() or not colon or budget is None:
            raise ValueError(f"campaign budget {part!r}: expected CAMPAIGN=COUNT:YUAN")
        if budget.claims < 0 or budget.amount_cents < 0:
            raise ValueError(f"campaign budget {part!r}: limits are not negative")
        budgets[campaign.strip()] = budget
    return budgets


_RANK = {kind: n for n, kind in enumerate(IDENTITY_PRIORITY)}


def by_priority(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Identity keys, highest-priority kind first (stable within a kind)."""
    if len(keys) < 2:
        return keys
    rank, last = _RANK, len(_RANK)
    return tuple(sorted(keys, key=lambda k: rank.get(k.split(":", 1)[0], last)))


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def parse_locations(text: str) -> tuple[tuple[str, float, float], ...]:
    """``"WH-EAST=31.23:121.47,WH-NORTH=39.90:116.40"`` -> ((name, lat, lon), ...)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, coords = part.partition("=")
        lat, colon, lon = coords.partition(":")
        try:
            point = (float(lat), float(lon))
        except ValueError:
            point = None
        if not sep or not name.strip() or not colon or point is None:
            raise ValueError(f"delivery location {part!r}: expected NAME=LAT:LON")
        if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180):
            raise ValueError(f"delivery location {part!r}: coordinates out of range")
        out.append((name.strip(), *point))
    if not out:
        raise ValueError("at least one delivery location is needed")
    return tuple(out)


@dataclass(frozen=True)
class Rules:
    phone_key: bytes
    points_per_yuan: int = 1
    red_envelope_bonus_points: int = 10
    #: how far an event time may lie ahead of the worker's clock (clock skew)
    max_future: timedelta = timedelta(hours=1)
    #: how late an event may arrive and still be applied
    max_past: timedelta = timedelta(days=90)
    #: how far back a message's Kafka timestamp is believed as the time it arrived
    #: (``plan.received_at``): longer than any redelivery or backlog should take, short
    #: against ``max_past``
    stamp_trust: timedelta = timedelta(days=1)
    #: where delivery orders may be served from: (location, latitude, longitude)
    delivery_locations: tuple[tuple[str, float, float], ...] = (
        ("WH-EAST", 31.23, 121.47),
        ("WH-NORTH", 39.90, 116.40),
    )
    #: identifier values refused on top of the built-in placeholders (``null``, ``0``, ...)
    extra_illegal_identifiers: frozenset[str] = field(default_factory=frozenset)
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    #: points per yuan by ``type@channel``, type or channel (``points_for_payment``)
    earn_rates: dict[str, Decimal] = field(default_factory=dict)

    def nearest(self, latitude: float | None, longitude: float | None) -> tuple[str, ...]:
        """Delivery locations, nearest to the address first (great-circle distance); in
        configured order when the order has no coordinates."""
        if latitude is None or longitude is None:
            return tuple(name for name, _, _ in self.delivery_locations)
        return tuple(
            name
            for _, name in sorted(
                (distance_km(latitude, longitude, lat, lon), name)
                for name, lat, lon in self.delivery_locations
            )
        )

    def points_for_payment(
        self, paid: Decimal, touchpoint_type: str = "", channel: str = ""
    ) -> int:
        """Points per *whole* yuan paid: 129.90 yuan at 1 point/yuan earns 129. The rate:
        ``earn_rates`` for ``type@channel``, else the type, else the channel, else
        ``points_per_yuan``; fractions of a point are dropped."""
        whole = paid.to_integral_value(rounding=ROUND_FLOOR)
        rates = self.earn_rates
        rate = next(
            (
                rates[k]
                for k in (f"{touchpoint_type}@{channel}", touchpoint_type, channel)
                if k in rates
            ),
            Decimal(self.points_per_yuan),
        )
        return int((whole * rate).to_integral_value(rounding=ROUND_FLOOR))


#: Tiers by lifetime points earned (never lowered by spending or reversals), highest first.
TIERS: tuple[tuple[int, str], ...] = ((5000, "gold"), (1000, "silver"), (0, "bronze"))
#: Purchase-frequency segments: at least this many purchases, highest first.
SEGMENTS: tuple[tuple[int, str], ...] = ((5, "high"), (2, "medium"), (0, "low"))


def tier_of(earned: int) -> str:
    return next((name for floor, name in TIERS if earned >= floor), TIERS[-1][1])


def rfm(purchases: int, spent_cents: int, last_purchase_ms: int, now_ms: int) -> dict:
    """Recency (days since the last purchase, None if none), frequency, monetary (yuan)
    and the frequency segment of a member."""
    return {
        "recency_days": None
        if not last_purchase_ms
        else max(0, (now_ms - last_purchase_ms) // 86_400_000),
        "frequency": purchases,
        "monetary": str(Decimal(spent_cents) / 100),
        "segment": next(name for floor, name in SEGMENTS if purchases >= floor),
    }
