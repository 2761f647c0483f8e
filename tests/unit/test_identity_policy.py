"""The identity policy as configured: limits, review kinds, priority, the blocklist."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.models import Identifier, IdentifierKind
from streams.core.errors import InvalidTouchpoint
from streams.core.identity import identity_key
from streams.core.rules import (
    Budget,
    IdentityPolicy,
    Rules,
    by_priority,
    distance_km,
    parse_budgets,
    parse_locations,
)
from streams.settings import Settings
from streams.wiring import rules


def test_defaults_allow_one_of_each_personal_identifier() -> None:
    policy = IdentityPolicy()
    assert dict(policy.limits) == {
        "card": 1,
        "phone": 1,
        "unionid": 1,
        "app": 1,
        "openid": 10,
        "device": 10,
    }
    assert policy.review == ("card", "phone")


def test_parse_overrides_named_kinds_and_keeps_priority_order() -> None:
    policy = IdentityPolicy.parse("device=3, phone=2", "card")
    assert policy.limits == (
        ("card", 1),
        ("phone", 2),
        ("unionid", 1),
        ("app", 1),
        ("openid", 10),
        ("device", 3),
    )
    assert policy.review == ("card",)
    assert policy.as_script_argument()["limits"][5] == ["device", 3]


@pytest.mark.parametrize(
    ("limits", "review", "message"),
    [
        ("fax=1", "", "expected KIND=N"),
        ("phone", "", "expected KIND=N"),
        ("phone=x", "", "expected KIND=N"),
        ("phone=0", "", "at least 1"),
        ("", "card,email", "unknown email"),
    ],
)
def test_a_bad_policy_is_a_clear_error(limits: str, review: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IdentityPolicy.parse(limits, review)


def test_a_bad_policy_fails_at_settings_time() -> None:
    with pytest.raises(ValidationError, match="expected KIND=N"):
        Settings(identity_limits="phones=1")


def test_keys_are_ordered_card_phone_unionid_app_openid_device() -> None:
    keys = ("device:d", "openid:a:o", "app:x", "unionid:u", "phone:h", "card:c", "device:e")
    assert by_priority(keys) == (
        "card:c",
        "phone:h",
        "unionid:u",
        "app:x",
        "openid:a:o",
        "device:d",
        "device:e",
    )


def test_the_configured_blocklist_refuses_values_case_and_space_insensitively() -> None:
    configured = rules(Settings(identifier_blocklist="TEST-CARD, guest ", phone_hash_key="k"))
    assert configured.extra_illegal_identifiers == frozenset({"TEST-CARD", "guest"})
    for value in ("test-card", " GUEST "):
        with pytest.raises(InvalidTouchpoint) as info:
            identity_key(
                Identifier(kind=IdentifierKind.member_card, value=value),
                configured.phone_key,
                configured.extra_illegal_identifiers,
            )
        assert info.value.reason == "illegal_value"
    ok = identity_key(
        Identifier(kind=IdentifierKind.member_card, value="C1"),
        configured.phone_key,
        configured.extra_illegal_identifiers,
    )
    assert ok.key == "card:C1"


def test_campaign_budgets_parse_counts_and_yuan() -> None:
    assert parse_budgets(" CMP-1=500:0, CMP-2=0:1999.50 ") == {
        "CMP-1": Budget(500, 0),
        "CMP-2": Budget(0, 199950),
    }
    assert parse_budgets("") == {}


@pytest.mark.parametrize("text", ["CMP-1", "CMP-1=5", "=5:0", "CMP-1=x:0", "CMP-1=-1:0"])
def test_a_bad_campaign_budget_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="campaign budget"):
        parse_budgets(text)


def test_delivery_locations_parse_and_sort_by_distance() -> None:
    rules_ = Rules(
        phone_key=b"k",
        delivery_locations=parse_locations("BJ=39.90:116.40, SH=31.23:121.47,GZ=23.13:113.26"),
    )
    assert rules_.nearest(31.0, 121.0) == ("SH", "BJ", "GZ")  # an address near Shanghai
    assert rules_.nearest(22.5, 114.0) == ("GZ", "SH", "BJ")  # near Shenzhen
    assert rules_.nearest(None, None) == ("BJ", "SH", "GZ")  # no coordinates: as configured
    assert round(distance_km(31.23, 121.47, 39.90, 116.40)) == 1067


@pytest.mark.parametrize("text", ["", "WH", "WH=1", "WH=x:1", "WH=91:0", "=1:2"])
def test_bad_delivery_locations_are_clear_errors(text: str) -> None:
    with pytest.raises(ValueError, match="delivery location"):
        parse_locations(text)
