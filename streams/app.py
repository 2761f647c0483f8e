"""The faust application: one agent over every input topic, consuming in batches.

The agent is deliberately thin: it turns faust events into ``Inbound`` messages and hands
each batch to ``TouchpointPipeline`` on a worker thread, so the event loop keeps the
consumer group alive while Redis and Kafka calls are under way. No ``group_by``: events
are keyed by their producers (schemas/topics.py), so no repartition topic is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from schemas.topics import input_topics
from streams import faust_fastpath, logs, metrics
from streams.core.guard import InvalidShareExceeded
from streams.endpoints import Endpoints
from streams.faust_kafka import OmniApp, RawSchema
from streams.settings import Settings
from streams.wiring import faust_credentials
from streams.wiring import pipeline as build_pipeline

log = logging.getLogger("omni.worker")


def kafka_ms(timestamp: float | None) -> int | None:
    """A faust message's timestamp (seconds, as aiokafka's milliseconds / 1000) as the
    milliseconds ``Inbound`` takes; None when the message has none."""
    if timestamp is None or timestamp < 0:
        return None
    return round(timestamp * 1000)


def _exit_unacknowledged(size: int, code: int = 75) -> None:
    """Leave without acknowledging, so the batch is redelivered to whoever takes the
    partitions next (the views ignore what they already applied)."""
    log.critical("stopping with an unapplied batch of %d; exiting without commit", size)
    logging.shutdown()
    os._exit(code)


async def _finish_before_ack(
    work: asyncio.Future, stopping: threading.Event, size: int, grace_s: float
) -> Any:
    try:
        report = await asyncio.wait_for(asyncio.shield(work), grace_s)
    except TimeoutError:
        stopping.set()
        report = await work
    if report is None:
        _exit_unacknowledged(size)
    return report


def input_app(
    settings: Settings, bootstrap: str, app_id: str, data: str, **options: Any
) -> tuple[OmniApp, Any]:
    """A faust app consuming the input topics as the workers do, and its source topic. The
    worker and the benchmark's bare agent (streams/bare_agent.py) both start from it, so
    the baseline measures the very consumer configuration the pipeline runs on."""
    datadir = settings.home / data / str(os.getpid())
    datadir.mkdir(parents=True, exist_ok=True)
    faust_fastpath.apply(settings.faust_fast_drain)
    app = OmniApp(
        app_id,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.consumer_session_timeout_s / 6),
        broker_max_poll_records=settings.batch_max_events,
        datadir=str(datadir),
        broker_credentials=faust_credentials(settings),
        **faust_fastpath.app_options(settings.faust_fast_drain),
        **options,
    )
    source = app.topic(*input_topics(settings.topic_prefix), schema=RawSchema())
    return app, source


def create_app(settings: Settings, endpoints: Endpoints, web_port: int) -> faust.App:
    app, source = input_app(
        settings,
        endpoints.kafka_bootstrap,
        settings.app_id,
        "worker-data",
        producer_acks=-1,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_port=web_port,
        web_host="127.0.0.1",
        logging_config=logs.faust_config(settings.log_json),
    )
    state: dict[str, Any] = {"ready": False, "batches": 0, "events": 0}
    positions: dict[tuple[str, int], int] = {}
    stopping = threading.Event()
    app.give_up, app.shutdown_grace_s = stopping, settings.shutdown_grace_s
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omni-batch")
    pipeline = build_pipeline(settings, endpoints)

    @app.on_rebalance_complete.connect
    async def _assigned(sender: Any, **_: Any) -> None:
        state["ready"] = True

    prep_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omni-prepare")

    async def _settle(work: asyncio.Future, events: list[Any], size: int) -> None:
        """Wait for a batch's views and facts, then acknowledge its messages: each holds
        an extra reference from the agent, so faust alone never acknowledges them."""
        try:
            report = await asyncio.shield(work)
        except asyncio.CancelledError:
            report = await _finish_before_ack(work, stopping, size, settings.shutdown_grace_s)
            _acknowledge(events, report)
            raise
        except Exception:
            # Not bad input (that is dead-lettered per message) but a fault of ours or of
            # a store: leave without acknowledging the batch. It is redelivered after a
            # restart, and a fault that repeats leaves the worker reported as failed, not
            # data lost.
            log.exception("batch of %d failed unexpectedly", size)
            _exit_unacknowledged(size)
        if report is None:
            _exit_unacknowledged(size)
        _acknowledge(events, report)

    def _acknowledge(events: list[Any], report: Any) -> None:
        consumer = app.consumer
        for e in events:
            e.message.ack(consumer)
        state["batches"] += 1
        state["events"] += report.size
        for e in events:  # the next offset each partition will read
            tp = (e.message.topic, e.message.partition)
            positions[tp] = max(positions.get(tp, 0), e.message.offset + 1)

    @app.agent(source, name="touchpoints")
    async def touchpoints(stream: faust.StreamT) -> None:
        """Batch N+1 is decoded and planned (``prepare``) while batch N's views and facts
        go out (``finish``, one thread, so batches reach Redis in offset order); a batch
        is acknowledged by ``_settle`` once finished. ``OMNI_BATCH_OVERLAP=false``: one
        batch at a time."""
        from streams.pipeline import Inbound

        loop = asyncio.get_running_loop()
        settling: asyncio.Future | None = None
        # a batch taken from faust whose finish has not been started: (prepare, events)
        unfinished: tuple[asyncio.Future, list[Any]] | None = None

        async def finish_in_hand() -> None:
            """On stop: the batch being finished, then the one being prepared."""
            if settling is not None:
                await settling
            if unfinished is not None:
                prepare, events = unfinished
                try:
                    prepared = await prepare
                except Exception:  # not applied, so never acknowledged: redelivered
                    prepared = None
                if prepared is None:
                    log.warning("stopping before a batch of %d was prepared", len(events))
                    return
                work = loop.run_in_executor(
                    executor, pipeline.finish_until_done, prepared, stopping
                )
                await _settle(work, events, len(events))

        try:
            async for events in stream.take_events(
                settings.batch_max_events, within=settings.batch_max_wait_s
            ):
                for e in events:  # released by _settle, after the batch is finished
                    e.message.incref()
                    # a partition's lag counts from here until a batch of it is finished
                    # (a batch that cannot be applied leaves its partitions behind)
                    positions.setdefault((e.message.topic, e.message.partition), e.message.offset)
                batch = [
                    Inbound(
                        e.message.topic,
                        e.message.partition,
                        e.message.offset,
                        e.message.key,
                        e.message.value,
                        kafka_ms(e.message.timestamp),
                    )
                    for e in events
                ]
                prepare = loop.run_in_executor(
                    prep_executor, pipeline.prepare_until_done, batch, stopping
                )
                unfinished = (prepare, events)
                try:
                    prepared = await asyncio.shield(prepare)
                except asyncio.CancelledError:
                    raise
                except InvalidShareExceeded as exc:
                    log.critical("stopping: %s", exc)
                    _exit_unacknowledged(len(batch), code=78)
                except Exception:
                    log.exception("batch of %d failed unexpectedly", len(batch))
                    _exit_unacknowledged(len(batch))
                if prepared is None:  # stopping while the schema registry was down
                    _exit_unacknowledged(len(batch))
                if settling is not None:
                    await asyncio.shield(settling)
                work = loop.run_in_executor(
                    executor, pipeline.finish_until_done, prepared, stopping
                )
                settling = asyncio.ensure_future(_settle(work, events, len(batch)))
                unfinished = None
                if not settings.batch_overlap:
                    await asyncio.shield(settling)
        except asyncio.CancelledError:
            # stopping: finish what is in hand (and acknowledge it) first
            if settling is not None or unfinished is not None:
                drain = asyncio.ensure_future(finish_in_hand())
                try:
                    await asyncio.wait_for(asyncio.shield(drain), settings.shutdown_grace_s)
                except TimeoutError:
                    stopping.set()
                    await drain
            raise

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "pid": os.getpid()})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        body = {
            "ready": state["ready"],
            "batches": state["batches"],
            "events": state["events"],
            "faust_drain": faust_fastpath.mode(),
        }
        return web.json(body, status=200 if state["ready"] else 503)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        from faust.types import TP

        for (topic, partition), position in list(positions.items()):
            try:
                end = app.consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned here any more: another worker reports it
                positions.pop((topic, partition), None)
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(topic, str(partition))
                continue
            if end is not None:
                metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(0, end - position))
        body, content_type = metrics.render()
        # aiohttp takes the charset apart from the media type
        response = web.bytes(body, content_type=content_type.split(";")[0])
        response.charset = "utf-8"
        return response

    @app.on_before_shutdown.connect
    async def _stop(sender: Any, **_: Any) -> None:
        stopping.set()

    return app
