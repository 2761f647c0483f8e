"""/metrics of a worker and of the sink, scraped before and after traffic: the counters
move by exactly what went through."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from prometheus_client.samples import Sample

from connectors.kafka import TouchpointProducer
from streams.demo import publish, wait_accounted
from streams.metrics import scrape, total
from streams.simulate import Simulation

from .conftest import Running

pytestmark = pytest.mark.integration


def test_metrics_move_with_traffic(run_stack: Callable[..., Running]) -> None:
    stack = run_stack(workers=1)
    worker, sink = stack.workers[0], stack.sink
    assert sink is not None
    before_w, before_s = scrape(worker.port), scrape(sink.port)
    assert total(before_w, "omni_events_total") == 0

    sim = Simulation(800, seed=71, duplicate_share=0.05, malformed_share=0.05)
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix) as p:
        publish(sim, p, stack.settings.topic_prefix)
    stats = wait_accounted(stack.views, stack.endpoints, 800, timeout=120)

    # a worker counts a batch after it has written Redis and published the facts, and the
    # sink after its insert and commit: the stores can show the last batch a moment
    # before /metrics does
    def sink_facts(samples: list[Sample]) -> float:
        return total(samples, "omni_sink_rows_total", table="touchpoint_facts") - total(
            before_s, "omni_sink_rows_total", table="touchpoint_facts"
        )

    deadline = time.monotonic() + 30
    while (
        total(after_w := scrape(worker.port), "omni_events_total") < 800
        or sink_facts(after_s := scrape(sink.port)) < stats["clickhouse_rows"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert total(after_w, "omni_events_total") == 800
    assert total(after_w, "omni_events_total", outcome="new") == stats["facts"]
    assert total(after_w, "omni_events_total", outcome="duplicate") == stats["duplicates"]
    assert total(after_w, "omni_dead_letters_total") == stats["dead_lettered"] > 0
    # (merges depend on how the topics interleave: some runs have none, and Redis then
    # holds no counter for them)
    merges = stats.get("merges", 0)
    assert total(after_w, "omni_identity_changes_total", action="merge") == merges
    assert total(after_w, "omni_event_lag_seconds_count") == stats["facts"]
    assert total(after_w, "omni_redis_apply_seconds_count") >= 1
    assert total(after_w, "omni_batch_events_sum") == 800
    lags = [s.value for s in after_w if s.name == "omni_consumer_lag"]
    assert lags and all(v == 0 for v in lags)  # caught up on every partition it reads
    assert sink_facts(after_s) == stats["clickhouse_rows"] == stats["facts"]
    assert total(after_s, "omni_sink_insert_seconds_count") >= 1
    # both froze what startup left, with the collection before it observed (gc_tuning.tune)
    for samples in (after_w, after_s):
        assert total(samples, "omni_gc_pause_seconds_count", generation="2") >= 1


def test_json_logs_are_json_in_the_worker_and_the_sink(run_stack: Callable[..., Running]) -> None:
    # (before: the worker kept faust's plain lines, and a quote in a message broke the
    # sink's; librdkafka's own lines, "%<level>|...", are not Python's and stay as they are)
    stack = run_stack(workers=1, log_json=True)
    sim = Simulation(100, seed=72, duplicate_share=0, malformed_share=0.05)
    with TouchpointProducer(stack.endpoints.kafka_bootstrap, stack.settings.topic_prefix) as p:
        publish(sim, p, stack.settings.topic_prefix)
    wait_accounted(stack.views, stack.endpoints, 100, timeout=120)
    for proc, least in ((stack.workers[0], 10), (stack.sink, 2)):
        assert proc is not None
        lines = proc.log_path.read_text(errors="replace").splitlines()
        parsed = [json.loads(line) for line in lines if not line.startswith("%")]
        assert len(parsed) >= least, lines[:20]
        assert all({"ts", "level", "logger", "msg"} <= set(p) for p in parsed)
        if proc is stack.workers[0]:
            assert any(p["logger"].startswith("faust") for p in parsed)
