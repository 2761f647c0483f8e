"""`omni status` never shows a password."""

from __future__ import annotations

from streams.cli import redact


def test_passwords_in_urls_and_dsns_are_replaced() -> None:
    state = {
        "endpoints": {
            "redis_url": "redis://omni:s3cret@redis:6379/0",
            "clickhouse_dsn": "https://user:p%40ss@ch.example:8443/default",
            "kafka_bootstrap": "kafka:9092",
            "plain": "redis://redis:6379/0",
        },
        "components": [{"log": "/var/log/x"}],
        "pid": 12,
    }
    shown = redact(state)
    assert shown["endpoints"] == {
        "redis_url": "redis://omni:***@redis:6379/0",
        "clickhouse_dsn": "https://user:***@ch.example:8443/default",
        "kafka_bootstrap": "kafka:9092",
        "plain": "redis://redis:6379/0",
    }
    assert shown["components"] == [{"log": "/var/log/x"}] and shown["pid"] == 12
    assert "s3cret" not in str(shown) and "p%40ss" not in str(shown)
