"""The framework ceiling that ``omni bench`` compares the workers with: a faust worker
configured like ``streams/app.py`` (same topics, same consumer settings, same
``take_events`` batches) whose agent only counts what it receives.

Started as ``COMMAND`` with the environment ``agent_env`` builds: the ``OMNI_*`` settings
of the stack plus ``OMNI_BENCH_BOOTSTRAP`` (the broker), ``OMNI_BENCH_GROUP`` (its own
consumer group, so it reads the topics from the start) and ``OMNI_BENCH_STATUS`` (a JSON
file it rewrites every 0.25 s with the number of events received so far, and
``faust_drain``: ``patched`` or ``stock``, see streams/faust_fastpath.py;
``OMNI_FAUST_FAST_DRAIN`` applies). ``read_status`` reads that file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import faust

from streams import faust_fastpath, gc_tuning
from streams.app import input_app
from streams.settings import Settings

COMMAND = [sys.executable, "-m", "streams.bare_agent"]
BOOTSTRAP, GROUP, STATUS = "OMNI_BENCH_BOOTSTRAP", "OMNI_BENCH_GROUP", "OMNI_BENCH_STATUS"


def agent_env(settings: Settings, bootstrap: str, group: str, status: Path) -> dict[str, str]:
    """What an agent's environment must hold, on top of the inherited one: the stack's
    settings, the broker, the agent's consumer group and its status file."""
    return {**settings.to_env(), BOOTSTRAP: bootstrap, GROUP: group, STATUS: str(status)}


def read_status(path: Path) -> dict[str, Any]:
    """What an agent last wrote to its status file (``report`` below), or ``{}`` before its
    first write."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def create_bare_app(settings: Settings, bootstrap: str, group: str, status: Path) -> faust.App:
    app, source = input_app(settings, bootstrap, group, "bare-agent-data")
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
        os.environ[BOOTSTRAP],
        os.environ[GROUP],
        Path(os.environ[STATUS]),
    )
    gc_tuning.tune(settings.gc_threshold)  # as the worker does
    # no web server: faust's worker command starts one unless told not to, whatever the
    # app's own web_enabled says, on port 6066 of every interface, so a second agent
    # (omni bench --workers 2) could not start
    sys.argv = ["omni-bare-agent", "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
