"""Identifier normalisation: every raw identifier becomes one *identity key*, the string
under which the identity graph knows it.

* phone -> E.164 (default region CN) -> HMAC-SHA256 with the configured key; only the
  hash is ever stored: ``phone:<hex>``.
* openid is scoped by the appid that issued it: ``openid:<appid>:<openid>``. Two openids
  of different apps are different keys even when the values are equal.
* unionid, app user id, member card and device id are global within their kind.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from pydantic import ValidationError

from schemas.models import DeviceRole, Identifier, IdentifierKind, describe_validation_error
from streams.core.errors import InvalidTouchpoint

#: Values sources send when they have nothing; never an identity.
ILLEGAL_VALUES = frozenset(
    {"", "null", "none", "nil", "undefined", "nan", "0", "-1", "anonymous", "unknown", "n/a", "na"}
)
_PREFIX = {
    IdentifierKind.phone: "phone",
    IdentifierKind.unionid: "unionid",
    IdentifierKind.openid: "openid",
    IdentifierKind.app_user: "app",
    IdentifierKind.member_card: "card",
    IdentifierKind.device: "device",
}
_SAME_DIGIT = re.compile(r"^(\d)\1+$")


class IdentityKey(NamedTuple):
    key: str
    kind: IdentifierKind
    #: True for devices whose role says several people use them: never a link between people.
    shared: bool = False


def hash_phone(e164: str, key: bytes) -> str:
    return hmac.new(key, e164.encode("ascii"), hashlib.sha256).hexdigest()[:32]


#: A mainland mobile number as most sources send it, 11 digits with or without +86: its
#: E.164 form is the number itself, known without the parser (which costs tens of
#: microseconds). 179 is left to the parser: some of its numbers read as a carrier code
#: and the rest. ASCII digits only: the parser reads others too, and writes them as
#: ASCII. tests/unit/test_identity.py checks that the two agree.
_CN_MOBILE = re.compile(r"(?:\+86)?(1(?:[3-68]\d|7[0-8]|9\d)\d{8})", re.ASCII)


def normalise_phone(raw: str, region: str = "CN") -> str:
    """E.164 form of ``raw`` or ``InvalidTouchpoint`` (the number itself is never echoed).
    Placeholder numbers (one digit repeated, with or without a country code) are illegal
    values, not phones: hashing them would merge every customer who typed one."""
    digits = re.sub(r"[\s\-().]", "", raw)
    if region == "CN" and (mobile := _CN_MOBILE.fullmatch(digits)):
        return "+86" + mobile.group(1)
    return parse_phone(digits, region)


def parse_phone(digits: str, region: str = "CN") -> str:
    """``normalise_phone`` of a number without separators, by the parser alone."""
    if _SAME_DIGIT.match(digits.lstrip("+")):
        raise InvalidTouchpoint("identifiers.phone", "illegal_value", "a run of one digit")
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        raise InvalidTouchpoint("identifiers.phone", "not_a_phone_number") from None
    national = str(number.national_number)
    if len(national) < 2 or _SAME_DIGIT.match(national):
        raise InvalidTouchpoint("identifiers.phone", "illegal_value", "a run of one digit")
    if not phonenumbers.is_possible_number(number):
        raise InvalidTouchpoint("identifiers.phone", "not_a_phone_number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


#: Phone identity keys computed lately: people come back, and parsing a number costs tens
#: of microseconds. Bounded (about 2-3 MB when full); failures are not cached.
PHONE_KEY_CACHE_SIZE = 8192


@lru_cache(maxsize=PHONE_KEY_CACHE_SIZE)
def phone_identity_key(value: str, phone_key: bytes) -> str:
    """``phone:<hash>`` of a stripped phone value; ``InvalidTouchpoint`` as
    ``normalise_phone``."""
    return f"phone:{hash_phone(normalise_phone(value), phone_key)}"


@lru_cache(maxsize=16)
def _normalised_blocklist(extra_illegal: frozenset[str]) -> frozenset[str]:
    return frozenset(extra.strip().lower() for extra in extra_illegal)


@lru_cache(maxsize=16)
def _blocked_phone_keys(extra_illegal: frozenset[str], phone_key: bytes) -> frozenset[str]:
    """The blocklist's phone numbers as identity keys: a number is blocked however it is
    written (+86 138 0013 8000, 138-0013-8000, ...). Entries that are no phone number
    are left to the plain comparison."""
    keys = set()
    for extra in extra_illegal:
        try:
            keys.add(phone_identity_key(extra.strip(), phone_key))
        except InvalidTouchpoint:
            continue
    return frozenset(keys)


def _illegal(ident: Identifier, why: str) -> InvalidTouchpoint:
    # the value itself is never echoed: a blocklisted one is often a person's number
    return InvalidTouchpoint(f"identifiers.{ident.kind.value}", "illegal_value", why)


def identity_key(
    ident: Identifier, phone_key: bytes, extra_illegal: frozenset[str] = frozenset()
) -> IdentityKey:
    value = ident.value.strip()
    lowered = value.lower()
    if lowered in ILLEGAL_VALUES:
        raise _illegal(ident, "a placeholder, not an identifier")
    if extra_illegal and lowered in _normalised_blocklist(extra_illegal):
        raise _illegal(ident, "on OMNI_IDENTIFIER_BLOCKLIST")
    if ident.kind == IdentifierKind.phone:
        key = phone_identity_key(value, phone_key)
        if extra_illegal and key in _blocked_phone_keys(extra_illegal, phone_key):
            raise _illegal(ident, "on OMNI_IDENTIFIER_BLOCKLIST")
        return IdentityKey(key, ident.kind)
    if ident.kind == IdentifierKind.openid:
        app_id = (ident.app_id or "").strip()
        if app_id.lower() in ILLEGAL_VALUES:
            raise InvalidTouchpoint("identifiers.openid.app_id", "missing_app_id")
        return IdentityKey(f"openid:{app_id}:{value}", ident.kind)
    shared = ident.kind == IdentifierKind.device and ident.device_role in (
        DeviceRole.shared_store_device,
        DeviceRole.guide_scanner,
    )
    return IdentityKey(f"{_PREFIX[ident.kind]}:{value}", ident.kind, shared)


#: the TYPEs of ``parse_lookup``, as an operator types them
_LOOKUP_KINDS = {
    "phone": IdentifierKind.phone,
    "unionid": IdentifierKind.unionid,
    "openid": IdentifierKind.openid,
    "app": IdentifierKind.app_user,
    "app_user": IdentifierKind.app_user,
    "card": IdentifierKind.member_card,
    "member_card": IdentifierKind.member_card,
    "device": IdentifierKind.device,
}
LOOKUP_TYPES = frozenset({*_LOOKUP_KINDS, "oneid"})


def parse_lookup(text: str, phone_key: bytes) -> str:
    """``TYPE:VALUE`` as typed by an operator (``phone:138...``, ``openid:APPID:OPENID``,
    ``card:...``, ``oneid:O12``) -> identity key, or ``oneid:<id>``."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise InvalidTouchpoint("lookup", "expected TYPE:VALUE")
    kind = kind.lower()
    if kind == "oneid":
        return f"oneid:{value}"
    if kind not in _LOOKUP_KINDS:
        # the type as typed, unless it could be a value (a phone before a stray colon)
        raise InvalidTouchpoint("lookup", "unknown_type", kind if kind.isidentifier() else "")
    try:
        if _LOOKUP_KINDS[kind] == IdentifierKind.openid:
            app_id, _, openid = value.partition(":")
            if not app_id.strip():
                raise InvalidTouchpoint("lookup", "missing_app_id", "write openid:APPID:OPENID")
            ident = Identifier(kind=IdentifierKind.openid, value=openid, app_id=app_id)
        else:
            ident = Identifier(kind=_LOOKUP_KINDS[kind], value=value)
    except ValidationError as exc:  # said without the value: it may be a phone number
        _, reason, detail = describe_validation_error(exc)
        raise InvalidTouchpoint(f"lookup.{kind}", reason, detail) from None
    return identity_key(ident, phone_key).key
