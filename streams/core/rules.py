"""Business rules as plain values: what counts as valid, how points are earned, where
stock is taken from. Built once from the settings at an entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True)
class Rules:
    phone_key: bytes
    points_per_yuan: int = 1
    red_envelope_bonus_points: int = 10
    #: how far an event time may lie ahead of the worker's clock (clock skew)
    max_future: timedelta = timedelta(hours=1)
    #: how late an event may arrive and still be applied
    max_past: timedelta = timedelta(days=90)
    #: where delivery orders reserve stock
    delivery_location: str = "WH-EAST"
    extra_illegal_identifiers: frozenset[str] = field(default_factory=frozenset)

    def points_for_payment(self, paid: Decimal) -> int:
        """Points per *whole* yuan paid: 129.90 yuan at 1 point/yuan earns 129."""
        whole = paid.to_integral_value(rounding=ROUND_FLOOR)
        return int(whole) * self.points_per_yuan
