"""Messages in the Confluent wire format (``00`` + schema id), written by a plain
confluent-kafka producer with confluent-kafka's own AvroSerializer, are processed like
ours; an id the registry does not know is dead-lettered, the worker goes on."""

from __future__ import annotations

import json
import logging
import struct
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.kafka import TouchpointProducer
from connectors.registry import RegistrySchemas, RegistryUnavailable
from schemas.codec import DecodeError, decode, encode, encode_body
from schemas.contract import common_types, contract, expanded_source, schema_source
from schemas.models import type_name_of
from schemas.topics import input_topics, topic_for
from streams.demo import wait_views
from streams.pipeline import Inbound, TouchpointPipeline
from streams.settings import Settings
from streams.simulate import Simulation
from streams.wiring import rules

from ..unit.factories import envelope, store_scan
from .conftest import Running
from .registry_standin import schema_registry
from .test_dead_letters import omni

pytestmark = pytest.mark.integration


def test_plain_client_confluent_messages_are_processed(
    run_stack: Callable[..., Running],
) -> None:
    with schema_registry() as url:
        stack = run_stack(workers=1, sink=False, schema_registry_url=url)
        prefix = stack.settings.topic_prefix
        client = SchemaRegistryClient({"url": url})
        sim = Simulation(40, seed=3, duplicate_share=0, malformed_share=0)
        records = [m.record for m in sim if m.record is not None]
        producer = Producer({"bootstrap.servers": stack.endpoints.kafka_bootstrap})
        per_type: dict[str, int] = {}
        for record in records:
            type_name = type_name_of(record)
            serializer = AvroSerializer(
                client,
                json.dumps(expanded_source(type_name)),
                lambda r, ctx: r.to_avro(),
            )
            topic = topic_for(prefix, type_name)
            value = serializer(record, SerializationContext(topic, MessageField.VALUE))
            assert value is not None and value[0] == 0  # the Confluent framing
            producer.produce(topic, value=value)
            per_type[type_name] = per_type.get(type_name, 0) + 1
        # an id nobody registered
        bogus = struct.pack(">bI", 0, 4242) + b"\x02"
        producer.produce(topic_for(prefix, "store_scan"), value=bogus)
        # a good record on another type's topic: dead-lettered, though it decodes
        first = records[0]
        kind = type_name_of(first)
        misplaced = topic_for(prefix, "order_status" if kind != "order_status" else "app_order")
        serializer = AvroSerializer(
            client, json.dumps(expanded_source(kind)), lambda r, ctx: r.to_avro()
        )
        producer.produce(
            misplaced,
            value=serializer(first, SerializationContext(misplaced, MessageField.VALUE)),
        )
        producer.flush(10)

        stats = wait_views(stack.views, len(records) + 2, timeout=60)
        assert (stats["processed"], stats["dead_lettered"]) == (len(records), 2)
        assert {
            k.removeprefix("type:"): v for k, v in stats.items() if k.startswith("type:")
        } == per_type
        assert stack.workers[0].alive

        # `omni dlq show` reads a letter as the workers do, through the registry
        listed = json.loads(omni(stack, "dlq", "ls", "--json").stdout)
        by_reason = {row["reason"]: row["count"] for row in listed["by_reason"]}
        assert (listed["total"], by_reason) == (2, {"unknown_schema_id": 1, "wrong_topic": 1})
        shown = {
            letter["reason"]: json.loads(omni(stack, "dlq", "show", letter["ref"], "--json").stdout)
            for letter in listed["latest"]
        }
        assert shown["wrong_topic"]["decodes"] == f"decodes now as {kind}"
        assert shown["unknown_schema_id"]["decodes"] == "still fails: unknown_schema_id"
        assert json.loads(omni(stack, "dlq", "ls", "--limit", "0", "--json").stdout)["latest"] == []

        # our SDK, configured with the registry, writes the same framing
        more = [m.record for m in Simulation(20, seed=4, duplicate_share=0, malformed_share=0)]
        sent: list[bytes] = []
        with TouchpointProducer(
            stack.endpoints.kafka_bootstrap, prefix, schema_registry_url=url
        ) as ours:
            for record in more:
                assert record is not None
                ours.send(record, on_delivery=lambda err, msg: sent.append(msg.value()))
        assert len(sent) == len(more) and all(v[0] == 0 for v in sent)
        stats = wait_views(stack.views, len(records) + 1 + len(more), timeout=60)
        assert stats["processed"] == len(records) + len(more)


