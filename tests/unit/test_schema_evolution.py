"""An old reader reads new records and a new reader reads old ones, through the codec's
schema resolution; a change that breaks the rules is refused, not misread."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest

from schemas.codec import DecodeError, decode, encode_body
from schemas.contract import SchemaInfo, contract, expanded_source, load_schema_info
from schemas.models import StoreScan

from .factories import full_store_scan


class Registry:
    """Writer schemas by id, as a schema registry would hold them."""

    def __init__(self, *schemas: SchemaInfo):
        self.schemas = dict(enumerate(schemas, start=1))

    def schema_for_id(self, schema_id: int) -> SchemaInfo | None:
        return self.schemas.get(schema_id)


def framed(schema_id: int, info: SchemaInfo, record: dict[str, Any]) -> bytes:
    return struct.pack(">bI", 0, schema_id) + encode_body(info, record)


def store_scan_version(change: Any) -> SchemaInfo:
    source = copy.deepcopy(expanded_source("store_scan"))
    change(source)
    return load_schema_info("store_scan", source)


def without_payment_method() -> tuple[SchemaInfo, dict[str, Any]]:
    """The previous version of store_scan (no payment_method: the current one adds it with
    a default), and a record of it."""

    def drop_payment_method(source: dict) -> None:
        source["fields"] = [f for f in source["fields"] if f["name"] != "payment_method"]

    record = full_store_scan().to_avro()
    record.pop("payment_method")
    return store_scan_version(drop_payment_method), record


def test_new_reader_reads_records_written_before_a_field_was_added() -> None:
    old, record = without_payment_method()
    type_name, read = decode(framed(1, old, record), Registry(old))
    assert type_name == "store_scan"
    assert read["payment_method"] == "other"  # the default
    assert StoreScan.model_validate(read).store_id == record["store_id"]


def test_old_reader_reads_records_of_a_newer_writer() -> None:
    def add_loyalty_tier(source: dict) -> None:
        source["fields"].append(
            {"name": "loyalty_tier", "type": ["null", "string"], "default": None}
        )

    new = store_scan_version(add_loyalty_tier)
    record = {**full_store_scan().to_avro(), "loyalty_tier": "gold"}
    _, read = decode(framed(7, new, record), Registry(*([new] * 7)))
    assert "loyalty_tier" not in read
    assert StoreScan.model_validate(read) == full_store_scan()


def test_a_field_added_without_default_cannot_read_old_records() -> None:
    # what rule 1 forbids: the current reader would need a value old records lack
    def add_required(source: dict) -> None:
        source["fields"].append({"name": "till_id", "type": "string"})

    newer_reader = store_scan_version(add_required)
    current = contract().schema("store_scan")
    payload = framed(1, current, full_store_scan().to_avro())
    with pytest.raises(DecodeError) as caught:
        from schemas import codec

        codec._read_body(current, payload, 5, reader=newer_reader)
    assert caught.value.reason == "incompatible_schema"


def test_a_body_of_an_earlier_schema_that_is_not_avro_is_refused() -> None:
    # read through schema resolution (fastavro), which would take a boolean byte of 2 as
    # true: the earlier schema's own reader refuses it first
    old, record = without_payment_method()
    given = framed(1, old, record)
    assert record["envelope"]["consent"]["marketing"] is True
    record["envelope"]["consent"]["marketing"] = False
    at = next(
        i for i, (x, y) in enumerate(zip(given, framed(1, old, record), strict=True)) if x != y
    )
    assert given[at] == 1
    with pytest.raises(DecodeError) as caught:
        decode(given[:at] + b"\x02" + given[at + 1 :], Registry(old))
    assert (caught.value.reason, caught.value.detail) == ("bad_avro", "store_scan: boolean byte")


def test_a_registered_copy_of_the_current_schema_reads_as_the_shipped_one() -> None:
    current = contract().schema("store_scan")
    copy_of_it = load_schema_info("store_scan", copy.deepcopy(expanded_source("store_scan")))
    assert copy_of_it is not current and copy_of_it.fingerprint == current.fingerprint
    _, read = decode(framed(1, copy_of_it, full_store_scan().to_avro()), Registry(copy_of_it))
    assert StoreScan.model_validate(read) == full_store_scan()
