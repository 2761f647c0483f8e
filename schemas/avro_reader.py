"""Avro bodies of touchpoints, read by a function generated from the writer's schema.

A worker decodes every message it takes. fastavro walks the parsed schema for each one;
a function generated once per schema, with the common one-byte varint read inline,
reads the same records in about 70 % of that time (docs/benchmarks.md, item 11).

It reads what the touchpoint schemas use: records, unions, arrays, enums, null, boolean,
int, long, double, string, timestamp-millis and decimal in bytes; ``compile_reader``
returns None for a schema with anything else. It is strict where fastavro is lenient:
a boolean byte other than 0 and 1, a varint longer than ten bytes or over 64 bits, a
negative length, and a union branch or enum symbol out of range (fastavro reads a
negative one from the end of the list) are not Avro, and raise ``InvalidAvro``: the
codec refuses such a message as ``bad_avro``, whichever schema it was written with.
What it does not read (an array in sized blocks, valid Avro) and what runs past the end
of the body (a count larger than the bytes left included) raise other errors; the codec
then reads that message with fastavro, which decides: a record, or the error and its
reason. A record from here is exactly fastavro's: ``tests/unit/test_avro_reader.py``
compares them on valid messages and on mutated ones.
"""

from __future__ import annotations

import decimal
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: (data, offset of the body) -> (record, offset after it)
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_U64 = 1 << 64


class InvalidAvro(ValueError):
    """Bytes that are not an Avro body of the schema (not merely cut short)."""


