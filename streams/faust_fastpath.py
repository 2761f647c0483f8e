"""A faster message hand-over inside faust's consumer (``OMNI_FAUST_FAST_DRAIN``).

What: faust's ``Consumer._drain_messages`` hands every fetched message to the streams with
``await self.wait_first(callback(message), self.suspend_flow.wait())``. ``wait_first``
creates four tasks (the callback, the suspend event, the consumer's stopped and crashed
events) and an ``asyncio.wait`` per message; that is about half of the event loop's time
in a backlogged worker and caps a bare faust agent at a few thousand events/s.

The replacement (:func:`_drain_messages`, a copy of the original with only the delivery
line changed, see :func:`_deliver`) starts the callback directly, in the drain loop's own
task, when flow is not suspended and neither the consumer nor the fetcher is stopping.
The callback (``Conductor.on_message``) normally runs to its end without ever waiting:
the flow control is open, the producer buffer is low and the stream's queue has room. It
then costs one coroutine call instead of four tasks.

The caveat, and how it is handled: ``wait_first`` also *aborts* a delivery that has to
wait (a full stream buffer, suspended flow control, a producer buffer to ebb) when a
rebalance or a stop begins (``suspend_flow`` set, the consumer stopped or crashed). A plain
``await callback(message)`` would not: the message of a partition that may have been
revoked meanwhile would be queued after the rebalance cleared the buffers, and the read
offset set behind faust's seek to the committed offset (so later messages would be
dropped as already read). So :func:`_deliver` drives the callback's first step itself;
if the callback has to wait, the rest of it is turned into a task and handed to the
original ``wait_first`` -- exactly the stock behaviour from that point on, abort included.
Nothing else in faust changes: acknowledgement is still done by the stream after the
agent's batch is processed (streams/app.py), so nothing is acknowledged that was not.

Pinning: the patch is applied only to faust-streaming :data:`FAUST_VERSION` whose
``Consumer._drain_messages`` source has the SHA-256 :data:`ORIGINAL_SHA256` (the code this
module copies). On any other version or source it logs a warning and leaves faust as it
is. ``tests/unit/test_faust_fastpath.py`` fails when either changes. Switch it off with
``OMNI_FAUST_FAST_DRAIN=false``.

Also here, used with it: :class:`QuietMonitor`, faust's ``Monitor`` without the per-message
and per-event bookkeeping (its statistics feed faust's own web views, which omni does not
use; omni's metrics are in streams/metrics.py). faust's ``stream_buffer_maxsize`` is left
at its default (4096): a larger buffer lets a backlogged worker hold that many more
fetched messages (16384 added ~15 MB of RSS) for little gain once batches are the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, cast

import faust
from faust.sensors.monitor import Monitor
from faust.transport import consumer as faust_consumer
from mode import Service, ServiceT

log = logging.getLogger("omni.faust_fastpath")

#: The faust-streaming version this module was written against, and the SHA-256 of the
#: source of ``faust.transport.consumer.Consumer._drain_messages`` in it.
FAUST_VERSION = "0.15.3"
ORIGINAL_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"

_ORIGINAL = faust_consumer.Consumer._drain_messages
_state = {"applied": False}


def original_source() -> str:
    return inspect.getsource(_ORIGINAL)


def original_sha256() -> str:
    return hashlib.sha256(original_source().encode()).hexdigest()


def is_applied() -> bool:
    return faust_consumer.Consumer._drain_messages is _drain_messages


def mode() -> str:
    """``patched`` or ``stock``: which drain loop this process runs."""
    return "patched" if is_applied() else "stock"


def apply(enabled: bool = True) -> bool:
    """Install the fast drain loop if ``enabled`` and faust is the pinned version.

    Returns whether it is installed. Idempotent; ``apply(False)`` restores the original."""
    if not enabled:
        faust_consumer.Consumer._drain_messages = _ORIGINAL  # type: ignore[method-assign]
        return False
    if is_applied():
        return True
    version = getattr(faust, "__version__", "?")
    if version != FAUST_VERSION or original_sha256() != ORIGINAL_SHA256:
        log.warning(
            "OMNI_FAUST_FAST_DRAIN: faust-streaming %s is not the version the fast drain "
            "was written for (%s, or its Consumer._drain_messages changed); running faust "
            "unpatched",
            version,
            FAUST_VERSION,
        )
        return False
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    return True


def app_options(enabled: bool) -> dict[str, Any]:
    """Extra ``faust.App`` options that go with the fast drain (none when it is off)."""
    if not (enabled and is_applied()):
        return {}
    return {"Monitor": QuietMonitor}


class _Resume:
    """Continue a coroutine that has already been started and is waiting on ``pending``
    (what it yielded), as ``yield from`` would: results, exceptions and cancellation
    pass through to it."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, None, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                yield pending
            except BaseException as exc:  # thrown in by the task: cancellation
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value


async def _resumed(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _Resume(coro, pending)


async def _deliver(consumer: Any, callback: Any, message: Any) -> None:
    """Hand ``message`` to ``callback`` as ``wait_first(callback(message),
    consumer.suspend_flow.wait())`` does, without its tasks when the callback does not
    have to wait."""
    if consumer.suspend_flow.is_set() or consumer._stopped.is_set() or consumer._crashed.is_set():
        await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
        return
    coro = callback(message)
    try:
        pending = coro.send(None)
    except StopIteration:
        return  # delivered without waiting: the usual case
    except BaseException:
        coro.close()
        raise
    # It has to wait: from here on, the stock behaviour (abort on suspend/stop/crash).
    task = asyncio.ensure_future(_resumed(coro, pending))
    await consumer.wait_first(task, consumer.suspend_flow.wait())


# --- faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3), with the
# --- `await self.wait_first(callback(message), self.suspend_flow.wait())` line replaced by
# --- `await deliver(self, callback, message)`. Keep it otherwise identical.
async def _drain_messages(self: Any, fetcher: ServiceT) -> None:  # pragma: no cover
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    deliver = _deliver

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:  # noqa: SIM102 (as upstream)
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        await deliver(self, callback, message)
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


class QuietMonitor(Monitor):
    """faust's Monitor without the bookkeeping it does per message and per stream event
    (counters, timestamps, deques of recent latencies). Everything else is inherited."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_topic_buffer_full(self, tp: Any) -> None:
        return None


__all__ = [
    "FAUST_VERSION",
    "ORIGINAL_SHA256",
    "QuietMonitor",
    "app_options",
    "apply",
    "is_applied",
    "mode",
]
