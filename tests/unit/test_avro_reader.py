"""The generated readers read exactly fastavro's records; bytes that are not Avro (where
fastavro is lenient) are refused as ``bad_avro``; and whatever else they do not read ends
exactly as fastavro says (the codec hands it over): the same record, or a ``DecodeError``
with the same reason."""

from __future__ import annotations

import io
import random
from typing import Any

import fastavro
import pytest

from schemas import codec
from schemas.avro_reader import InvalidAvro, compile_reader, read_long
from schemas.avro_writer import long_bytes
from schemas.codec import DecodeError, decode, encode, writer_schema
from schemas.contract import INTERNAL_TYPES, TOUCHPOINT_TYPES, contract
from streams.simulate import Simulation

from .factories import full_store_scan
from .test_avro_writer import random_record


def simulated(n: int, seed: int) -> list[bytes]:
    """The simulator's messages as the producer SDK sends them, malformed ones included."""
    out = []
    for msg in Simulation(n, seed=seed, duplicate_share=0.02, malformed_share=0.05):
        if msg.record is None:
            out.append(msg.raw or b"")
        else:
            out.append(encode(msg.type_name, msg.record.to_avro()))
    return out


def outcome(payload: bytes) -> tuple[str, str]:
    """decode's record (its repr: NaN equals NaN there) or its error's reason."""
    try:
        return "record", repr(decode(payload))
    except DecodeError as exc:
        return "refused", exc.reason