def read_long(data: bytes, p: int) -> tuple[int, int]:
    """A zig-zag varint at ``p``: its value and the offset after it."""
    n, shift = 0, 0
    while True:
        b = data[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise InvalidAvro("varint longer than 10 bytes")
    if n >= _U64:
        raise InvalidAvro("varint over 64 bits")
    return (n >> 1) ^ -(n & 1), p


def _decimal_reader(precision: int, scale: int) -> Callable[[bytes], decimal.Decimal]:
    """fastavro's arithmetic (``read_decimal``), with a context of its own per precision."""
    context = decimal.Context(prec=precision)

    def read(raw: bytes) -> decimal.Decimal:
        return context.create_decimal(int.from_bytes(raw, "big", signed=True)).scaleb(
            -scale, context
        )

    return read


class _Source:
    """The generated function's lines, and the names its namespace needs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self._count = 0

    def var(self) -> str:
        self._count += 1
        return f"v{self._count}"

    def name(self, value: Any) -> str:
        key = f"k{len(self.names)}"
        self.names[key] = value
        return key

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def long(self, depth: int, var: str) -> None:
        """``var`` = the varint at p; one-byte values (most ints, lengths, indexes) inline."""
        self.line(depth, f"{var} = data[p]")
        self.line(depth, f"if {var} < 128: {var} = ({var} >> 1) ^ -({var} & 1); p += 1")
        self.line(depth, f"else: {var}, p = read_long(data, p)")

    def sized(self, depth: int, var: str) -> str:
        """Read a length, check it, and return the slice expression of that many bytes."""
        size = self.var()
        self.long(depth, size)
        self.line(depth, f"if {size} < 0: raise InvalidAvro('negative length')")
        self.line(depth, f"if p + {size} > end: raise EOFError")
        self.line(depth, f"{var} = data[p:p + {size}]; p += {size}")
        return var

    def read(self, schema: Any, depth: int) -> str | None:
        """Lines reading one value of ``schema``; the variable holding it, or None when
        the schema holds a type this module does not read."""
        var = self.var()
        if isinstance(schema, list):
            return self._union(schema, depth, var)
        kind = (schema.get("logicalType") or schema["type"]) if isinstance(schema, dict) else schema
        if kind == "null":
            self.line(depth, f"{var} = None")
        elif kind == "string":
            self.sized(depth, var)
            self.line(depth, f"{var} = {var}.decode()")
        elif kind in ("int", "long"):
            self.long(depth, var)
        elif kind == "boolean":
            self.line(depth, f"{var} = data[p]; p += 1")
            self.line(depth, f"if {var} > 1: raise InvalidAvro('boolean byte')")
            self.line(depth, f"{var} = {var} == 1")
        elif kind == "double":
            self.line(depth, "if p + 8 > end: raise EOFError")
            self.line(depth, f"{var} = double(data, p)[0]; p += 8")
        elif kind == "timestamp-millis" and schema["type"] == "long":
            self.long(depth, var)
            self.line(depth, f"{var} = EPOCH + timedelta(microseconds={var} * 1000)")
        elif kind == "decimal" and schema["type"] == "bytes":
            convert = self.name(_decimal_reader(schema["precision"], schema.get("scale", 0)))
            self.sized(depth, var)
            self.line(depth, f"{var} = {convert}({var})")
        elif kind == "enum":
            symbols = self.name(tuple(schema["symbols"]))
            self.long(depth, var)
            count = len(schema["symbols"])
            self.line(depth, f"if not 0 <= {var} < {count}: raise InvalidAvro('enum symbol')")
            self.line(depth, f"{var} = {symbols}[{var}]")
        elif kind == "array":
            return self._array(schema, depth, var)
        elif kind == "record":
            return self._record(schema, depth, var)
        else:
            return None
        return var

    def _union(self, branches: list, depth: int, var: str) -> str | None:
        index = self.var()
        self.long(depth, index)
        for i, branch in enumerate(branches):
            self.line(depth, f"{'if' if i == 0 else 'elif'} {index} == {i}:")
            value = self.read(branch, depth + 1)
            if value is None:
                return None
            self.line(depth + 1, f"{var} = {value}")
        self.line(depth, "else: raise InvalidAvro('union branch')")
        return var

    def _array(self, schema: Mapping[str, Any], depth: int, var: str) -> str | None:
        count = self.var()
        self.line(depth, f"{var} = []")
        self.long(depth, count)
        self.line(depth, f"while {count}:")
        self.line(depth + 1, f"if {count} < 0: raise ValueError('array in sized blocks')")
        # every item of the shipped schemas takes a byte at least: a larger count is garbage
        self.line(depth + 1, f"if {count} > end - p: raise EOFError")
        self.line(depth + 1, f"for _ in range({count}):")
        item = self.read(schema["items"], depth + 2)
        if item is None:
            return None
        self.line(depth + 2, f"{var}.append({item})")
        self.long(depth + 1, count)
        return var

    def _record(self, schema: Mapping[str, Any], depth: int, var: str) -> str | None:
        fields = []
        for field in schema["fields"]:
            value = self.read(field["type"], depth)
            if value is None:
                return None
            fields.append(f"{field['name']!r}: {value}")
        self.line(depth, f"{var} = {{{', '.join(fields)}}}")
        return var


def compile_reader(parsed: Mapping[str, Any]) -> Reader | None:
    """A function reading the Avro body of a record of ``parsed`` (a fastavro-parsed record
    schema, read as written: no schema resolution), or None when the schema holds a type
    this module does not read."""
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        return None
    source = _Source()
    record = source.read(parsed, 1)
    if record is None:
        return None
    text = "\n".join(["def read(data, p):", "    end = len(data)", *source.lines])
    text += f"\n    return {record}, p\n"
    namespace: dict[str, Any] = {
        "read_long": read_long,
        "InvalidAvro": InvalidAvro,
        "EPOCH": _EPOCH,
        "timedelta": timedelta,
        "double": struct.Struct("<d").unpack_from,
        **source.names,
    }
    exec(compile(text, f"<avro reader for {parsed.get('name', 'record')}>", "exec"), namespace)
    read: Reader = namespace["read"]
    read.source = text  # type: ignore[attr-defined]  # to read what runs
    return read