def test_a_registry_that_is_down_holds_the_batch_instead_of_dead_lettering_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Good Confluent-framed messages wait for the schema registry (a restart, a network
    blip) and are not dead-lettered as bad, which would take them out of the stream."""
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="omni-registry-")))
    topic = topic_for(settings.topic_prefix, "store_scan")
    record = store_scan(envelope=envelope(event_time=datetime.now(UTC) - timedelta(minutes=1)))
    body = encode_body(contract().schema("store_scan"), record.to_avro())
    with schema_registry() as url:
        framed = struct.pack(">bI", 0, RegistrySchemas(url).register(topic, "store_scan")) + body
        up = TouchpointPipeline(input_topics(settings.topic_prefix), rules(settings), None,
                                None, resolver=RegistrySchemas(url))  # type: ignore[arg-type]  # fmt: skip
        prepared = up.prepare([Inbound(topic, 0, 0, b"S001", framed)])
        assert prepared.dead == [] and prepared.plans[0] is not None
    # the registry is gone; a worker that has not asked for this id yet
    down = TouchpointPipeline(input_topics(settings.topic_prefix), rules(settings), None,
                              None, resolver=RegistrySchemas(url))  # type: ignore[arg-type]  # fmt: skip
    batch = [Inbound(topic, 0, 1, b"S001", framed)]
    with pytest.raises(RegistryUnavailable):
        down.prepare(batch)
    stopping = threading.Event()
    threading.Timer(1.5, stopping.set).start()
    with caplog.at_level(logging.WARNING, logger="omni.pipeline"):
        assert down.prepare_until_done(batch, stopping) is None  # waited until told to stop
    assert any("waits: schema registry" in r.getMessage() for r in caplog.records)


def short_names(node: Any, namespace: str) -> Any:
    """``node`` with references to types of ``namespace`` by their short name, as Avro's
    Java library writes them ("Envelope" inside omni.touchpoint.StoreScan)."""
    if isinstance(node, str) and node.rsplit(".", 1)[0] == namespace:
        return node.rsplit(".", 1)[1]
    if isinstance(node, list):
        return [short_names(n, namespace) for n in node]
    if isinstance(node, dict):
        return {k: short_names(v, namespace) if k in ("type", "items", "values", "fields")
                else v for k, v in node.items()}  # fmt: skip
    return node


def register_with_references(
    client: SchemaRegistryClient, full_name: str, short: bool = False
) -> SchemaReference:
    """``full_name`` (a shared named type, or a touchpoint's record) registered under a
    subject of its name, referring to the named types it uses by registry reference, as
    producers in other languages often register them (``short``: by short name)."""
    shared = {f"{t.get('namespace', '')}.{t['name']}": t for t in common_types()}
    source = shared.get(full_name) or schema_source(full_name.rsplit(".", 1)[1])
    text = json.dumps(source)
    uses = [n for n in shared if n != full_name and f'"{n}"' in text]
    references = [register_with_references(client, n, short) for n in uses]
    if short:
        text = json.dumps(short_names(source, "omni.touchpoint"))
    client.register_schema(full_name, Schema(text, "AVRO", references))
    return SchemaReference(full_name, full_name, 1)


def assert_read_as_ours(schemas: RegistrySchemas, schema_id: int) -> None:
    """A message framed with ``schema_id`` reads as the shipped store_scan's own."""
    record = store_scan().to_avro()
    body = encode_body(contract().schema("store_scan"), record)
    info = schemas.schema_for_id(schema_id)
    assert info is not None
    assert info.fingerprint == contract().schema("store_scan").fingerprint
    assert decode(struct.pack(">bI", 0, schema_id) + body, schemas) == decode(
        encode("store_scan", record)
    )


def test_references_by_short_name_are_read_in_their_namespace() -> None:
    """Before: only full names were filled in, so a schema a Java producer registered was
    refused and its messages dead-lettered as unknown_schema_id."""
    with schema_registry() as url:
        client = SchemaRegistryClient({"url": url})
        register_with_references(client, "omni.touchpoint.store_scan", short=True)
        ours = client.get_version("omni.touchpoint.store_scan", 1)
        assert '"type": "Envelope"' in ours.schema.schema_str
        schemas = RegistrySchemas(url)
        assert_read_as_ours(schemas, ours.schema_id)


def test_a_schema_registered_with_references_reads_and_a_foreign_one_is_unknown() -> None:
    record = store_scan().to_avro()
    body = encode_body(contract().schema("store_scan"), record)
    with schema_registry() as url:
        client = SchemaRegistryClient({"url": url})
        register_with_references(client, "omni.touchpoint.store_scan")
        ours = client.get_version("omni.touchpoint.store_scan", 1)
        assert [r.name for r in ours.schema.references] == [
            "omni.touchpoint.Envelope", "omni.touchpoint.OrderLine"
        ]  # fmt: skip
        foreign = [
            client.register_schema("a", Schema('"string"', "AVRO")),
            client.register_schema("b", Schema('["null", "string"]', "AVRO")),
            client.register_schema("c", Schema('{"type": "object"}', "JSON")),
            client.register_schema("d", Schema('syntax = "proto3"; message M {}', "PROTOBUF")),
        ]
        schemas = RegistrySchemas(url)
        assert_read_as_ours(schemas, ours.schema_id)
        for schema_id in foreign:  # before: AttributeError or JSONDecodeError, "unexpected"
            with pytest.raises(DecodeError) as caught:
                decode(struct.pack(">bI", 0, schema_id) + body, schemas)
            assert caught.value.reason == "unknown_schema_id"
