"""Where the services are: the explicit settings, else the running embedded stack's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from streams.settings import Settings

STACK_FILE = "stack.json"


class StackNotRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    redis_url: str
    clickhouse_dsn: str
    #: the sink's read API (embedded ClickHouse is readable only through its owner)
    sink_url: str | None = None
    #: its bearer token, if it requires one (never written to the stack record)
    sink_token: str | None = field(default=None, repr=False)
    #: Kafka client security configuration (librdkafka names), from the settings
    kafka_config: dict[str, str] = field(default_factory=dict, repr=False)


def stack_file(settings: Settings) -> Path:
    return settings.home / STACK_FILE


def read_stack(settings: Settings) -> dict | None:
    path = stack_file(settings)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def resolve(settings: Settings, kafka_only: bool = False) -> Endpoints:
    """Explicit settings win; what is unset comes from the embedded stack's record.
    ``kafka_only``: for commands that only produce or read topics (``omni simulate``,
    ``produce``, ``dlq``), which then run with OMNI_KAFKA_BOOTSTRAP alone."""
    stack = read_stack(settings) or {}
    found = stack.get("endpoints", {})
    kafka = settings.kafka_bootstrap or found.get("kafka_bootstrap")
    redis_url = settings.redis_url or found.get("redis_url") or ""
    dsn = settings.clickhouse_dsn or found.get("clickhouse_dsn") or ""
    needed = [("OMNI_KAFKA_BOOTSTRAP", kafka)]
    if not kafka_only:
        needed += [("OMNI_REDIS_URL", redis_url), ("OMNI_CLICKHOUSE_DSN", dsn)]
    missing = [name for name, value in needed if not value]
    if missing:
        raise StackNotRunning(
            f"{', '.join(missing)} not set and no embedded stack runs under {settings.home}: "
            "run `omni up` or set them"
        )
    token = settings.sink_api_token.get_secret_value() if settings.sink_api_token else None
    return Endpoints(
        kafka,  # type: ignore[arg-type]
        redis_url,  # type: ignore[arg-type]
        dsn,  # type: ignore[arg-type]
        found.get("sink_url"),
        token,
        settings.kafka_client_config() if settings.kafka_bootstrap else {},
    )
