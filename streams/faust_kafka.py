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

Also here: :class:`RawSchema`, the input topics' schema. The pipeline decodes keys and
values itself (``schemas/codec.py``), so faust's own decoding has nothing to do but it
still ran per message: the serializer registry, the ``raw`` codec, a payload check and two
lookups in faust's settings object, about 15 % of a bare agent's event loop
(docs/benchmarks.md, "What changed", item 14). And :class:`ProducerBuffer`: the
conductor asks faust's producer buffer for its size before it hands on each message, and
faust's ``size`` looked a setting up in the settings object on every call (another 5 %).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport import producer as faust_producer
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


class ProducerBuffer(faust_producer.ProducerBuffer):
    """faust's buffer of messages its producer has yet to send (a table's changelog; the
    workers write none), whose ``size`` looks ``producer_threaded`` up once instead of on
    every call: faust's conductor calls it for every message it hands on
    (``ProducerBuffer.wait_until_ebb``), and faust's settings object makes each lookup
    costly. The setting cannot change while the app runs."""

    _threaded: bool | None = None

    @property
    def size(self) -> int:
        threaded = self._threaded
        if threaded is None:
            threaded = self._threaded = bool(self.app.conf.producer_threaded)  # type: ignore[union-attr]
        if threaded:
            return len(self.queue._queue) if self.queue else 0  # type: ignore[attr-defined]
        return len(self.pending._queue)  # type: ignore[attr-defined]


class Producer(driver.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the buffer faust made, given the one property above (it holds no other state)
        self.buffer.__class__ = ProducerBuffer


class Transport(driver.Transport):
    Consumer = Consumer
    Producer = Producer


class OmniApp(faust.App):
    """``faust.App`` whose consumer waits at most ``fetch_max_wait_ms`` per fetch, and
    whose stop gives up on the batch in hand after a grace period."""

    fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS
    #: set ``shutdown_grace_s`` after a stop begins (streams/app.py: the batch in hand is
    #: then given up, unacknowledged)
    give_up: threading.Event | None = None
    shutdown_grace_s: float = 30.0

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if fetch_max_wait_ms is not None:
            self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        # faust waits for every stream to be empty before it signals the stop to anyone
        # (on_before_shutdown): a batch waiting for Redis would hold a stopping worker for
        # good, so the grace period starts here
        if self.give_up is not None:
            asyncio.get_running_loop().call_later(self.shutdown_grace_s, self.give_up.set)
        await super().on_stop()


class RawSchema(faust.Schema):
    """A topic schema whose events carry the message's key and value as the bytes Kafka
    delivered, as faust's ``raw`` serializers would leave them, without running them.

    ``compile`` is the hook faust's topics call once for the function that turns each
    message into an event (``faust.Schema.compile``); the event class is looked up once
    there instead of per message. Nothing can fail to decode, so the error callbacks are
    never called."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")  # fmt: skip

    def compile(
        self, app: Any, *, default_propagate: bool = False, **_: Any
    ) -> Callable[..., Awaitable[Any]]:
        event = app.conf.Event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return event(app, message.key, message.value, message.headers, message)

        return decode
