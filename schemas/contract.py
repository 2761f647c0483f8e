"""Loads the ``.avsc`` files shipped in this package and indexes them by type name and by
CRC-64-AVRO fingerprint (the key of Avro single-object encoding)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, cached_property
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
INTERNAL_TYPES: tuple[str, ...] = (
    "touchpoint_fact",
    "identity_event",
    "points_entry",
    "stock_movement",
    "minute_aggregate",
)

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

    @cached_property
    def exact(self) -> str:
        """The schema with everything that changes bytes or values (a decimal's precision
        and scale, which the fingerprint leaves out): what a generated reader or writer is
        built from, so two schemas of one fingerprint never share one."""
        return json.dumps(self.parsed, sort_keys=True, default=str)


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


def full_name(source: dict[str, Any]) -> str:
    """A named type's full name: its ``name`` if that is dotted, else ``namespace.name``."""
    name = str(source.get("name", ""))
    return name if "." in name else f"{source.get('namespace', '')}.{name}"


def expanded_source(type_name: str) -> dict[str, Any]:
    """The shipped schema of ``type_name`` as one self-contained JSON document (each shared
    named type defined at its first use): what a schema registry stores."""
    shared = {full_name(t): t for t in common_types()}
    return inline_named(schema_source(type_name), shared)  # type: ignore[no-any-return]


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def inline_named(source: Any, named: dict[str, Any]) -> Any:
    """``source`` with each named type of ``named`` (full name -> its schema) defined at
    its first use and referred to by full name after it. A reference by short name is
    read in its enclosing namespace, as Avro reads it (Avro's Java library writes a type of
    the same namespace so: "Envelope" inside omni.touchpoint.StoreScan)."""
    defined: set[str] = set()

    def expand(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            full = node
            if "." not in node and node not in _PRIMITIVES and namespace:
                full = f"{namespace}.{node}"
            if full not in named:
                return node
            if full in defined:
                return full
            defined.add(full)
            return expand(named[full], namespace)
        if isinstance(node, list):
            return [expand(n, namespace) for n in node]
        if isinstance(node, dict):
            if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
                name = str(node["name"])
                namespace = name.rsplit(".", 1)[0] if "." in name else node.get(
                    "namespace", namespace)  # fmt: skip
            return {
                k: expand(v, namespace) if k in ("type", "items", "values", "fields") else v
                for k, v in node.items()
            }
        return node

    return expand(source, "")


def type_for_full_name(name: str) -> str | None:
    for type_name in (*TOUCHPOINT_TYPES, *INTERNAL_TYPES):
        if full_name(schema_source(type_name)) == name:
            return type_name
    return None


def load_schema_info(type_name: str, source: Any | None = None) -> SchemaInfo:
    """Parse one self-contained record schema (``source``, or the shipped file expanded).
    The fingerprint is CRC-64-AVRO of its Parsing Canonical Form, as any Avro library
    computes it from the same schema."""
    raw = expanded_source(type_name) if source is None else source
    parsed = parse_schema(raw, {})
    canonical = to_parsing_canonical_form(parsed)
    return SchemaInfo(
        type_name=type_name,
        full_name=parsed["name"],
        parsed=parsed,
        canonical_form=canonical,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


def history_sources() -> list[tuple[str, Any]]:
    """(type name, schema) of every earlier version shipped in ``schemas/history/``,
    named ``<type>.v<N>.avsc``, each self-contained (see ``expanded_source``). Records
    written with them stay readable: Avro schema resolution reads them into the current
    schema."""
    folder = resources.files("schemas").joinpath("history")
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".avsc"):
            found.append((entry.name.split(".", 1)[0], json.loads(entry.read_text("utf-8"))))
    return found


@cache
def contract() -> Contract:
    current = [load_schema_info(t) for t in (*TOUCHPOINT_TYPES, *INTERNAL_TYPES)]
    earlier = [load_schema_info(t, source) for t, source in history_sources()]
    return Contract(
        by_type={i.type_name: i for i in current},
        by_fingerprint={i.fingerprint: i for i in (*earlier, *current)},
    )
