"""Failed deliveries are never lost, whichever way a producer hears of them: the workers'
output (librdkafka reports failures only) and the producer SDK (a report per message).
Nothing listens on the port, so every message times out after ``message.timeout.ms``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.embedded import free_port
from connectors.errors import DeliveryFailed
from connectors.kafka import DeadLetter, PipelineOutput, TouchpointProducer

UNREACHABLE = {"message.timeout.ms": 300, "log_level": 0}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def entry(event_id: str) -> dict:
    return {
        "event_id": event_id,
        "rule": "earn:store_scan",
        "one_id": "O-1",
        "points": 12,
        "event_time": NOW,
        "processed_time": NOW,
        "source_topic": "omni.store_scan",
        "source_partition": 0,
        "source_offset": 7,
    }


@pytest.fixture
def output() -> PipelineOutput:
    return PipelineOutput(f"127.0.0.1:{free_port()}", "omni.facts", "omni.dlq", UNREACHABLE)


def test_facts_that_are_not_delivered_raise_and_say_how_many(output: PipelineOutput) -> None:
    with pytest.raises(
        DeliveryFailed, match=r"^3 deliveries failed; first: omni\.facts: .*timed out"
    ):
        output.facts({"points_entry": [entry("e-1"), entry("e-2"), entry("e-3")]})
    # reported once: the next batch starts clean
    with pytest.raises(DeliveryFailed, match=r"^1 deliveries failed"):
        output.facts({"points_entry": [entry("e-4")]})


def test_dead_letters_that_are_not_delivered_raise(output: PipelineOutput) -> None:
    letter = DeadLetter("omni.store_scan", 0, 9, b"k", b"\x00", "DecodeError", "truncated",
                        "value", "short")  # fmt: skip
    with pytest.raises(DeliveryFailed, match=r"omni\.dlq: .*timed out"):
        output.dead_letters([letter], NOW)


def test_the_output_takes_no_per_message_callback(output: PipelineOutput) -> None:
    with pytest.raises(ValueError, match="failed deliveries only"):
        output._out.produce("omni.facts", b"x", on_delivery=lambda err, msg: None)


def test_the_sdk_reports_each_message_and_raises_at_flush() -> None:
    reports: list = []
    producer = TouchpointProducer(f"127.0.0.1:{free_port()}", config=UNREACHABLE)
    producer.send_raw("omni.store_scan", b"x", b"k")
    producer._out.produce("omni.store_scan", b"y", on_delivery=lambda e, m: reports.append(e))
    with pytest.raises(DeliveryFailed, match=r"^2 deliveries failed"):
        producer.flush(10)
    assert [e.name() for e in reports] == ["_MSG_TIMED_OUT"]
