"""Commands that only produce to or read topics (omni simulate, produce, dlq ls) run with
OMNI_KAFKA_BOOTSTRAP alone, as docker-compose.yml tells a user to run them from the host,
where Redis and ClickHouse are not published."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.topics import input_topics

from ..harness import tenant_settings
from .conftest import Services

pytestmark = pytest.mark.integration


def test_simulate_and_dlq_need_only_the_kafka_bootstrap(services: Services, tmp_path: Path) -> None:
    settings = tenant_settings(services.bootstrap, services.redis_url, tmp_path)
    env = {k: v for k, v in settings.to_env().items()
           if k not in ("OMNI_REDIS_URL", "OMNI_CLICKHOUSE_DSN")}  # fmt: skip

    def omni(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip

    # before: "OMNI_REDIS_URL, OMNI_CLICKHOUSE_DSN not set and no embedded stack runs"
    simulated = omni("simulate", "--events", "30", "--malformed", "0", "--duplicates", "0")
    assert simulated.returncode == 0, simulated.stderr
    listed = omni("dlq", "ls")
    assert listed.returncode == 0, listed.stderr
    consumer = Consumer({"bootstrap.servers": services.bootstrap, "group.id": "count",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for topic in input_topics(settings.topic_prefix)
                     for p in range(settings.topic_partitions)])  # fmt: skip
    received, deadline = 0, time.monotonic() + 60
    try:
        while received < 30 and time.monotonic() < deadline:
            received += sum(1 for m in consumer.consume(100, timeout=1) if m.error() is None)
    finally:
        consumer.close()
    assert received == 30
    # what does need Redis still says so
    member = omni("member", "card:C00000001")
    assert member.returncode != 0 and "OMNI_REDIS_URL" in member.stderr
