"""Reading the dead-letter topic back: listing, showing and replaying letters.

The topic is read by assigning every partition from the beginning (no consumer group,
so nothing is committed and no group join is waited for) until it stays quiet: end
offsets reported by some brokers are not trustworthy, so the end is what was consumed.
A letter written twice (its batch was retried) is listed once, by its provenance.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    original_topic: str
    original_partition: int
    original_offset: int
    error_class: str
    reason: str
    field: str
    detail: str
    failed_at: str
    key: bytes | None
    value: bytes
    #: set when the message was too large to keep whole: ``value`` is its head only
    original_size: int | None = None
    #: the same for a key too large to keep whole
    original_key_size: int | None = None

    @property
    def partial(self) -> bool:
        """Kept in part only: not the message as it was sent, so not to be replayed."""
        return self.original_size is not None or self.original_key_size is not None

    @property
    def ref(self) -> str:
        """How ``omni dlq show`` names it: ``<dlq partition>:<dlq offset>``."""
        return f"{self.partition}:{self.offset}"

    @property
    def provenance(self) -> tuple[str, int, int]:
        return (self.original_topic, self.original_partition, self.original_offset)

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("value")
        out.pop("key")
        out["size"] = len(self.value)
        out["ref"] = self.ref
        return out


def _letter(msg) -> Letter:  # type: ignore[no-untyped-def]
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
    return Letter(
        partition=msg.partition(),
        offset=msg.offset(),
        original_topic=headers.get("omni.original.topic", ""),
        original_partition=int(headers.get("omni.original.partition", "-1")),
        original_offset=int(headers.get("omni.original.offset", "-1")),
        error_class=headers.get("omni.error.class", ""),
        reason=headers.get("omni.error.reason", ""),
        field=headers.get("omni.error.field", ""),
        detail=headers.get("omni.error.detail", ""),
        failed_at=headers.get("omni.failed_at", ""),
        key=msg.key(),
        value=msg.value() or b"",
        original_size=_size(headers, "omni.original.size"),
        original_key_size=_size(headers, "omni.original.key_size"),
    )


def _size(headers: dict[str, str], name: str) -> int | None:
    return int(headers[name]) if name in headers else None


def read_letters(
    bootstrap: str,
    topic: str,
    quiet_s: float = 1.5,
    progress: Callable[[int], None] | None = None,
    config: Mapping[str, str] | None = None,
) -> Iterator[Letter]:
    consumer = Consumer(
        {
            **(config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": f"omni-dlq-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        seen: set[tuple[str, int, int]] = set()
        last_message = time.monotonic()
        count = 0
        while time.monotonic() - last_message < quiet_s:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is not None:
                    continue
                last_message = time.monotonic()
                letter = _letter(msg)
                count += 1
                if progress is not None:
                    progress(count)
                if letter.provenance in seen:
                    continue
                seen.add(letter.provenance)
                yield letter
    finally:
        consumer.close()
