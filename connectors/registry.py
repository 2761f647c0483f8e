"""Confluent schema registry, through confluent-kafka's client: resolves the writer schema
of Confluent-framed messages (``00`` + schema id) for the workers, and registers our
schemas for the producer SDK when ``OMNI_SCHEMA_REGISTRY_URL`` is set."""

from __future__ import annotations

import json
import struct
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.schema import SchemaParseException, UnknownType

from connectors.errors import ServiceUnavailable
from schemas.codec import CONFLUENT_MAGIC, encode_body
from schemas.contract import (
    SchemaInfo,
    contract,
    expanded_source,
    full_name,
    inline_named,
    load_schema_info,
    type_for_full_name,
)


class RegistryUnavailable(ServiceUnavailable):
    pass


def _avro_named(schema: Schema) -> dict[str, Any] | None:
    """The JSON of an Avro named type (record, enum, ...) the registry holds; None for
    another format or another shape (``ValueError`` if it is not JSON)."""
    if (schema.schema_type or "AVRO") != "AVRO":
        return None
    source = json.loads(schema.schema_str or "")
    return source if isinstance(source, dict) and "name" in source else None


class RegistrySchemas:
    def __init__(self, url: str, config: dict[str, Any] | None = None):
        self.client = SchemaRegistryClient({"url": url, **(config or {})})
        self._by_id: dict[int, SchemaInfo | None] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def schema_for_id(self, schema_id: int) -> SchemaInfo | None:
        """The writer schema registered under ``schema_id``, or None if the registry does
        not know it or it is not one of our record types (another format, another type, a
        schema that does not parse); either answer is kept."""
        if schema_id in self._by_id:
            return self._by_id[schema_id]
        schema = self._ask(self.client.get_schema, schema_id)
        if schema is None:
            return None  # not registered (yet): asked again next time
        info = self._by_id[schema_id] = self._ours(schema)
        return info

    def _ask(self, call: Any, *args: Any) -> Schema | None:
        """A schema from the registry; None if it has none by that name."""
        try:
            found = call(*args)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise RegistryUnavailable(f"schema registry: {exc}") from exc
        except Exception as exc:  # connection errors surface as requests exceptions
            raise RegistryUnavailable(f"schema registry: {exc}") from exc
        return getattr(found, "schema", found)  # get_version gives a RegisteredSchema

    def _ours(self, schema: Schema) -> SchemaInfo | None:
        try:
            source = _avro_named(schema)
            if source is None:
                return None
            type_name = type_for_full_name(full_name(source))
            if type_name is None:
                return None
            named = self._referenced(schema.references or [], depth=0)
            if named is None:
                return None
            return load_schema_info(type_name, inline_named(source, named))
        except (ValueError, TypeError, KeyError, SchemaParseException, UnknownType):
            return None

    def _referenced(self, references: list[Any], depth: int) -> dict[str, Any] | None:
        """The named types a schema refers to by registry reference (full name -> its
        schema), theirs included; None if one is missing or not an Avro named type."""
        named: dict[str, Any] = {}
        if depth > 16:
            return None
        for ref in references:
            schema = self._ask(self.client.get_version, ref.subject, ref.version)
            source = None if schema is None else _avro_named(schema)
            if schema is None or source is None:
                return None
            named[full_name(source)] = source
            deeper = self._referenced(schema.references or [], depth + 1)
            if deeper is None:
                return None
            named.update(deeper)
        return named

    def register(self, topic: str, type_name: str) -> int:
        """Register the shipped schema of ``type_name`` under ``<topic>-value``; its id."""
        key = (topic, type_name)
        if key not in self._ids:
            schema = Schema(json.dumps(expanded_source(type_name)), "AVRO")
            try:
                self._ids[key] = self.client.register_schema(f"{topic}-value", schema)
            except Exception as exc:
                raise RegistryUnavailable(f"schema registry: {exc}") from exc
        return self._ids[key]

    def encode(self, topic: str, type_name: str, record: dict[str, Any]) -> bytes:
        """Confluent framing: ``00`` + 4-byte big-endian schema id + Avro body."""
        schema_id = self.register(topic, type_name)
        return struct.pack(">bI", CONFLUENT_MAGIC, schema_id) + encode_body(
            contract().schema(type_name), record
        )
