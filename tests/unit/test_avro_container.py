"""The Avro container the sink hands ClickHouse: any Avro reader gets back exactly the
records the workers wrote, with the logical types ClickHouse maps to its columns; and the
header check names a message's writer schema without reading its body."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import fastavro
import pytest

from connectors.clickhouse import avro_fit
from schemas.codec import (
    DecodeError,
    avro_container,
    encode,
    encode_body,
    writer_schema,
)
from schemas.contract import contract

BASE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def fact(n: int) -> dict:
    return {
        "event_id": f"e{n}", "touchpoint_type": "store_scan",
        "event_time": BASE + timedelta(seconds=n, milliseconds=123),
        "processed_time": BASE + timedelta(minutes=1, seconds=n), "channel": "store",
        "store_id": "S001", "one_id": f"O{n}", "new_member": n % 2 == 0, "order_id": "",
        "campaign_id": "", "room_id": "", "quantity": n, "amount": Decimal(f"{n}.25"),
        "points": -n, "source_topic": "t", "source_partition": 3, "source_offset": 10**12 + n,
        "outcome": "", "attribution": "livestream:R1" if n % 3 else "",
        "order_status": "cancelled" if n % 5 == 0 else "",
    }  # fmt: skip


def test_a_reader_gets_back_every_record_as_written() -> None:
    records = [fact(n) for n in range(1, 200)]
    bodies = [encode("touchpoint_fact", r)[10:] for r in records]
    container = avro_container("touchpoint_fact", bodies)
    reader = fastavro.reader(io.BytesIO(container))
    assert list(reader) == records
    # the schema it carries keeps the logical types (ClickHouse maps columns by them)
    fields = {f["name"]: f["type"] for f in reader.writer_schema["fields"]}
    assert fields["amount"] == {
        "type": "bytes", "logicalType": "decimal", "precision": 14, "scale": 2
    }  # fmt: skip
    assert fields["event_time"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_every_record_is_its_own_block() -> None:
    bodies = [encode("touchpoint_fact", fact(n))[10:] for n in (1, 2, 3)]
    container = avro_container("touchpoint_fact", bodies)
    blocks = list(fastavro.block_reader(io.BytesIO(container)))
    assert [b.num_records for b in blocks] == [1, 1, 1]
    assert avro_container("touchpoint_fact", bodies) == container  # same records, same bytes
    assert list(fastavro.reader(io.BytesIO(avro_container("touchpoint_fact", [])))) == []


def test_the_header_names_the_writer_schema_without_reading_the_body() -> None:
    current = contract().schema("touchpoint_fact")
    payload = encode("touchpoint_fact", fact(1))
    info, start = writer_schema(payload)
    assert (info.type_name, info.fingerprint, start) == ("touchpoint_fact", current.fingerprint, 10)
    # a body that would not decode still has a readable header
    assert writer_schema(payload[:12])[0] is info
    # an earlier version of the schema is named as such
    earlier = next(
        i for i in contract().by_fingerprint.values()
        if i.type_name == "touchpoint_fact" and i.fingerprint != current.fingerprint
    )  # fmt: skip
    old = b"\xc3\x01" + earlier.fingerprint + encode_body(earlier, fact(1))
    assert writer_schema(old)[0].fingerprint == earlier.fingerprint


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown_fingerprint"),
        (b"\x00\x00\x00\x00\x07\x02", "unknown_schema_id"),
        (b"{}", "bad_magic"),
    ],
)
def test_a_header_that_names_no_schema_is_a_decode_error(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        writer_schema(payload)
    assert info.value.reason == reason


#: the columns of the sink's tables as ClickHouse's system.columns names their types
FACT_COLUMNS = {
    "event_id": "String", "touchpoint_type": "LowCardinality(String)",
    "event_time": "DateTime64(3, 'UTC')", "processed_time": "DateTime64(3, 'UTC')",
    "channel": "LowCardinality(String)", "store_id": "LowCardinality(String)",
    "one_id": "String", "new_member": "Bool", "order_id": "String",
    "campaign_id": "LowCardinality(String)", "room_id": "LowCardinality(String)",
    "quantity": "Int32", "amount": "Decimal(14, 2)", "points": "Int64",
    "source_topic": "LowCardinality(String)", "source_partition": "UInt16",
    "source_offset": "UInt64", "outcome": "LowCardinality(String)",
    "attribution": "String", "order_status": "String",
}  # fmt: skip


def fields(type_name: str) -> list:
    return contract().schema(type_name).parsed["fields"]  # type: ignore[no-any-return]


def test_records_fit_columns_that_take_every_value_as_written() -> None:
    assert avro_fit(fields("touchpoint_fact"), FACT_COLUMNS) == {"amount": 14}
    wider = {**FACT_COLUMNS, "amount": "Decimal(18, 2)"}
    assert avro_fit(fields("touchpoint_fact"), wider) == {"amount": 18}


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("event_time", "DateTime('UTC')"),  # whole seconds: millis would be read as seconds
        ("event_time", "DateTime64(6, 'UTC')"),
        ("amount", "Decimal(14, 4)"),  # another scale: other digits
        ("amount", "Float64"),
    ],
)
def test_records_do_not_fit_a_column_that_would_change_a_value(column: str, kind: str) -> None:
    assert avro_fit(fields("touchpoint_fact"), {**FACT_COLUMNS, column: kind}) is None


def test_the_per_minute_rows_do_not_fit_their_whole_second_minutes() -> None:
    minute_columns = {f["name"]: "UInt64" for f in fields("minute_aggregate")}
    minute_columns.update(
        minute="DateTime('UTC')", channel="LowCardinality(String)", gmv="Decimal(18, 2)",
        refunds="Decimal(18, 2)", processed_time="DateTime64(3, 'UTC')",
    )  # fmt: skip
    assert avro_fit(fields("minute_aggregate"), minute_columns) is None
