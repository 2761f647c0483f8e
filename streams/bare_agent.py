"""The framework ceiling that ``omni bench`` compares the workers with: a faust worker
configured like ``streams/app.py`` (same topics, same consumer settings, same
``take_events`` batches) whose agent only counts what it receives.

Run by the bench as ``python -m streams.bare_agent`` with the ``OMNI_*`` settings of the
stack plus ``OMNI_BENCH_BOOTSTRAP`` (the broker), ``OMNI_BENCH_GROUP`` (its own consumer
group, so it reads the topics from the start) and ``OMNI_BENCH_STATUS`` (a JSON file it
rewrites every 0.25 s with the number of events received so far, and ``faust_drain``:
``patched`` or ``stock``, see streams/faust_fastpath.py; ``OMNI_FAUST_FAST_DRAIN`` applies).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import faust

from schemas.topics import input_topics
from streams import faust_fastpath
from streams.settings import Settings
from streams.wiring import faust_credentials


def create_bare_app(settings: Settings, bootstrap: str, group: str, status: Path) -> faust.App:
    datadir = settings.home / "bare-agent-data" / str(os.getpid())
    datadir.mkdir(parents=True, exist_ok=True)
    faust_fastpath.apply(settings.faust_fast_drain)
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.consumer_session_timeout_s / 6),
        broker_max_poll_records=settings.batch_max_events,
        web_enabled=False,
        datadir=str(datadir),
        broker_credentials=faust_credentials(settings),
        **faust_fastpath.app_options(settings.faust_fast_drain),
    )
    source = app.topic(
        *input_topics(settings.topic_prefix), key_serializer="raw", value_serializer="raw"
    )
    counted = {"events": 0, "batches": 0}

    @app.agent(source, name="bare")
    async def bare(stream: faust.StreamT) -> None:
        async for events in stream.take_events(
            settings.batch_max_events, within=settings.batch_max_wait_s
        ):
            counted["events"] += len(events)
            counted["batches"] += 1

    @app.timer(0.25)
    async def report() -> None:
        tmp = status.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({**counted, "pid": os.getpid(), "faust_drain": faust_fastpath.mode()})
        )
        os.replace(tmp, status)

    return app


def main() -> None:
    settings = Settings()
    app = create_bare_app(
        settings,
        os.environ["OMNI_BENCH_BOOTSTRAP"],
        os.environ["OMNI_BENCH_GROUP"],
        Path(os.environ["OMNI_BENCH_STATUS"]),
    )
    sys.argv = ["omni-bare-agent", "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
