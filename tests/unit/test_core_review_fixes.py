"""Identifiers refused without echoing them, a blocklisted phone however it is written, and
member-code scans that sell nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.models import Identifier, IdentifierKind, ScanKind
from streams.core.errors import InvalidTouchpoint
from streams.core.identity import identity_key
from streams.core.plan import plan_event
from streams.core.rules import Rules

from .factories import NOW, line, store_scan

# -- 1. a blocklisted identifier is echoed (a phone in clear) in the dead letter -------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [(IdentifierKind.phone, "13800138000"), (IdentifierKind.member_card, "C-88001234")],
)
def test_a_blocklisted_value_is_not_echoed(kind: IdentifierKind, value: str) -> None:
    """docs/identity.md: blocklisted values dead-letter the event with reason
    illegal_value; "the value is not echoed". errors.py: detail never holds a personal
    value (it becomes the DLQ header omni.error.detail)."""
    with pytest.raises(InvalidTouchpoint) as info:
        identity_key(Identifier(kind=kind, value=value), b"k", frozenset({value}))
    exc = info.value
    assert exc.reason == "illegal_value"
    for text in (exc.detail, str(exc), *map(str, exc.args)):
        assert value not in text, text


# -- 2. a blocklisted phone is let through when written another way --------------------------


@pytest.mark.parametrize(
    "written", ["+86 138 0013 8000", "+8613800138000", "138-0013-8000", "86 13800138000"]
)
def test_a_blocklisted_phone_is_refused_however_it_is_written(written: str) -> None:
    """The blocklist names a phone (e.g. the store's own number cashiers type in); the
    graph knows phones by their E.164 form, so the same number written with a country
    code or separators is the same identifier and must be refused too, or every customer
    who typed it is merged into one member."""
    with pytest.raises(InvalidTouchpoint) as info:
        identity_key(
            Identifier(kind=IdentifierKind.phone, value=written),
            b"k",
            frozenset({"13800138000"}),
        )
    assert info.value.reason == "illegal_value"


# -- 3. a member-code scan (no sale) takes stock off the shelf --------------------------------


def test_a_member_code_scan_sells_nothing() -> None:
    """docs/points-and-stock.md: "A store checkout lowers on hand". A guide scanning a
    member code is not a checkout: the plan gives it no points and no purchase, yet
    it still plans a sale of every line."""
    scan = store_scan(
        scan_kind=ScanKind.member_code,
        lines=[line("SKU-0001", 2, "50.00"), line("SKU-0002", 1, "29.90")],
        paid_amount=Decimal("0.00"),
    )
    plan = plan_event("store_scan", scan, Rules(phone_key=b"k"), NOW)
    assert (plan.points, plan.purchase) == (0, False)
    assert plan.stock == ()
