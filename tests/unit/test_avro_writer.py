"""The generated writers write exactly fastavro's bytes, and whatever they do not write
ends exactly as fastavro says (the codec hands it over)."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from schemas.avro_writer import compile_writer
from schemas.codec import encode_body
from schemas.contract import INTERNAL_TYPES, contract

OUTPUT_TYPES = sorted(INTERNAL_TYPES)
LONGS = [0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 2**31 - 1, -(2**31),
         2**63 - 1, -(2**63), 1_732_000_000_000]  # fmt: skip
STRINGS = ["", "a", "store_scan", "门店-上海-001", "🧧 red envelope", "x" * 200, "\x00"]
ZONES = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]


def fastavro_body(parsed: Any, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def random_value(rng: random.Random, schema: Any, moments: list[datetime]) -> Any:
    kind = (schema.get("logicalType") or schema["type"]) if isinstance(schema, dict) else schema
    if kind == "string":
        return rng.choice([*STRINGS, "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(9))])
    if kind in ("int", "long"):
        return rng.choice([*LONGS, rng.randrange(-(2**40), 2**40)])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "timestamp-millis":
        if rng.random() < 0.5:  # records of a batch share one datetime object
            return rng.choice(moments)
        return datetime(1969, 1, 1, tzinfo=UTC) + timedelta(
            days=rng.randrange(0, 30_000), microseconds=rng.randrange(0, 86_400_000_000)
        )
    if kind == "decimal":
        digits = rng.randrange(0, 10 ** rng.randrange(1, 13))
        exponent = -rng.randrange(0, schema.get("scale", 0) + 1)
        return Decimal((rng.random() < 0.3, tuple(map(int, str(digits))), exponent))
    if kind == "array":
        return [random_value(rng, schema["items"], moments) for _ in range(rng.randrange(0, 4))]
    raise AssertionError(f"no generator for {schema}")


def random_record(rng: random.Random, parsed: Any, moments: list[datetime]) -> dict:
    return {f["name"]: random_value(rng, f["type"], moments) for f in parsed["fields"]}


@pytest.mark.parametrize("type_name", OUTPUT_TYPES)
def test_every_output_schema_gets_a_writer_that_writes_fastavros_bytes(type_name: str) -> None:
    parsed = contract().schema(type_name).parsed
    write = compile_writer(parsed)
    assert write is not None
    rng = random.Random(type_name)
    moments = [datetime(2026, 11, 30, 12, 0, 0, 999_999, tzinfo=zone) for zone in ZONES]
    for _ in range(3000):
        record = random_record(rng, parsed, moments)
        assert write(record) == fastavro_body(parsed, record), record


def test_input_schemas_have_no_writer_and_go_through_fastavro() -> None:
    # unions and nested records: not generated
    assert compile_writer(contract().schema("app_order").parsed) is None
    assert compile_writer({"type": "record", "name": "r", "fields": [
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}}]}) is None  # fmt: skip


def a_fact() -> dict:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return {
        "event_id": "e-1", "touchpoint_type": "store_scan", "event_time": now,
        "processed_time": now, "channel": "store", "store_id": "S1", "one_id": "O-1",
        "new_member": False, "order_id": "", "campaign_id": "", "room_id": "", "quantity": 2,
        "amount": Decimal("129.90"), "points": 129, "source_topic": "omni.store_scan",
        "source_partition": 0, "source_offset": 7, "outcome": "", "attribution": "",
        "order_status": "",
    }  # fmt: skip


ODD = [
    ("amount", None),  # fastavro passes non-decimals through, then refuses None as bytes
    ("amount", Decimal("1.234")),  # finer than the schema's scale
    ("amount", Decimal("123456789012345")),  # more digits than its precision
    ("amount", Decimal("1E+14")),  # fastavro counts the digits as written: this one passes
    ("amount", Decimal("NaN")),
    ("amount", b"\x01\x02"),  # bytes already: written as they are
    ("event_time", 1_732_000_000_000),  # an int where a timestamp goes: written as it is
    ("event_time", datetime(2026, 11, 30, 12, 0)),  # naive: fastavro reads it as local time
    ("quantity", 2.0),
    ("quantity", "2"),
    ("quantity", 2**63),
    ("points", True),
    ("one_id", None),
    ("one_id", b"O-1"),
    ("new_member", None),
    ("new_member", "yes"),
    ("order_id", ...),  # missing: fastavro writes the field's default
]


@pytest.mark.parametrize(("field", "value"), ODD, ids=[f"{f}={v!r}" for f, v in ODD])
def test_odd_values_end_exactly_as_fastavro_says(field: str, value: Any) -> None:
    info = contract().schema("touchpoint_fact")
    record = a_fact()
    if value is ...:
        del record[field]
    else:
        record[field] = value
    assert outcome(encode_body, info, record) == outcome(fastavro_body, info.parsed, record)


def outcome(write: Any, *args: Any) -> bytes | type[Exception]:
    """The bytes written, or the type of the exception raised."""
    try:
        return write(*args)
    except Exception as exc:
        return type(exc)


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", b"\x01\x02"), ("event_time", 1_732_000_000_000),
     ("event_time", datetime(2026, 11, 30, 12, 0)), ("quantity", 2.0), ("order_id", ...)],
)  # fmt: skip
def test_the_writer_refuses_what_fastavro_writes_its_own_way(field: str, value: Any) -> None:
    write = compile_writer(contract().schema("touchpoint_fact").parsed)
    assert write is not None
    record = a_fact()
    if value is ...:
        del record[field]
    else:
        record[field] = value
    with pytest.raises((TypeError, KeyError, AttributeError, ValueError, OverflowError)):
        write(record)
