"""The bench's bare faust agents: several run side by side, as ``omni bench --workers N``
starts them, with faust's web port taken."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from streams.bare_agent import COMMAND, agent_env, read_status
from tests.integration.conftest import SettingsFactory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAUST_WEB_PORT = 6066  # what faust's worker command binds unless told otherwise


def test_two_bare_agents_run_side_by_side_without_a_web_server(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    group = f"bare-{uuid.uuid4().hex[:8]}"
    statuses = [tmp_path / f"status-{i}.json" for i in (1, 2)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    with contextlib.ExitStack() as stack:
        # faust's default port taken (here, or already by something else on this machine):
        # an agent that tried to serve on it would exit
        taken = socket.socket()
        stack.callback(taken.close)
        with contextlib.suppress(OSError):
            taken.bind(("0.0.0.0", FAUST_WEB_PORT))
            taken.listen()
        procs = []
        for status in statuses:
            proc = subprocess.Popen(
                COMMAND,
                cwd=ROOT,
                env={
                    **env,
                    **agent_env(settings, settings.kafka_bootstrap or "", group, status),
                    "PYTHONPATH": str(ROOT),
                },
                stdout=subprocess.DEVNULL,
                stderr=stack.enter_context((tmp_path / f"agent-{len(procs) + 1}.log").open("w")),
            )
            stack.callback(proc.wait, 30)
            stack.callback(proc.terminate)
            procs.append(proc)
        deadline = time.monotonic() + 90
        while not all(read_status(s).get("pid") for s in statuses):
            assert all(p.poll() is None for p in procs), [
                (tmp_path / f"agent-{i}.log").read_text()[-2000:] for i in (1, 2)
            ]
            assert time.monotonic() < deadline, "the agents never reported"
            time.sleep(0.1)
        time.sleep(1.0)  # past joining the group: still both running
        assert all(p.poll() is None for p in procs)
        assert {read_status(s)["pid"] for s in statuses} == {p.pid for p in procs}
