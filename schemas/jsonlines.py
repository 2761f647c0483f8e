"""The JSON-lines form of the contract, for ``omni produce``: one JSON object per line,
the fields of the type's schema plus ``"type"`` naming it. Times are ISO-8601 with a
zone (``2026-11-11T20:00:00+08:00``); money is a string or number with at most two
decimals (``"129.90"``); enums are their symbols.

    {"type": "livestream_click", "envelope": {...}, "platform": "douyin",
     "room_id": "R1", "host_id": "H1"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.contract import TOUCHPOINT_TYPES
from schemas.models import MODELS, describe_validation_error


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


def parse_line(number: int, raw: bytes) -> tuple[str, BaseModel] | LineError:
    """One line -> (type name, model), or the first thing wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(number, "line", f"not UTF-8 (byte {exc.start})")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineError(number, "line", f"not JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return LineError(number, "line", "not JSON we read: nested too deeply")
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return LineError(number, "line", f"not JSON we read: {str(exc)[:80]}")
    if not isinstance(data, dict):
        return LineError(number, "line", "not a JSON object")
    type_name = data.pop("type", None)
    if type_name is None:
        return LineError(number, "type", "missing: name the event type")
    if type_name not in TOUCHPOINT_TYPES:
        return LineError(
            number,
            "type",
            f"unknown type {str(type_name)[:40]!r}; one of {', '.join(TOUCHPOINT_TYPES)}",
        )
    try:
        return type_name, MODELS[type_name].model_validate(data)
    except ValidationError as exc:
        field, _, detail = describe_validation_error(exc)
        return LineError(number, field, detail)


def to_json_line(type_name: str, record: BaseModel) -> str:
    """A record in its JSON-lines form (the inverse of ``parse_line``)."""
    return json.dumps({"type": type_name, **record.model_dump(mode="json")}, ensure_ascii=False)
