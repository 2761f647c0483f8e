"""streams/faust_kafka.py: the aiokafka consumer faust builds waits as configured; the
input topics' schema makes the events faust's raw serializers make."""

from __future__ import annotations

import asyncio

import aiokafka
import faust
import pytest
from faust.transport import producer as faust_producer
from faust.types import TP, Message

from streams.faust_kafka import (
    FAUST_FETCH_MAX_WAIT_MS,
    ConsumerThread,
    OmniApp,
    ProducerBuffer,
    RawSchema,
    Transport,
)


def _worker_consumer(app: OmniApp) -> aiokafka.AIOKafkaConsumer:
    thread = app.consumer._thread
    assert isinstance(thread, ConsumerThread)
    return thread._create_worker_consumer(app.transport)


def test_consumer_fetch_waits_as_configured() -> None:
    async def build() -> tuple[object, int, int]:
        app = OmniApp("fetch-wait-test", broker="kafka://127.0.0.1:9", fetch_max_wait_ms=100)
        consumer = _worker_consumer(app)
        # what aiokafka hands its fetcher on start (AIOKafkaConsumer.start)
        return app.transport, consumer._fetch_max_wait_ms, app.fetch_max_wait_ms

    transport, wait_ms, configured = asyncio.run(build())
    assert isinstance(transport, Transport)
    assert (wait_ms, configured) == (100, 100)


def test_without_a_setting_faust_keeps_its_own_wait() -> None:
    async def build() -> int:
        consumer = _worker_consumer(OmniApp("fetch-wait-default", broker="kafka://127.0.0.1:9"))
        return consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == FAUST_FETCH_MAX_WAIT_MS


def test_aiokafka_hands_the_wait_to_its_fetcher() -> None:
    # the attribute this module sets is the one aiokafka reads when it starts its fetcher
    import inspect

    source = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source


@pytest.mark.parametrize(
    ("key", "value"), [(b"k1", b"\x00\x01avro"), (None, b"v"), (b"k", None), (None, None)]
)
def test_raw_schema_makes_the_events_of_the_raw_serializers(
    key: bytes | None, value: bytes | None
) -> None:
    async def both() -> list[tuple]:
        app = OmniApp("raw-schema-test", broker="kafka://127.0.0.1:9")
        message = Message(
            "omni.t", 3, 41, 1_700_000_000.0, 0, [("h", b"1")], key, value, None, tp=TP("omni.t", 3)
        )
        stock = faust.Schema(key_serializer="raw", value_serializer="raw").compile(app)
        events = [await decode(message) for decode in (stock, RawSchema().compile(app))]
        return [(type(e), e.key, e.value, e.headers, e.message, e.app) for e in events]

    stock, raw = asyncio.run(both())
    assert raw == stock
    assert raw[1:3] == (key, value)


def test_the_input_topics_carry_the_raw_schema(tmp_path) -> None:
    from streams.app import input_app
    from streams.settings import Settings

    async def build() -> object:
        _, source = input_app(Settings(home=tmp_path), "127.0.0.1:9", "raw-schema-app", "d")
        return source.schema

    assert isinstance(asyncio.run(build()), RawSchema)


@pytest.mark.parametrize("threaded", [False, True])
def test_the_producer_buffer_counts_what_waits(threaded: bool) -> None:
    async def sizes() -> list[int]:
        app = OmniApp("buffer-test", broker="kafka://127.0.0.1:9")
        buffer = app.producer.buffer
        assert isinstance(buffer, ProducerBuffer)
        buffer._threaded = threaded  # as if the setting said so
        buffer.queue = asyncio.Queue() if threaded else None
        waiting = buffer.queue if threaded else buffer.pending
        seen = []
        for _ in range(3):
            seen.append(buffer.size)
            waiting.put_nowait(object())
        return seen

    assert asyncio.run(sizes()) == [0, 1, 2]


def test_the_producer_buffer_reads_the_setting_as_faust() -> None:
    async def size() -> tuple[int, int, bool | None]:
        app = OmniApp("buffer-setting", broker="kafka://127.0.0.1:9")
        buffer = app.producer.buffer
        buffer.pending.put_nowait(object())
        stock = faust_producer.ProducerBuffer.size.fget(buffer)  # type: ignore[attr-defined]
        return buffer.size, stock, buffer._threaded

    assert asyncio.run(size()) == (1, 1, False)