@pytest.fixture
def fastavro_only(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``outcome`` with every generated reader switched off."""

    def run(payload: bytes) -> tuple[str, str]:
        with monkeypatch.context() as m:
            m.setattr(codec, "_READERS", {})
            m.setattr(codec, "compile_reader", lambda parsed: None)
            return outcome(payload)

    return run


@pytest.mark.parametrize("type_name", [*TOUCHPOINT_TYPES, *INTERNAL_TYPES])
def test_every_shipped_schema_gets_a_reader(type_name: str) -> None:
    assert compile_reader(contract().schema(type_name).parsed) is not None


def test_the_simulators_messages_read_as_fastavro_reads_them() -> None:
    payloads = simulated(4000, seed=11)
    read = 0
    for payload in payloads:
        try:
            info, offset = writer_schema(payload)
        except DecodeError:
            continue
        reader = compile_reader(info.parsed)
        assert reader is not None
        body = io.BytesIO(payload)
        body.seek(offset)
        try:
            expected = fastavro.schemaless_reader(body, info.parsed, None)
        except Exception:  # a malformed body: the codec's fallback, tested below
            continue
        if body.tell() != len(payload):
            continue
        record, end = reader(payload, offset)
        assert (record, end) == (expected, len(payload))
        read += 1
    assert read > 3500


@pytest.mark.parametrize("type_name", sorted(INTERNAL_TYPES))
def test_random_output_records_read_back_as_fastavro_reads_them(type_name: str) -> None:
    from datetime import UTC, datetime

    parsed = contract().schema(type_name).parsed
    reader = compile_reader(parsed)
    assert reader is not None
    rng = random.Random(type_name)
    moments = [datetime(2026, 11, 30, 12, tzinfo=UTC)]
    for _ in range(1000):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, random_record(rng, parsed, moments))
        data = out.getvalue()
        assert reader(data, 0) == (fastavro.schemaless_reader(io.BytesIO(data), parsed), len(data))


def mutations(rng: random.Random, payload: bytes) -> list[bytes]:
    cut = rng.randrange(2, len(payload))
    at = rng.randrange(10, len(payload)) if len(payload) > 10 else len(payload) - 1
    flipped = bytearray(payload)
    flipped[at] ^= 1 << rng.randrange(8)
    changed = bytearray(payload)
    changed[at] = rng.randrange(256)
    return [
        payload[:cut],
        bytes(flipped),
        bytes(changed),
        payload + bytes([rng.randrange(256)]),
        payload[:at] + bytes([rng.randrange(256)]) + payload[at:],
        payload[:at] + payload[at + 1 :],
    ]


def not_avro(payload: bytes) -> str | None:
    """Why the generated reader of the message's writer schema says it is not Avro
    (``InvalidAvro``), if it does."""
    try:
        info, offset = writer_schema(payload)
        reader = compile_reader(info.parsed)
        assert reader is not None
        reader(payload, offset)
    except InvalidAvro as exc:
        return str(exc)
    except Exception:
        return None
    return None


def test_mutated_messages_end_as_with_fastavro_alone_unless_they_are_not_avro(
    fastavro_only: Any,
) -> None:
    rng = random.Random(5)
    payloads = [p for p in simulated(700, seed=23) if len(p) > 12]
    kinds: set[str] = set()
    for payload in payloads:
        for mutated in [payload, *mutations(rng, payload)]:
            got = outcome(mutated)
            why = not_avro(mutated)
            if why is None:
                assert got == fastavro_only(mutated), mutated.hex()
                kinds.add(got[0] if got[0] == "record" else got[1])
            else:
                assert got == ("refused", "bad_avro"), mutated.hex()
                kinds.add(why)
    # the mutations reached both sides of the fallback, and the refusals fastavro lacks
    assert {"record", "truncated", "trailing_bytes"} <= kinds
    assert {"boolean byte", "enum symbol", "union branch"} <= kinds


def test_a_full_record_reads_back_whole() -> None:
    scan = full_store_scan()
    type_name, record = decode(encode("store_scan", scan.to_avro()))
    assert type_name == "store_scan"
    assert type(scan).model_validate(record) == scan


TINY = fastavro.parse_schema({"type": "record", "name": "tiny", "fields": [
    {"name": "flag", "type": "boolean"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
]})  # fmt: skip


def test_what_the_reader_refuses_is_left_to_fastavro() -> None:
    reader = compile_reader(TINY)
    assert reader is not None
    assert reader(b"\x01\x02\x02a\x00", 0) == ({"flag": True, "tags": ["a"]}, 5)
    # a boolean byte of 2 is not Avro (fastavro reads it as true): refused, not left
    with pytest.raises(InvalidAvro, match="boolean"):
        reader(b"\x02\x00", 0)
    assert fastavro.schemaless_reader(io.BytesIO(b"\x02\x00"), TINY) == {"flag": True, "tags": []}
    # an array in a sized block (count -1, then the block's size in bytes): valid Avro
    sized = b"\x01" + long_bytes(-1) + long_bytes(2) + b"\x02a\x00"
    with pytest.raises(ValueError, match="sized blocks"):
        reader(sized, 0)
    assert fastavro.schemaless_reader(io.BytesIO(sized), TINY) == {"flag": True, "tags": ["a"]}
    # a string running past the end
    with pytest.raises(EOFError):
        reader(b"\x01\x02\x08ab", 0)
    # more items than bytes left (garbage: a count of 2**40 is not looped over)
    with pytest.raises(EOFError):
        reader(b"\x01" + long_bytes(2**40) + b"\x02a\x00", 0)


def test_varints_past_64_bits_are_refused() -> None:
    assert read_long(long_bytes(-(2**63)), 0) == (-(2**63), 10)
    assert read_long(long_bytes(2**63 - 1), 0) == (2**63 - 1, 10)
    with pytest.raises(ValueError, match="over 64 bits"):
        read_long(b"\xff" * 9 + b"\x7f", 0)
    with pytest.raises(ValueError, match="longer than 10"):
        read_long(b"\xff" * 10 + b"\x01", 0)


def test_a_decimal_wider_than_its_precision_is_rounded_as_fastavro_rounds_it() -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "amount", "fields": [
        {"name": "a", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4,
                               "scale": 2}},
    ]})  # fmt: skip
    reader = compile_reader(schema)
    assert reader is not None
    for unscaled in (123456, -99995, 12345678901234567890):
        raw = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
        data = long_bytes(len(raw)) + raw
        record, _ = reader(data, 0)
        assert repr(record) == repr(fastavro.schemaless_reader(io.BytesIO(data), schema))
