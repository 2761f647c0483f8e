"""A line `omni produce` cannot read is a clear error for that line, whatever is wrong."""

from __future__ import annotations

import pytest

from schemas.jsonlines import LineError, parse_line


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON: Expecting property name enclosed in double quotes at column 2"),
        (b'{"type": "store_scan", "x": "\xff"}', "not UTF-8 (byte 29)"),
        # json.loads raises these as ValueError and RecursionError, not JSONDecodeError
        (b'{"type": "store_scan", "paid_amount": ' + b"1" * 5000 + b"}",
         "not JSON we read: Exceeds the limit (4300 digits) for integer string conversion: "),
        (b"[" * 100_000, "not JSON we read: nested too deeply"),
    ],
    ids=["not-json", "not-utf8", "huge-integer", "deep-nesting"],
)  # fmt: skip
def test_an_unreadable_line_is_a_line_error(raw: bytes, reason: str) -> None:
    found = parse_line(7, raw)
    assert isinstance(found, LineError)
    assert (found.line, found.field) == (7, "line")
    assert found.reason.startswith(reason)
