"""Every way a message can fail to decode ends in a ``DecodeError`` with a stable reason."""

from __future__ import annotations

import pytest

from schemas.avro_writer import long_bytes
from schemas.codec import DecodeError, decode, encode, encode_body
from schemas.contract import SchemaInfo, contract
from schemas.models import Consent

from .factories import envelope, inventory_adjustment, livestream_click, order_status, store_scan


class Registry:
    """A schema registry stand-in: knows one id, and remembers what it was asked."""

    def __init__(self, known: dict[int, SchemaInfo]) -> None:
        self.known = known
        self.asked: list[int] = []

    def schema_for_id(self, schema_id: int) -> SchemaInfo | None:
        self.asked.append(schema_id)
        return self.known.get(schema_id)


def _reason(payload: bytes | None, resolver: Registry | None = None) -> str:
    with pytest.raises(DecodeError) as info:
        decode(payload, resolver)
    return info.value.reason


def _valid() -> bytes:
    return encode("store_scan", store_scan().to_avro())


def _confluent(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


# -- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", None], ids=["empty-bytes", "none"])
def test_empty(payload: bytes | None) -> None:
    assert _reason(payload) == "empty"


def test_bad_magic() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b"\x7bxx")
    assert info.value.reason == "bad_magic"
    assert info.value.detail == "first byte 0x7b is neither C3 01 nor 00"
    assert str(info.value) == "bad_magic: first byte 0x7b is neither C3 01 nor 00"


def test_c3_without_01_is_bad_magic() -> None:
    assert _reason(b"\xc3\x02" + bytes(20)) == "bad_magic"


@pytest.mark.parametrize("length", [2, 5, 9])
def test_short_single_object_header_is_truncated(length: int) -> None:
    header = b"\xc3\x01" + contract().schema("store_scan").fingerprint
    with pytest.raises(DecodeError) as info:
        decode(header[:length])
    assert info.value.reason == "truncated"
    assert info.value.detail == f"single-object header needs 10 bytes, got {length}"


def test_bare_header_is_a_truncated_body() -> None:
    header = b"\xc3\x01" + contract().schema("store_scan").fingerprint
    with pytest.raises(DecodeError) as info:
        decode(header)
    assert (info.value.reason, info.value.detail) == ("truncated", "store_scan: body ends early")


def test_unknown_fingerprint() -> None:
    raw = _valid()
    unknown = bytes(8)
    assert unknown not in contract().by_fingerprint
    with pytest.raises(DecodeError) as info:
        decode(raw[:2] + unknown + raw[10:])
    assert info.value.reason == "unknown_fingerprint"
    assert info.value.detail == "no shipped schema has fingerprint 0000000000000000"


def test_fingerprint_of_another_type_reads_the_body_with_that_schema() -> None:
    raw = _valid()
    other = contract().schema("livestream_click").fingerprint
    # the store_scan body read as a livestream_click meets a length that is not Avro
    with pytest.raises(DecodeError) as info:
        decode(raw[:2] + other + raw[10:])
    assert (info.value.reason, info.value.detail) == (
        "bad_avro",
        "livestream_click: negative length",
    )


# -- bodies ----------------------------------------------------------------------------------


