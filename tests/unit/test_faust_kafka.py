"""streams/faust_kafka.py: the aiokafka consumer faust builds waits as configured."""

from __future__ import annotations

import asyncio

import aiokafka

from streams.faust_kafka import FAUST_FETCH_MAX_WAIT_MS, ConsumerThread, OmniApp, Transport


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
