"""The script's per-event log as the worker reads it: a stock movement is an array now and
was an object before; dedupe records of either kind are alive together for
``OMNI_DEDUPE_TTL_S`` after an upgrade, and a redelivered event re-emits what its record
holds."""

from __future__ import annotations

import json

from connectors.redis_views import StockMove, _parse

ATTRIBUTED = {"action": "attributed", "one_id": "O7", "other": "", "reason": "livestream:r1",
              "kept": {}, "moved": {}, "points": 0}  # fmt: skip
MOVE_AS_ARRAY = ["stock", "SKU-1", "S01", "sale", -2, 0, 3, 0, 7, ""]
MOVE_AS_OBJECT = {"action": "stock", "sku": "SKU-1", "loc": "S01", "kind": "sale", "d_on": -2,
                  "d_res": 0, "on": 3, "res": 0, "v": 7, "ref": ""}  # fmt: skip
HOLD_LAPSED = ["stock", "SKU-2", "S02", "expire", 0, -1, 4, 0, 9, "hold:A-1"]


def _record(*entries: object) -> bytes:
    return b"O7|0||12|" + json.dumps(list(entries)).encode()


def test_a_movement_reads_the_same_in_either_form() -> None:
    new = _parse(b"new", _record(ATTRIBUTED, MOVE_AS_ARRAY))
    old = _parse(b"replay", _record(ATTRIBUTED, MOVE_AS_OBJECT))
    assert (
        new.stock_moves
        == old.stock_moves
        == (StockMove("SKU-1", "S01", "sale", -2, 0, 3, 0, 7, ""),)
    )
    # the entries that are not movements are read as before, beside them
    assert new.attribution == old.attribution == "livestream:r1"
    assert new.identity_log == old.identity_log and len(new.identity_log) == 1
    assert (new.one_id, new.points, old.status) == ("O7", 12, "replay")


def test_a_lapsed_hold_keeps_its_reference() -> None:
    got = _parse(b"new", _record(MOVE_AS_ARRAY, HOLD_LAPSED))
    assert [m.ref for m in got.stock_moves] == ["", "hold:A-1"]
    assert got.stock_moves[1] == StockMove("SKU-2", "S02", "expire", 0, -1, 4, 0, 9, "hold:A-1")
    assert got.identity_log == ()
