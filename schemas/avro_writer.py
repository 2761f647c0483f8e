"""Avro bodies of flat records, written by a function generated from the schema.

The workers encode about three records per event (the fact, ledger, stock and identity
entries, the per-minute rows). fastavro walks the parsed schema for every record and
took about 12 us for a fact record; a function generated once per schema (the way
``dataclasses`` builds ``__init__``) writes the same bytes in about 7 us.

Only what the output schemas use is generated: string, int, long, boolean,
timestamp-millis, decimal in bytes and arrays of strings. ``compile_writer`` returns
None for any other schema, and ``schemas.codec`` then uses fastavro. A generated writer
raises on anything it does not write exactly as fastavro would (a missing field, a
naive datetime, an int as a timestamp, a float or an out-of-range long); the codec then
hands that record to fastavro, which writes it or says what is wrong with it. So the
bytes on the wire are always fastavro's: ``tests/unit/test_avro_writer.py`` compares
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

Writer = Callable[[Mapping[str, Any]], bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = 1 << 13  # zig-zag varints of -8192..8191 are looked up, not computed


def _varint(n: int) -> bytes:
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError(f"{n} does not fit an Avro long")
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = tuple(_varint(n) for n in range(-_SMALL, _SMALL))


def long_bytes(n: int) -> bytes:
    """An Avro int or long: zig-zag, then 7 bits a byte, low bits first (a TypeError for
    anything but an int)."""
    if -_SMALL <= n < _SMALL:
        return _SMALL_VARINTS[n + _SMALL]
    return _varint(n)


def timestamp_millis(dt: datetime) -> int:
    """fastavro's arithmetic for an aware datetime; a naive one raises TypeError."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)


def decimal_bytes(value: Decimal, precision: int, scale: int) -> bytes:
    """The unscaled value, two's complement big-endian, as fastavro sizes it."""
    sign, digits, exp = value.as_tuple()
    shift = exp + scale  # type: ignore[operator]  # NaN/Infinity: a TypeError, like fastavro
    if len(digits) > precision or shift < 0:
        raise ValueError(f"{value} does not fit decimal({precision}, {scale})")
    unscaled = 0
    for digit in digits:
        unscaled = unscaled * 10 + digit
    unscaled *= 10**shift
    size = (unscaled.bit_length() + 8) // 8
    return (-unscaled if sign else unscaled).to_bytes(size, "big", signed=True)


def _sized(expr: str) -> list[str]:
    """Avro bytes and strings: the length, then the bytes."""
    return [f"b = {expr}", "a(long_bytes(len(b)))", "a(b)"]


def _field_lines(name: str, schema: Any, slot: int) -> list[str] | None:
    value = f"r[{name!r}]"
    kind = (schema.get("logicalType") or schema.get("type")) if isinstance(schema, dict) else schema
    if kind == "string":
        return _sized(f"{value}.encode()")
    if kind in ("int", "long"):
        return [f"a(long_bytes({value}))"]
    if kind == "boolean":
        return [f"a(b'\\x01' if {value} else b'\\x00')"]
    if kind == "timestamp-millis" and schema["type"] == "long":
        # a batch's records share their processed_time: the last one is kept per field
        return [
            f"v = {value}",
            f"last = memo[{slot}]",
            "if last[0] is not v:",
            "    last = (v, long_bytes(timestamp_millis(v)))",
            f"    memo[{slot}] = last",
            "a(last[1])",
        ]
    if kind == "decimal" and schema["type"] == "bytes":
        precision, scale = schema["precision"], schema.get("scale", 0)
        return _sized(f"decimal_bytes({value}, {precision}, {scale})")
    if kind == "array" and schema["items"] == "string":
        return [
            f"items = {value}",
            "if items:",
            "    a(long_bytes(len(items)))",
            "    for item in items:",
            *("        " + line for line in _sized("item.encode()")),
            "a(b'\\x00')",
        ]
    return None


_NOTHING = object()


def compile_writer(parsed: Mapping[str, Any]) -> Writer | None:
    """A function writing the Avro body of a record of ``parsed`` (a fastavro-parsed
    record schema), or None when the schema holds a type this module does not write."""
    if parsed.get("type") != "record":
        return None
    body = ["o = []", "a = o.append"]
    for slot, field in enumerate(parsed["fields"]):
        lines = _field_lines(field["name"], field["type"], slot)
        if lines is None:
            return None
        body += lines
    body.append("return b''.join(o)")
    source = "def write(r):\n" + "".join(f"    {line}\n" for line in body)
    namespace: dict[str, Any] = {
        "long_bytes": long_bytes,
        "timestamp_millis": timestamp_millis,
        "decimal_bytes": decimal_bytes,
        # nothing is ever this: a None timestamp is converted (and refused) like any other
        "memo": [(_NOTHING, b"")] * len(parsed["fields"]),
    }
    exec(compile(source, f"<avro writer for {parsed.get('name', 'record')}>", "exec"), namespace)
    write: Writer = namespace["write"]
    write.source = source  # type: ignore[attr-defined]  # to read what runs
    return write
