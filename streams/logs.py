"""Log lines for operators: plain text, or with ``OMNI_LOG_JSON`` one JSON object a line
(``ts``, ``level``, ``logger``, ``pid``, ``msg``, and ``exc`` with the traceback), for
every process: the sink and the CLI through ``setup``, the workers through faust's
``logging_config`` (``faust_config``)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

PLAIN = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a record; the message and traceback escaped as JSON strings."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def faust_config(json_lines: bool) -> dict[str, Any] | None:
    """faust's ``logging_config`` for a worker: None keeps faust's own plain lines."""
    if not json_lines:
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "INFO", "handlers": ["default"]},
    }
