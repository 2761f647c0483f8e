"""Kafka edge on confluent-kafka: topic admin, the producer SDK, and the workers' output
(enriched facts and dead letters), all flushed per batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel, ValidationError

from connectors.errors import DeliveryFailed
from schemas.codec import encode
from schemas.contract import INTERNAL_TYPES
from schemas.models import MODELS, Touchpoint, describe_validation_error, type_name_of
from schemas.topics import partition_key, topic_for
from streams.core.errors import InvalidTouchpoint
from streams.core.plan import plan_event
from streams.core.rules import Rules

#: Larger than any valid touchpoint by far; the broker's own limit is usually 1 MiB.
MAX_MESSAGE_BYTES = 1_000_000
#: How much of an oversized message a dead letter keeps, of its value and of its key (a
#: key is an id; one of a megabyte is itself the fault, and would not fit the letter).
DEAD_LETTER_VALUE_BYTES = 64 * 1024
DEAD_LETTER_KEY_BYTES = 1024


def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, config: Mapping[str, Any] | None = None
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(config or {})})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(n, num_partitions=partitions, replication_factor=1)
        for n in names
        if n not in existing
    ]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc


def producer_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES + 4096,
        **(extra or {}),
    }


@dataclass(frozen=True)
class DeliveryError:
    topic: str
    key: bytes | None
    error: str


class _DeliveringProducer:
    """A producer that waits when its local queue is full and reports every failed
    delivery at the next flush, so nothing is lost silently.

    ``per_message_reports=False`` (the workers' and the sink's output): librdkafka reports
    failed deliveries only (``delivery.report.only.error``) to one callback, so a
    delivered message costs no Python call; callers cannot pass ``on_delivery`` then."""

    def __init__(self, config: Mapping[str, Any], per_message_reports: bool = True):
        config = dict(config)
        if not per_message_reports:
            config |= {"delivery.report.only.error": True, "on_delivery": self._on_delivery}
        self._producer = Producer(config)
        self._per_message = per_message_reports
        self._failed: list[DeliveryError] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(DeliveryError(msg.topic() or "", msg.key(), str(err)))

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers}
        if self._per_message:

            def callback(err: KafkaError | None, msg: Message) -> None:
                self._on_delivery(err, msg)
                if on_delivery is not None:
                    on_delivery(err, msg)

            kwargs["on_delivery"] = callback
        elif on_delivery is not None:
            raise ValueError("this producer reports failed deliveries only")
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                # local queue full: wait for deliveries to make room rather than fail
                self._producer.poll(0.05)
        if self._per_message:
            self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic()))) > 0:
            if time.monotonic() >= deadline:
                raise DeliveryFailed(
                    f"{len(self._producer)} messages not delivered within {timeout:.0f}s"
                )
        if self._failed:
            failed, self._failed = self._failed, []
            first = failed[0]
            raise DeliveryFailed(
                f"{len(failed)} deliveries failed; first: {first.topic}: {first.error}"
            )


class TouchpointProducer:
    """The producer SDK: validates, encodes, keys by the documented partition key of each
    type, sends idempotently and reports delivery failures. Encoding: Avro single-object
    (``C3 01`` + fingerprint) by default; the Confluent framing (``00`` + schema id,
    schemas registered through confluent-kafka's registry client) when
    ``schema_registry_url`` is given.

    >>> with TouchpointProducer("localhost:9092") as producer:
    ...     producer.send(store_scan)          # raises on invalid input, never sends it
    """

    def __init__(
        self,
        bootstrap: str,
        topic_prefix: str = "omni",
        config: Mapping[str, Any] | None = None,
        rules: Rules | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        schema_registry_url: str | None = None,
    ):
        self._out = _DeliveringProducer(producer_config(bootstrap, config))
        self.topic_prefix = topic_prefix
        self._registry = None
        if schema_registry_url:
            from connectors.registry import RegistrySchemas

            self._registry = RegistrySchemas(schema_registry_url)
        # Validation needs the rules but not the real phone key: nothing is hashed here.
        self._rules = rules or Rules(phone_key=b"validation-only")
        self._clock = clock
        self.sent: dict[str, int] = {}

    def validate(
        self, record: Touchpoint | BaseModel | Mapping[str, Any], type_name: str | None = None
    ) -> tuple[str, Touchpoint]:
        """The record as a model, or ``InvalidTouchpoint`` (a ``ValueError``) saying which
        field is wrong and why, never with the value: an application logging it logs no
        phone number (pydantic's own ``ValidationError`` prints the input)."""
        if isinstance(record, BaseModel) and type_name is None:
            try:
                type_name = type_name_of(record)
            except KeyError:
                raise InvalidTouchpoint(
                    "type", "unknown_type", type(record).__name__[:64]
                ) from None
        if type_name is None:
            raise InvalidTouchpoint("type", "missing", "name the event type")
        if type_name not in MODELS or type_name in INTERNAL_TYPES:
            raise InvalidTouchpoint("type", "unknown_type", str(type_name)[:64])
        if isinstance(record, BaseModel):
            # a model is checked again: model_copy(update=...) and model_construct skip
            # validation, and the workers would dead-letter what they let through
            record = record.model_dump()
        try:
            model = MODELS[type_name].model_validate(record)
        except ValidationError as exc:
            raise InvalidTouchpoint(*describe_validation_error(exc)) from None
        plan_event(type_name, model, self._rules, self._clock())  # type: ignore[arg-type]
        return type_name, model  # type: ignore[return-value]

    def send(
        self,
        record: Touchpoint | BaseModel | Mapping[str, Any],
        type_name: str | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        type_name, model = self.validate(record, type_name)
        avro = model.to_avro()
        topic = topic_for(self.topic_prefix, type_name)
        try:
            if self._registry is not None:
                value = self._registry.encode(topic, type_name, avro)
            else:
                value = encode(type_name, avro)
        except (ValueError, TypeError, OverflowError) as exc:  # what Avro cannot write
            raise InvalidTouchpoint("record", "not_encodable", str(exc)[:200]) from exc
        if len(value) > MAX_MESSAGE_BYTES:
            raise InvalidTouchpoint(
                "record", "too_large", f"{len(value)} bytes > {MAX_MESSAGE_BYTES}"
            )
        self._out.produce(
            topic,
            value=value,
            key=partition_key(type_name, avro),
            on_delivery=on_delivery,
        )
        self.sent[type_name] = self.sent.get(type_name, 0) + 1

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send bytes as they are (tests, replays of dead letters)."""
        self._out.produce(topic, value=value, key=key)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every send; raise ``DeliveryFailed`` if any did not arrive."""
        self._out.flush(timeout)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> TouchpointProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error_class: str
    reason: str
    field: str
    detail: str

    def kept(self) -> tuple[bytes | None, bytes]:
        """The key and value the letter carries: the first bytes of either when it is too
        large to keep whole (the whole stays in its source topic at the offset named)."""
        key = self.key[:DEAD_LETTER_KEY_BYTES] if self.key is not None else None
        return key, (self.value or b"")[:DEAD_LETTER_VALUE_BYTES]

    def headers(self, failed_at: datetime) -> list[tuple[str, bytes]]:
        size, key_size = len(self.value or b""), len(self.key or b"")
        return [
            *(
                [("omni.original.size", str(size).encode())]
                if size > DEAD_LETTER_VALUE_BYTES
                else []
            ),
            *(
                [("omni.original.key_size", str(key_size).encode())]
                if key_size > DEAD_LETTER_KEY_BYTES
                else []
            ),
            ("omni.original.topic", self.topic.encode()),
            ("omni.original.partition", str(self.partition).encode()),
            ("omni.original.offset", str(self.offset).encode()),
            ("omni.error.class", self.error_class.encode()),
            ("omni.error.reason", self.reason.encode()),
            ("omni.error.field", self.field.encode()),
            ("omni.error.detail", self.detail[:500].encode()),
            ("omni.failed_at", failed_at.isoformat().encode()),
        ]


class PipelineOutput:
    """Where a worker batch goes on Kafka: facts for the sink, dead letters for people."""

    def __init__(
        self,
        bootstrap: str,
        facts_topic: str,
        dlq_topic: str,
        config: Mapping[str, Any] | None = None,
    ):
        self._out = _DeliveringProducer(
            producer_config(bootstrap, config), per_message_reports=False
        )
        self.facts_topic = facts_topic
        self.dlq_topic = dlq_topic

    def dead_letters(self, letters: list[DeadLetter], now: datetime) -> None:
        for letter in letters:
            key, value = letter.kept()
            self._out.produce(self.dlq_topic, value=value, key=key, headers=letter.headers(now))
        self._out.flush()

    def facts(self, records_by_type: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Enriched facts, identity-log, ledger and stock entries, each keyed by its
        event_id; per-minute aggregates by their bucket."""
        for type_name, records in records_by_type.items():
            for record in records:
                self._out.produce(
                    self.facts_topic, value=encode(type_name, record), key=_key(record)
                )
        self._out.flush()


def _key(record: Mapping[str, Any]) -> bytes:
    if "event_id" in record:
        return str(record["event_id"]).encode()
    minute = int(record["minute"].timestamp())
    bucket = (minute, record["channel"], record["touchpoint_type"], record["store_id"])
    return "|".join(map(str, bucket)).encode()
