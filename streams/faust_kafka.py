"""faust's aiokafka transport with the one consumer setting faust does not expose: how
long a fetch may wait at the broker for data (``OMNI_CONSUMER_FETCH_MAX_WAIT_MS``).

Why: faust-streaming builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` fixed.
A Kafka broker answers a waiting fetch as soon as data arrives, so the figure is only an
upper bound there. The embedded broker (Tansu) does not: a fetch that finds no data is
answered when its wait runs out, and what was produced meanwhile waits with it. One
message every 0.3 s on the embedded stack, consumed by aiokafka
(``docs/benchmarks.md``): a 1,500 ms wait gave p50 408 ms from produce to fetch, 500 ms
gave 63 ms, 100 ms gave 5 ms. The cost is the broker's CPU: idle, 0.02 of a core instead
of 0.004; under a steady stream the embedded broker answers more, smaller fetches (numbers
in docs/benchmarks.md, "What changed", item 4).

How: :class:`OmniApp` (what ``streams.app.input_app`` builds) makes its consumer
transport :class:`Transport`, whose consumer thread sets the wait on the aiokafka
consumer faust has just built, before it is started (aiokafka hands the value to its
fetcher on start). Everything else is faust's own code. ``tests/unit/test_faust_kafka.py``
checks the consumer faust builds carries the value, so a faust or aiokafka release that
renames it fails there.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

#: faust-streaming's own value, for reference
FAUST_FETCH_MAX_WAIT_MS = 1500


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.consumer.app.fetch_max_wait_ms
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer


class OmniApp(faust.App):
    """``faust.App`` whose consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if fetch_max_wait_ms is not None:
            self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
