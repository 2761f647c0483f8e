"""`omni status` says in its table what the supervisor says of each component; `omni dlq
ls` lists the newest letters."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
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


def test_dlq_ls_lists_the_latest_letters_by_failure_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Letters are read partition by partition; before, --limit took the last ones read
    (here partition 3's), not the newest."""
    from connectors.dlq import Letter

    def letter(partition: int, failed_at: str) -> Letter:
        return Letter(partition, 0, "omni.touchpoint.store_scan", 0, partition, "DecodeError",
                      "bad_avro", "value", "", failed_at, None, b"x")  # fmt: skip

    read_order = [letter(1, "2026-12-02T10:00:03+00:00"), letter(2, "2026-12-02T10:00:01+00:00"),
                  letter(3, "2026-12-02T10:00:02+00:00")]  # fmt: skip
    monkeypatch.setattr(cli, "_letters", lambda reason=None, topic=None: list(read_order))
    result = CliRunner().invoke(cli.main, ["dlq", "ls", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert [x["ref"] for x in json.loads(result.output)["latest"]] == ["3:0", "1:0"]
