"""The generated writer never writes bytes fastavro would not; the codec reads the same
message the same way whatever it read before."""

from __future__ import annotations

import copy
import io
import struct
from decimal import Decimal

import fastavro
import pytest

from schemas import codec
from schemas.codec import encode, encode_body
from schemas.contract import contract, expanded_source, load_schema_info

from .factories import FULL


def test_a_missing_timestamp_is_refused_as_fastavro_refuses_it() -> None:
    record = FULL["points_entry"]().to_avro()
    record["event_time"] = None
    info = contract().schema("points_entry")
    with pytest.raises((TypeError, ValueError)):
        fastavro.schemaless_writer(io.BytesIO(), info.parsed, record)
    with pytest.raises((TypeError, ValueError)):
        encode("points_entry", record)  # the generated writer writes no bytes for it


class Registry:
    def __init__(self, info):
        self.info = info

    def schema_for_id(self, schema_id: int):
        return self.info


def test_a_message_reads_the_same_whatever_the_worker_read_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule 5: money's precision may grow, and precision is not part of the fingerprint.
    A producer that grew store_scan.paid_amount to 18 digits registers that schema; the
    worker reads with the writer's schema from the registry. The generated readers are
    cached by fingerprint, so once the worker has read one message of the shipped
    14-digit schema, the 18-digit writer's amounts are read with 14 digits: rounded."""
    source = copy.deepcopy(expanded_source("store_scan"))
    paid = next(f for f in source["fields"] if f["name"] == "paid_amount")
    paid["type"] = {**paid["type"], "precision": 18}
    grown = load_schema_info("store_scan", source)
    assert grown.fingerprint == contract().schema("store_scan").fingerprint
    record = {**FULL["store_scan"]().to_avro(), "paid_amount": Decimal("1234567890123456.78")}
    framed = struct.pack(">bI", 0, 1) + encode_body(grown, record)

    monkeypatch.setattr(codec, "_READERS", {})
    fresh = codec.decode(framed, Registry(grown))[1]["paid_amount"]

    monkeypatch.setattr(codec, "_READERS", {})
    codec.decode(encode("store_scan", FULL["store_scan"]().to_avro()))  # any shipped message
    after_a_shipped_one = codec.decode(framed, Registry(grown))[1]["paid_amount"]

    assert fresh == Decimal("1234567890123456.78")
    assert after_a_shipped_one == fresh