def test_message_cut_in_half_is_truncated() -> None:
    raw = _valid()
    assert len(raw) == 117
    half = raw[: len(raw) // 2]
    # the cut falls inside the phone number: its length (11 -> zigzag 0x16) says 11 bytes
    # follow, only 1 does
    assert half[-2:] == b"\x161"
    with pytest.raises(DecodeError) as info:
        decode(half)
    assert (info.value.reason, info.value.detail) == ("truncated", "store_scan: body ends early")


def test_message_cut_at_a_field_boundary_is_truncated() -> None:
    raw = _valid()
    # header, then event_id "evt-0001" (0x10 = length 8): cut right after it
    assert raw[10:19] == b"\x10evt-0001"
    assert _reason(raw[:19]) == "truncated"


def test_message_cut_inside_a_varint_is_truncated() -> None:
    raw = _valid()
    # event_time starts at byte 19 as a 6-byte varint; its first byte has the continuation bit
    assert raw[19] & 0x80
    assert _reason(raw[:20]) == "truncated"


def test_trailing_bytes() -> None:
    with pytest.raises(DecodeError) as info:
        decode(_valid() + b"\x00\x01\x02")
    assert info.value.reason == "trailing_bytes"
    assert info.value.detail == "store_scan: 3 bytes after record"


def _body_with_event_id(event_id: bytes) -> bytes:
    """A store_scan message whose envelope.event_id is the given raw bytes: the event_id is
    the first field of the body, written as zigzag-varint length + bytes."""
    raw = encode("store_scan", store_scan(envelope=envelope(event_id="ab")).to_avro())
    assert raw[10:13] == b"\x04ab"  # zigzag(2) == 4
    assert len(event_id) == 2
    return raw[:11] + event_id + raw[13:]


def test_hand_crafted_body_decodes_when_the_string_is_utf8() -> None:
    type_name, record = decode(_body_with_event_id("é".encode()))
    assert type_name == "store_scan"
    assert record["envelope"]["event_id"] == "é"
    assert record["store_id"] == "S001"


def test_string_that_is_not_utf8() -> None:
    with pytest.raises(DecodeError) as info:
        decode(_body_with_event_id(b"\xff\xfe"))
    assert info.value.reason == "bad_utf8"
    assert info.value.detail == "store_scan: string is not UTF-8 (invalid start byte)"


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^empty: message has no value$"):
        decode(b"")


def _at_first_difference(a: bytes, b: bytes, replacement: bytes) -> bytes:
    """``a`` with the byte where ``a`` and ``b`` first differ replaced."""
    at = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return a[:at] + replacement + a[at + 1 :]


def _click(**fields: object) -> bytes:
    return encode("livestream_click", livestream_click(**fields).to_avro())


# each replaces one byte a valid message holds: the last union's branch (sku is None, the
# body's last byte), an enum's symbol, a boolean
NOT_AVRO = {
    "union branch -1": lambda: _click(sku=None)[:-1] + long_bytes(-1) + b"\x02a",
    "union branch -2": lambda: _click(sku=None)[:-1] + long_bytes(-2),
    "union branch 2": lambda: _click(sku=None)[:-1] + long_bytes(2),
    "enum symbol -1": lambda: _at_first_difference(
        encode("order_status", order_status(status="paid").to_avro()),
        encode("order_status", order_status(status="cancelled").to_avro()),
        long_bytes(-1),
    ),
    "enum symbol 7": lambda: _at_first_difference(
        encode("inventory_adjustment", inventory_adjustment(kind="receipt").to_avro()),
        encode("inventory_adjustment", inventory_adjustment(kind="count").to_avro()),
        long_bytes(7),
    ),
    "boolean byte 2": lambda: _at_first_difference(
        _click(envelope=envelope(consent=Consent(marketing=False))),
        _click(envelope=envelope(consent=Consent(marketing=True))),
        b"\x02",
    ),
}


@pytest.mark.parametrize("corrupt", NOT_AVRO.values(), ids=NOT_AVRO.keys())
def test_bytes_that_are_not_avro_are_refused_not_read_as_another_value(corrupt) -> None:
    # fastavro alone reads a negative index from the end of the symbols or branches, any
    # non-zero boolean byte as true, and calls an index past the end "truncated"
    with pytest.raises(DecodeError) as info:
        decode(corrupt())
    assert info.value.reason == "bad_avro"


# -- Confluent framing -------------------------------------------------------------------------


def test_confluent_without_resolver_is_an_unknown_schema_id() -> None:
    body = encode_body(contract().schema("store_scan"), store_scan().to_avro())
    with pytest.raises(DecodeError) as info:
        decode(_confluent(7, body))
    assert info.value.reason == "unknown_schema_id"
    assert info.value.detail == "schema id 7 is not known"


def test_confluent_id_the_resolver_does_not_know() -> None:
    registry = Registry({42: contract().schema("store_scan")})
    body = encode_body(contract().schema("store_scan"), store_scan().to_avro())
    assert _reason(_confluent(43, body), registry) == "unknown_schema_id"
    assert registry.asked == [43]


@pytest.mark.parametrize("payload", [b"\x00", b"\x00\x00", b"\x00\x00\x00\x2a"])
def test_short_confluent_header_is_truncated(payload: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload, Registry({42: contract().schema("store_scan")}))
    assert info.value.reason == "truncated"
    assert info.value.detail == f"Confluent header needs 5 bytes, got {len(payload)}"


def test_confluent_body_decodes_with_the_resolved_schema() -> None:
    info = contract().schema("store_scan")
    registry = Registry({42: info})
    record = store_scan().to_avro()
    body = encode_body(info, record)
    payload = b"\x00" + (42).to_bytes(4, "big") + body
    assert payload[:5] == b"\x00\x00\x00\x00\x2a"
    type_name, decoded = decode(payload, registry)
    assert type_name == "store_scan"
    assert decoded == record
    assert registry.asked == [42]
    # the schemaless body is the single-object body without its 10-byte header
    assert body == encode("store_scan", record)[10:]


def test_confluent_body_with_trailing_bytes() -> None:
    info = contract().schema("store_scan")
    body = encode_body(info, store_scan().to_avro())
    with pytest.raises(DecodeError) as info_:
        decode(_confluent(42, body + b"xyz"), Registry({42: info}))
    assert info_.value.reason == "trailing_bytes"
    assert info_.value.detail == "store_scan: 3 bytes after record"


def test_confluent_body_cut_short() -> None:
    info = contract().schema("store_scan")
    body = encode_body(info, store_scan().to_avro())
    assert _reason(_confluent(42, body[:9]), Registry({42: info})) == "truncated"
