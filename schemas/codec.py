"""Wire codec. Two framings are understood on the way in:

* Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body. The
  default; the writer schema is found among the schemas shipped in this package.
* Confluent framing: ``00`` + 4-byte big-endian schema id + body, with the writer schema
  fetched from a schema registry (``SchemaResolver``).

Anything else, and any body that does not decode to exactly one record, is a
``DecodeError`` whose ``reason`` is a short stable code for the dead-letter headers.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import fastavro

from schemas.avro_reader import InvalidAvro, Reader, compile_reader
from schemas.avro_writer import Writer, compile_writer, long_bytes
from schemas.contract import SchemaInfo, contract, expanded_source

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
    return SINGLE_OBJECT_MAGIC + info.fingerprint + encode_body(info, record)


#: generated writers and readers by the exact schema (None: fastavro's schema); not by
#: fingerprint: a writer whose decimal grew in precision has the same one
_WRITERS: dict[str, Writer | None] = {}
_READERS: dict[str, Reader | None] = {}


def _generated(cache: dict[str, Any], build: Callable[[Any], Any], info: SchemaInfo) -> Any:
    """The schema's generated writer or reader, built on first use."""
    try:
        return cache[info.exact]
    except KeyError:
        made = cache[info.exact] = build(info.parsed)
        return made


def encode_body(info: SchemaInfo, record: Mapping[str, Any]) -> bytes:
    """The Avro body of ``record``: by the schema's generated writer when it has one
    (``schemas.avro_writer``), otherwise, or when that writer refuses the record, by
    fastavro, which writes it or says what is wrong with it."""
    write: Writer | None = _generated(_WRITERS, compile_writer, info)
    if write is not None:
        with contextlib.suppress(Exception):  # fastavro below decides, with its message
            return write(record)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, info.parsed, record)
    return out.getvalue()


def decode(payload: bytes | None, resolver: SchemaResolver | None = None) -> tuple[str, dict]:
    """Return ``(type_name, record)`` or raise ``DecodeError``."""
    info, offset = writer_schema(payload, resolver)
    return info.type_name, _read_body(info, payload, offset)  # type: ignore[arg-type]


def writer_schema(
    payload: bytes | None, resolver: SchemaResolver | None = None
) -> tuple[SchemaInfo, int]:
    """The writer schema a message names in its header, and where its body starts;
    ``DecodeError`` if the header is not one of the two framings or names no known
    schema. The body is not read."""
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
        return info, _SINGLE_HEADER
    if payload[0] == CONFLUENT_MAGIC:
        if len(payload) < _CONFLUENT_HEADER:
            raise DecodeError("truncated", f"Confluent header needs 5 bytes, got {len(payload)}")
        schema_id = int.from_bytes(payload[1:_CONFLUENT_HEADER], "big")
        info = resolver.schema_for_id(schema_id) if resolver is not None else None
        if info is None:
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not known")
        return info, _CONFLUENT_HEADER
    raise DecodeError("bad_magic", f"first byte 0x{payload[0]:02x} is neither C3 01 nor 00")


def _avro_bytes(data: bytes) -> bytes:
    return long_bytes(len(data)) + data


#: any 16 bytes do; fixed so that the same records always make the same container
_SYNC = b"omni-avro-sync\x00\x01"


def avro_container(
    type_name: str, bodies: Sequence[bytes], precision: Mapping[str, int] | None = None
) -> bytes:
    """An Avro object container file holding ``bodies`` (schemaless records written with
    the current schema of ``type_name``): what ClickHouse's ``FORMAT Avro`` reads. Each
    record is its own block, so a record that does not parse fails the read at that
    record instead of shifting its neighbours. ``precision`` (field -> digits) restates
    the precision of decimal fields: ClickHouse takes an Avro decimal only into a column
    of the same precision, and a decimal's bytes do not depend on it (only on its scale)."""
    header = _container_header(type_name, tuple(sorted((precision or {}).items())))
    one = long_bytes(1)
    return header + b"".join(one + _avro_bytes(body) + _SYNC for body in bodies)


@functools.cache
def _container_header(type_name: str, precision: tuple[tuple[str, int], ...]) -> bytes:
    source = expanded_source(type_name)
    digits = dict(precision)
    for f in source["fields"]:
        kind = f["type"]
        if f["name"] in digits and isinstance(kind, dict) and kind.get("logicalType") == "decimal":
            f["type"] = {**kind, "precision": digits[f["name"]]}
    schema = json.dumps(source, separators=(",", ":")).encode()
    return (
        b"Obj\x01"
        + long_bytes(2)
        + _avro_bytes(b"avro.schema")
        + _avro_bytes(schema)
        + _avro_bytes(b"avro.codec")
        + _avro_bytes(b"null")
        + long_bytes(0)
        + _SYNC
    )


def _read_body(
    info: SchemaInfo, payload: bytes, offset: int, reader: SchemaInfo | None = None
) -> dict:
    """Read with the writer's schema into the current schema of its type (Avro schema
    resolution: fields added since get their defaults, fields removed are skipped).
    The writer schema's generated reader reads the body first, whatever the reader
    schema: bytes that are not Avro are refused here (fastavro would read some of them
    as another value); a body it reads whole into the same schema is the record."""
    reader = reader or contract().by_type.get(info.type_name)
    if reader is None:
        raise DecodeError("unknown_type", f"no current schema for type {info.type_name!r}")
    read: Reader | None = _generated(_READERS, compile_reader, info)
    if read is not None:
        try:
            record, end = read(payload, offset)
        except InvalidAvro as exc:
            raise DecodeError("bad_avro", f"{info.type_name}: {exc}") from None
        except Exception:  # cut short, or sized blocks: fastavro decides
            pass
        else:
            if end == len(payload) and reader.fingerprint == info.fingerprint:
                return record
    body = io.BytesIO(payload)
    body.seek(offset)
    try:
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
