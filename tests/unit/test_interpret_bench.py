"""``python -m tests.interpret_bench``: passes in fresh processes over the same messages
plan alike, and the report says so."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest

from tests import interpret_bench


def test_passes_of_one_checkout_plan_alike(capsys: pytest.CaptureFixture[str]) -> None:
    root = str(interpret_bench.ROOT)
    code = interpret_bench.main(
        ["--messages", "400", "--members", "300", "--rounds", "1", "--code", root, "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["same_plans"] is True
    assert set(report["variants"]) == {"working tree", root}
    for variant in report["variants"].values():
        assert len(variant["us_per_message"]) == 1 and variant["median"] > 0


def test_the_digest_covers_what_each_message_became(tmp_path: Path) -> None:
    wires = interpret_bench.messages(200, 300)
    now_ms = int(time.time() * 1000)
    digests = []
    for n, variant in enumerate((wires, wires, [*wires[:-1], (wires[-1][0], None, b"junk")])):
        path = tmp_path / f"{n}.pickle"
        path.write_bytes(pickle.dumps(variant))
        digests.append(interpret_bench.run_pass(interpret_bench.ROOT, path, now_ms)["digest"])
    assert digests[0] == digests[1] != digests[2]
