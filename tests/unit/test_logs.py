"""With OMNI_LOG_JSON every log line is one JSON object, whatever the message holds."""

from __future__ import annotations

import json
import logging

import pytest

from streams import logs


def lines(caplog_text: str) -> list[dict]:
    return [json.loads(line) for line in caplog_text.splitlines()]


def test_a_message_with_quotes_and_a_traceback_is_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup(json_lines=True)
    log = logging.getLogger("omni.test")
    # (before: the message went into a %-format string unescaped, and a traceback
    # followed on lines of its own)
    log.warning("consumer: %s", 'KafkaError{str="GroupCoordinator: broker down"}')
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("batch of %d failed", 3)
    first, second = lines(capsys.readouterr().err)
    assert first["msg"] == 'consumer: KafkaError{str="GroupCoordinator: broker down"}'
    assert (first["level"], first["logger"]) == ("WARNING", "omni.test")
    assert second["msg"] == "batch of 3 failed"
    assert second["exc"].startswith("Traceback") and "ValueError: bad\nthing" in second["exc"]


def test_the_workers_faust_config_formats_as_json() -> None:
    config = logs.faust_config(json_lines=True)
    assert config is not None and logs.faust_config(json_lines=False) is None
    formatter = config["formatters"]["json"]["()"]()
    record = logging.LogRecord("faust", logging.INFO, __file__, 1, "[^Worker]: %s", ("ok",), None)
    assert json.loads(formatter.format(record))["msg"] == "[^Worker]: ok"
