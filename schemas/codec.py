"""Wire codec. Two framings are understood on the way in:

* Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body. The
  default; the writer schema is found among the schemas shipped in this package.
* Confluent framing: ``00`` + 4-byte big-endian schema id + body, with the writer schema
  fetched from a schema registry (``SchemaResolver``).

Anything else, and any body that does not decode to exactly one record, is a
``DecodeError`` whose ``reason`` is a short stable code for the dead-letter headers.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Protocol

import fastavro

from schemas.contract import SchemaInfo, contract

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
_SINGLE_HEADER = 10
_CONFLUENT_HEADER = 5


class DecodeError(ValueError):
    """A message that cannot be turned into a record. ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SchemaResolver(Protocol):
    """Finds the writer schema of a Confluent-framed message by its registry id."""

    def schema_for_id(self, schema_id: int) -> SchemaInfo | None: ...


def encode(type_name: str, record: Mapping[str, Any]) -> bytes:
    """Single-object encode ``record`` with the shipped schema of ``type_name``."""
    info = contract().schema(type_name)
    out = io.BytesIO()
    out.write(SINGLE_OBJECT_MAGIC)
    out.write(info.fingerprint)
    fastavro.schemaless_writer(out, info.parsed, record)
    return out.getvalue()


def encode_body(info: SchemaInfo, record: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, info.parsed, record)
    return out.getvalue()


def decode(payload: bytes | None, resolver: SchemaResolver | None = None) -> tuple[str, dict]:
    """Return ``(type_name, record)`` or raise ``DecodeError``."""
    if not payload:
        raise DecodeError("empty", "message has no value")
    if payload[:2] == SINGLE_OBJECT_MAGIC:
        if len(payload) < _SINGLE_HEADER:
            raise DecodeError(
                "truncated", f"single-object header needs 10 bytes, got {len(payload)}"
            )
        fp = bytes(payload[2:_SINGLE_HEADER])
        info = contract().by_fingerprint.get(fp)
        if info is None:
            raise DecodeError(
                "unknown_fingerprint", f"no shipped schema has fingerprint {fp.hex()}"
            )
        return info.type_name, _read_body(info, payload, _SINGLE_HEADER)
    if payload[0] == CONFLUENT_MAGIC:
        if len(payload) < _CONFLUENT_HEADER:
            raise DecodeError("truncated", f"Confluent header needs 5 bytes, got {len(payload)}")
        schema_id = int.from_bytes(payload[1:_CONFLUENT_HEADER], "big")
        info = resolver.schema_for_id(schema_id) if resolver is not None else None
        if info is None:
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not known")
        return info.type_name, _read_body(info, payload, _CONFLUENT_HEADER)
    raise DecodeError("bad_magic", f"first byte 0x{payload[0]:02x} is neither C3 01 nor 00")


def _read_body(
    info: SchemaInfo, payload: bytes, offset: int, reader: SchemaInfo | None = None
) -> dict:
    """Read with the writer's schema into the current schema of its type (Avro schema
    resolution: fields added since get their defaults, fields removed are skipped)."""
    reader = reader or contract().by_type.get(info.type_name)
    if reader is None:
        raise DecodeError("unknown_type", f"no current schema for type {info.type_name!r}")
    body = io.BytesIO(payload)
    body.seek(offset)
    try:
        # the same schema on both sides (the usual case) needs no resolution
        record = fastavro.schemaless_reader(
            body, info.parsed, None if reader is info else reader.parsed
        )
    except UnicodeDecodeError as exc:
        raise DecodeError(
            "bad_utf8", f"{info.type_name}: string is not UTF-8 ({exc.reason})"
        ) from exc
    except fastavro.read.SchemaResolutionError as exc:
        raise DecodeError("incompatible_schema", f"{info.type_name}: {exc}") from exc
    except (EOFError, StopIteration, IndexError) as exc:
        # (IndexError: fastavro ran off the end inside a multi-byte varint)
        raise DecodeError("truncated", f"{info.type_name}: body ends early") from exc
    except Exception as exc:  # fastavro raises many shapes for garbage input
        raise DecodeError("bad_avro", f"{info.type_name}: {type(exc).__name__}: {exc}") from exc
    if body.tell() != len(payload):
        raise DecodeError(
            "trailing_bytes", f"{info.type_name}: {len(payload) - body.tell()} bytes after record"
        )
    if not isinstance(record, dict):
        raise DecodeError("bad_avro", f"{info.type_name}: body is not a record")
    return record
