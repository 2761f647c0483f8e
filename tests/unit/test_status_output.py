"""`omni status` says in its table what the supervisor says of each component."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from streams import cli


def _component(status: str, alive: bool, restarts: int) -> dict:
    return {"pid": 4242, "port": 6066, "alive": alive, "healthy": False, "status": status,
            "restarts": restarts, "exit_code": None if alive else 1,
            "log": "/tmp/omni/logs/w.log"}  # fmt: skip


def test_a_component_given_up_on_reads_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: restarted at most 3 times in 5 minutes, "then reported as `failed` by `omni
    status`". Before: only --json said so; the table showed a worker given up on and one
    being restarted alike."""
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buffer, width=250, color_system=None))
    state = {
        "state": "running", "workers": "running", "home": "/tmp/omni", "endpoints": {},
        "components": {"worker-1": _component("failed", alive=False, restarts=3),
                       "worker-2": _component("restarting", alive=False, restarts=1),
                       "sink": _component("healthy", alive=True, restarts=0)},
    }  # fmt: skip
    cli._print_status(state, as_json=False)
    lines = buffer.getvalue().splitlines()
    rows = {line.split()[1]: line for line in lines if "/tmp/omni/" in line}
    assert "failed (exit 1)" in rows["worker-1"]
    assert "restarting (exit 1)" in rows["worker-2"]
    assert "healthy" in rows["sink"] and "exit" not in rows["sink"]
