"""Loads the ``.avsc`` files shipped in this package and indexes them by type name and by
CRC-64-AVRO fingerprint (the key of Avro single-object encoding)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

#: Every event type a producer may send, each on its own topic (see connectors.topics).
TOUCHPOINT_TYPES: tuple[str, ...] = (
    "store_scan",
    "livestream_click",
    "red_envelope_claim",
    "app_order",
    "order_status",
    "inventory_adjustment",
)
#: Records the stream workers emit themselves.
INTERNAL_TYPES: tuple[str, ...] = ("touchpoint_fact",)

_COMMON = "common.avsc"


@dataclass(frozen=True)
class SchemaInfo:
    """One record schema, ready for fastavro, with its identity on the wire."""

    type_name: str
    full_name: str
    parsed: Any
    canonical_form: str
    fingerprint: bytes

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


@dataclass(frozen=True)
class Contract:
    by_type: dict[str, SchemaInfo]
    by_fingerprint: dict[bytes, SchemaInfo]

    def schema(self, type_name: str) -> SchemaInfo:
        try:
            return self.by_type[type_name]
        except KeyError:
            known = ", ".join(sorted(self.by_type))
            raise KeyError(f"unknown event type {type_name!r}; known: {known}") from None


def _read(name: str) -> Any:
    return json.loads(resources.files("schemas").joinpath(name).read_text(encoding="utf-8"))


def schema_source(type_name: str) -> Any:
    """The JSON of one ``.avsc`` file as written (named types unexpanded)."""
    return _read(f"{type_name}.avsc")


def common_types() -> list[Any]:
    return list(_read(_COMMON))


def load_schema_info(type_name: str, source: Any | None = None) -> SchemaInfo:
    """Parse one record schema (``source`` or the shipped file) against the shared types."""
    named: dict[str, Any] = {}
    for named_type in common_types():
        parse_schema(named_type, named)
    raw = schema_source(type_name) if source is None else source
    parsed = parse_schema(raw, dict(named))
    expanded = parse_schema(raw, dict(named), expand=True)
    canonical = to_parsing_canonical_form(expanded)
    return SchemaInfo(
        type_name=type_name,
        full_name=parsed["name"],
        parsed=parsed,
        canonical_form=canonical,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


@cache
def contract() -> Contract:
    infos = [load_schema_info(t) for t in (*TOUCHPOINT_TYPES, *INTERNAL_TYPES)]
    return Contract(
        by_type={i.type_name: i for i in infos},
        by_fingerprint={i.fingerprint: i for i in infos},
    )
