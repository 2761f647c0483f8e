"""Identifier normalisation: phones to E.164 and HMAC, scoped openids, illegal values,
shared devices, and the operator's TYPE:VALUE look-ups."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from schemas.models import DeviceRole, Identifier, IdentifierKind
from streams.core import identity
from streams.core.errors import InvalidTouchpoint
from streams.core.identity import (
    IdentityKey,
    identity_key,
    normalise_phone,
    parse_lookup,
    parse_phone,
)

KEY = b"k"


def _hmac(e164: str, key: bytes = KEY) -> str:
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()[:32]


def _ident(kind: IdentifierKind, value: str, **fields: object) -> Identifier:
    return Identifier(kind=kind, value=value, **fields)


def _invalid(call: object, *args: object) -> InvalidTouchpoint:
    with pytest.raises(InvalidTouchpoint) as info:
        call(*args)  # type: ignore[operator]
    return info.value


# -- phones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "+86 138-0013-8000", "+8613800138000", "138 0013 8000", "(138) 0013.8000"],
)
def test_normalise_phone_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


def test_normalise_phone_keeps_a_foreign_country_code() -> None:
    assert normalise_phone("+1 650 253 0000") == "+16502530000"


@pytest.mark.parametrize("raw", ["00000000000", "11111111111", "888-8888-8888"])
def test_run_of_one_digit_is_an_illegal_value(raw: str) -> None:
    exc = _invalid(normalise_phone, raw)
    assert (exc.field, exc.reason, exc.detail) == (
        "identifiers.phone",
        "illegal_value",
        "a run of one digit",
    )


@pytest.mark.parametrize("raw", ["+86 11111111111", "+86 00000000000", "008611111111111"])
def test_run_of_one_digit_with_country_code_is_an_illegal_value(raw: str) -> None:
    assert _invalid(normalise_phone, raw).reason == "illegal_value"


@pytest.mark.parametrize("raw", ["abc", "12", "138001380001234567"])
def test_not_a_phone_number(raw: str) -> None:
    exc = _invalid(normalise_phone, raw)
    assert (exc.field, exc.reason, exc.detail) == ("identifiers.phone", "not_a_phone_number", "")


@pytest.mark.parametrize("raw", ["00000000000", "11111111111", "138001380001234567", "12"])
def test_phone_errors_never_echo_the_digits(raw: str) -> None:
    for exc in (
        _invalid(normalise_phone, raw),
        _invalid(identity_key, _ident(IdentifierKind.phone, raw), KEY),
    ):
        for text in (str(exc), exc.detail, *map(str, exc.args)):
            assert not re.search(r"\d\d", text), text


def _read(call: Callable[[str], str], raw: str) -> str:
    try:
        return call(raw)
    except InvalidTouchpoint as exc:
        return f"{exc.reason}: {exc.detail}"


def test_mainland_mobiles_read_without_the_parser_as_the_parser_reads_them() -> None:
    """The shortcut for 11-digit mainland mobiles gives what the parser alone gives, errors
    included: every prefix 100-199, random numbers, written as sources write them."""
    rng = random.Random(86)
    fullwidth = str.maketrans("0123456789", "０１２３４５６７８９")
    # every five-digit start (the parser reads some, as 179xx, as a carrier code), half of
    # them followed by 00, which is where that reading differs
    for start in range(10_000, 20_000):
        number = f"{start}{'00' if start % 2 else ''}".ljust(11, "0")
        number = number[:7] + f"{rng.randrange(10**4):04d}"
        for raw, digits in (
            (number, number),
            ("+86" + number, "+86" + number),
            (f"+86 {number[:3]}-{number[3:7]}-{number[7:]}", "+86" + number),
            (f"({number[:3]}) {number[3:]}", number),
            (wide := number[:3] + number[3:].translate(fullwidth), wide),
        ):
            assert _read(normalise_phone, raw) == _read(parse_phone, digits), raw


def test_a_mainland_mobile_skips_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    monkeypatch.setattr(identity, "parse_phone", lambda digits, region: parsed.append(digits))
    assert normalise_phone("+86 138-0013-8000") == normalise_phone("13800138000")
    assert normalise_phone("13800138000") == "+8613800138000"
    assert parsed == []
    for raw in ("17912345678", "+1 650 253 0000", "008613800138000", "1380013800"):
        normalise_phone(raw)
    assert parsed == ["17912345678", "+16502530000", "008613800138000", "1380013800"]


# -- identity keys -----------------------------------------------------------------------------


def test_phone_key_is_the_hmac_of_the_e164_form() -> None:
    key = identity_key(_ident(IdentifierKind.phone, "13800138000"), KEY)
    assert re.fullmatch(r"phone:[0-9a-f]{32}", key.key)
    assert key == IdentityKey(f"phone:{_hmac('+8613800138000')}", IdentifierKind.phone)
    assert "13800138000" not in key.key


def test_phone_key_depends_on_the_hmac_key_only() -> None:
    one = identity_key(_ident(IdentifierKind.phone, "13800138000"), b"key-one").key
    same = identity_key(_ident(IdentifierKind.phone, "+86 138-0013-8000"), b"key-one").key
    other = identity_key(_ident(IdentifierKind.phone, "13800138000"), b"key-two").key
    assert one == same
    assert one != other
    assert other == f"phone:{_hmac('+8613800138000', b'key-two')}"


def test_different_phones_have_different_keys() -> None:
    a = identity_key(_ident(IdentifierKind.phone, "13800138000"), KEY).key
    b = identity_key(_ident(IdentifierKind.phone, "13800138001"), KEY).key
    assert a != b


def test_openid_is_scoped_by_its_app() -> None:
    a = identity_key(_ident(IdentifierKind.openid, "o123", app_id="wx-a"), KEY)
    b = identity_key(_ident(IdentifierKind.openid, "o123", app_id="wx-b"), KEY)
    assert a == IdentityKey("openid:wx-a:o123", IdentifierKind.openid)
    assert b.key == "openid:wx-b:o123"
    assert a.key != b.key


def test_openid_and_app_id_are_stripped() -> None:
    key = identity_key(_ident(IdentifierKind.openid, " o123 ", app_id=" wx-a "), KEY)
    assert key.key == "openid:wx-a:o123"


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (IdentifierKind.unionid, "u_1", "unionid:u_1"),
        (IdentifierKind.app_user, "app_7", "app:app_7"),
        (IdentifierKind.member_card, " C0001 ", "card:C0001"),
        (IdentifierKind.device, "dev-1", "device:dev-1"),
    ],
)
def test_global_kinds(kind: IdentifierKind, value: str, expected: str) -> None:
    assert identity_key(_ident(kind, value), KEY) == IdentityKey(expected, kind, False)


@pytest.mark.parametrize("value", ["null", "undefined", "0", "anonymous", "", "  NULL ", "N/A"])
@pytest.mark.parametrize(
    "kind", [IdentifierKind.member_card, IdentifierKind.phone, IdentifierKind.unionid]
)
def test_illegal_values(kind: IdentifierKind, value: str) -> None:
    exc = _invalid(identity_key, _ident(kind, value), KEY)
    assert exc.reason == "illegal_value"
    assert exc.field == f"identifiers.{kind.value}"


def test_illegal_openid_value() -> None:
    exc = _invalid(identity_key, _ident(IdentifierKind.openid, "undefined", app_id="wx-a"), KEY)
    assert (exc.field, exc.reason) == ("identifiers.openid", "illegal_value")


def test_openid_whose_app_id_is_a_placeholder() -> None:
    exc = _invalid(identity_key, _ident(IdentifierKind.openid, "o1", app_id="null"), KEY)
    assert (exc.field, exc.reason) == ("identifiers.openid.app_id", "missing_app_id")


@pytest.mark.parametrize("app_id", [None, ""])
def test_model_refuses_an_openid_without_app_id(app_id: str | None) -> None:
    with pytest.raises(ValidationError, match="an openid needs the app_id that issued it"):
        Identifier(kind=IdentifierKind.openid, value="o1", app_id=app_id)


def test_model_refuses_a_device_role_on_another_kind() -> None:
    with pytest.raises(ValidationError, match="device_role is only for kind=device"):
        Identifier(kind=IdentifierKind.phone, value="13800138000", device_role=DeviceRole.personal)


def test_extra_illegal_values() -> None:
    card = _ident(IdentifierKind.member_card, "TEST-CARD")
    assert identity_key(card, KEY).key == "card:TEST-CARD"
    exc = _invalid(identity_key, card, KEY, frozenset({"test-card"}))
    assert exc.reason == "illegal_value"


def test_extra_illegal_values_are_case_insensitive() -> None:
    card = _ident(IdentifierKind.member_card, "TEST-CARD")
    exc = _invalid(identity_key, card, KEY, frozenset({"TEST-CARD"}))
    assert exc.reason == "illegal_value"


@pytest.mark.parametrize(
    ("role", "shared"),
    [
        (DeviceRole.shared_store_device, True),
        (DeviceRole.guide_scanner, True),
        (DeviceRole.personal, False),
        (None, False),
    ],
)
def test_device_roles(role: DeviceRole | None, shared: bool) -> None:
    key = identity_key(_ident(IdentifierKind.device, "pad-01", device_role=role), KEY)
    assert key == IdentityKey("device:pad-01", IdentifierKind.device, shared)


# -- look-ups ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("phone:13800138000", f"phone:{_hmac('+8613800138000')}"),
        ("PHONE:+86 138-0013-8000", f"phone:{_hmac('+8613800138000')}"),
        ("unionid:u_1", "unionid:u_1"),
        ("openid:wx-a:o123", "openid:wx-a:o123"),
        ("card:C0001", "card:C0001"),
        ("member_card:C0001", "card:C0001"),
        ("app:app_7", "app:app_7"),
        ("app_user:app_7", "app:app_7"),
        ("device:dev-1", "device:dev-1"),
        ("oneid:O12", "oneid:O12"),
        ("OneID:O12", "oneid:O12"),
    ],
)
def test_parse_lookup(text: str, expected: str) -> None:
    assert parse_lookup(text, KEY) == expected


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        ("nocolon", "expected TYPE:VALUE", ""),
        ("card:", "expected TYPE:VALUE", ""),
        ("bogus:1", "unknown_type", "bogus"),
        ("card:null", "illegal_value", "a placeholder, not an identifier"),
        ("phone:abc", "not_a_phone_number", ""),
        ("openid:wx-a", "illegal_value", "a placeholder, not an identifier"),
    ],
)
def test_parse_lookup_errors(text: str, reason: str, detail: str) -> None:
    exc = _invalid(parse_lookup, text, KEY)
    assert (exc.reason, exc.detail) == (reason, detail)


@pytest.mark.parametrize(
    ("text", "field"),
    [("card:" + "x" * 300, "lookup.card"), ("phone:" + "1" * 300, "lookup.phone"),
     ("openid:wx-a:" + "o" * 300, "lookup.openid"), ("card:a\udc80b", "lookup.card")],
)  # fmt: skip
def test_a_lookup_the_model_refuses_is_invalid_touchpoint_without_its_value(
    text: str, field: str
) -> None:
    # (it was pydantic's ValidationError, a traceback in `omni member`, value and all)
    exc = _invalid(parse_lookup, text, KEY)
    assert exc.field == field
    assert text.split(":")[-1] not in str(exc) and "xxx" not in str(exc) and "111" not in str(exc)


def test_parse_lookup_openid_without_app_id_is_invalid_touchpoint() -> None:
    exc = _invalid(parse_lookup, "openid::o123", KEY)
    assert exc.reason == "missing_app_id"
