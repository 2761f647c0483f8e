"""`omni rebuild` and the people ClickHouse already knows: the rebuilt views give each
member the OneID their facts have (``omni forget`` deletes ClickHouse rows by OneID, and
the people panels count by it); an erased person's re-sent events stay duplicates through
a rebuild and after it; and workers never apply batches to views a rebuild left half
built."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.errors import ViewsUnavailable
from schemas.codec import encode
from schemas.models import type_name_of
from schemas.topics import input_topics, partition_key, topic_for
from streams import reads
from streams import rebuild as rebuilding
from streams.core.identity import parse_lookup
from streams.pipeline import TouchpointPipeline
from streams.wiring import phone_key

from ..unit.factories import card, phone, unionid
from .conftest import Running
from .test_rebuild import (
    Traffic,
    omni,
    rebuild,
    record_workers,
    scan,
    snapshot,
    stop_workers,
    wipe_prefix,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(run_stack: Any) -> Running:
    running: Running = run_stack(workers=1)
    record_workers(running)
    return running


def scalar(stack: Running, sql: str) -> int:
    return int(reads.scalar(stack.endpoints, sql) or 0)


def wait_facts(stack: Running, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while scalar(stack, "SELECT count() FROM touchpoint_facts FINAL") < count:
        assert time.monotonic() < deadline, "the sink never landed the facts"
        time.sleep(0.3)


def fact_one_ids(stack: Running) -> dict[str, str]:
    rows = reads.query(
        stack.endpoints, "SELECT event_id, any(one_id) FROM touchpoint_facts GROUP BY event_id"
    ).rows
    return {str(event_id): str(one_id) for event_id, one_id in rows}


def forget(stack: Running, lookup: str) -> dict[str, Any]:
    done = omni(stack, "forget", lookup, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def resume_worker(stack: Running, t: Traffic) -> None:
    stack.restart_worker(stack.workers[0])
    record_workers(stack)
    stats = stack.views.stats()  # the rebuilt views count only what the rebuild replayed
    t.sent = stats.get("processed", 0) + stats.get("dead_lettered", 0)


def test_rebuilt_members_keep_the_oneids_of_their_facts(stack: Running) -> None:
    """Four new members at once over three stores (partitions), then two of them again:
    nothing depends on the order, yet the rebuild reads the partitions in another order
    than the worker did. Every member keeps the OneID ClickHouse holds their facts under,
    after a full rebuild and after the same `--from` twice; `omni forget` then deletes
    exactly that person's rows."""
    t = Traffic(stack)
    stores = ("S001", "S002", "S003")
    first = [scan(t, [card(f"D{i}")], i, stores[i % 3], "10.00") for i in range(4)]
    t.send(first)
    t.wait()
    since = int(time.time() * 1000) + 5
    time.sleep(0.05)
    again = [scan(t, [card(f"D{i}")], 30 + i, ("S002", "S003")[i], "3.00") for i in range(2)]
    t.send(again)
    t.wait()
    wait_facts(stack, 6)
    live = snapshot(stack)
    recorded = fact_one_ids(stack)
    stop_workers(stack)

    wipe_prefix(stack)  # Redis lost
    rebuild(stack)
    rebuilt = snapshot(stack)
    for i, record in enumerate(first):
        assert stack.views.resolve(f"card:D{i}") == recorded[record.envelope.event_id]
    assert rebuilt["links"] == live["links"]
    rebuild(stack, "--from", str(since))
    once = snapshot(stack)
    rebuild(stack, "--from", str(since))
    assert snapshot(stack)["links"] == once["links"]
    assert once["links"] == {f"i:card:D{i}": live["links"][f"i:card:D{i}"] for i in range(2)}

    forget(stack, "card:D0")
    left = {r.envelope.event_id for r in first + again} - set(fact_one_ids(stack))
    assert left == {first[0].envelope.event_id, again[0].envelope.event_id}


def test_a_rebuild_of_cut_topics_numbers_new_members_above_clickhouse(
    stack: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention deleted the oldest messages (the embedded broker cannot: the low
    watermarks are put into plan_ranges): a full rebuild meets only part of the people. B,
    met again, keeps O2; were B's fact not in ClickHouse (the sink behind), B would be
    numbered above every OneID issued, never from O1, which A holds."""
    t = Traffic(stack)
    t.send([scan(t, [card("A1")], 0, "S001", "40.00")])
    t.wait()
    t.send([scan(t, [card("B1")], 1, "S002", "5.00")])
    t.wait()
    reader = Consumer({"bootstrap.servers": stack.endpoints.kafka_bootstrap, "group.id": "x"})
    cut = {}
    for topic in input_topics(stack.settings.topic_prefix):
        for p in reader.list_topics(topic, timeout=10).topics[topic].partitions:
            cut[(topic, p)] = reader.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
    reader.close()
    t.send([scan(t, [card("B1")], 30, "S003", "7.00")])  # B comes back
    t.wait()
    wait_facts(stack, 3)
    assert [stack.views.resolve(f"card:{c}") for c in ("A1", "B1")] == ["O1", "O2"]
    stop_workers(stack)
    planned = rebuilding.plan_ranges

    def after_retention(*args: Any, **kwargs: Any) -> list[rebuilding.PartitionRange]:
        return [
            dataclasses.replace(r, start=max(r.start, cut.get((r.topic, r.partition), 0)))
            for r in planned(*args, **kwargs)
        ]

    monkeypatch.setattr(rebuilding, "plan_ranges", after_retention)
    wipe_prefix(stack)  # Redis lost
    report = rebuilding.rebuild(stack.settings, stack.endpoints)
    assert report.replayed == 1
    assert [stack.views.resolve(f"card:{c}") for c in ("A1", "B1")] == [None, "O2"]
    monkeypatch.setattr(rebuilding, "recorded_one_ids", lambda *_: {})
    wipe_prefix(stack)
    rebuilding.rebuild(stack.settings, stack.endpoints)
    assert [stack.views.resolve(f"card:{c}") for c in ("A1", "B1")] == [None, "O3"]


def test_an_erased_persons_resent_event_stays_a_duplicate_through_a_rebuild(
    stack: Running,
) -> None:
    """`omni forget` keeps the person's dedupe records, emptied, so a re-sent event is a
    duplicate. A rebuild keeps them too: a retry sent after the erasure is no new event
    for the replay, and a late retry after the rebuild none for the workers."""
    t = Traffic(stack)
    original = scan(t, [phone("13912340001")], 0, "S001", "88.00", event_id="ev-person-1")
    t.send([original])
    t.wait()
    wait_facts(stack, 1)
    forget(stack, "phone:13912340001")
    at = rebuilding.latest_erasure_ms(stack.views, stack.endpoints)
    assert at is not None
    time.sleep(0.05)
    t.send([original])  # a producer's retry
    assert t.wait()["duplicates"] == 1
    stop_workers(stack)
    report = rebuild(stack, "--from", str(at + 1))
    assert report["outcomes"] == {"duplicate": 1}
    lookup = parse_lookup("phone:13912340001", phone_key(stack.settings))
    assert stack.views.member(lookup) is None
    resume_worker(stack, t)
    t.send([original])  # a late retry, within OMNI_DEDUPE_TTL_S
    assert t.wait()["duplicates"] == 2  # the replay's, and this one
    assert stack.views.member(lookup) is None
    time.sleep(2)  # a sink batch
    assert scalar(stack, "SELECT count() FROM touchpoint_facts WHERE event_id = 'ev-person-1'") == 0
    assert stack.views.stats().get("members", 0) == 0


def test_an_erased_persons_events_stay_out_whatever_the_producers_clocks(
    stack: Running,
) -> None:
    """Kafka's timestamps are the producers' clocks. A till ten minutes fast writes a scan
    to a store's partition; the person then scans at that store and is erased. `rebuild
    --from <after the erasure>` starts that partition at the fast till's message and
    replays the person's scan after it: it is a duplicate (its emptied dedupe record),
    and the person stays erased."""
    t = Traffic(stack)
    fast = scan(t, [card("Q1")], 0, "S001", "9.00")
    avro = fast.to_avro()
    out = Producer({"bootstrap.servers": stack.endpoints.kafka_bootstrap})
    out.produce(
        topic_for(stack.settings.topic_prefix, type_name_of(fast)),
        value=encode(type_name_of(fast), avro),
        key=partition_key(type_name_of(fast), avro),
        timestamp=int(time.time() * 1000) + 600_000,
    )
    assert out.flush(30) == 0
    t.sent += 1
    t.wait()
    t.send([scan(t, [card("P1")], 1, "S001", "50.00")])
    t.wait()
    forget(stack, "card:P1")
    at = rebuilding.latest_erasure_ms(stack.views, stack.endpoints)
    assert at is not None
    stop_workers(stack)
    time.sleep(0.05)
    report = rebuild(stack, "--from", str(at + 1))
    assert report["outcomes"] == {"new": 1, "duplicate": 1}
    assert stack.views.member("card:P1") is None
    assert stack.views.resolve("card:Q1") is not None


def test_a_failed_rebuild_holds_the_workers_until_one_finishes(
    stack: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild that fails midway leaves the views wiped and half replayed. The workers,
    resumed (as `--pause-workers` does on the way out), hold their batches instead of
    giving the members not replayed yet new OneIDs; the rebuild run again finishes, and
    the held batch then goes through: every member keeps their OneID, counted once."""
    t = Traffic(stack)
    for i in range(5):
        t.send([scan(t, [card(f"C{i}")], i, "S001", "10.00")])
        t.wait()
    wait_facts(stack, 5)
    live = snapshot(stack)
    stop_workers(stack)
    calls = {"n": 0}
    finish = TouchpointPipeline.finish

    def blip(self: Any, prepared: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ViewsUnavailable("redis: connection reset")
        return finish(self, prepared)

    monkeypatch.setattr(TouchpointPipeline, "finish", blip)
    settings = stack.settings.model_copy(update={"batch_max_events": 2})
    with pytest.raises(ViewsUnavailable):
        rebuilding.rebuild(settings, stack.endpoints)
    monkeypatch.setattr(TouchpointPipeline, "finish", finish)
    half = stack.views.stats()["processed"]
    assert half == 2
    resume_worker(stack, t)
    t.send([scan(t, [card("C4")], 30, "S002", "20.00")])
    time.sleep(5)
    assert stack.views.stats()["processed"] == half  # held, not applied
    assert "being rebuilt" in stack.workers[0].tail(50)
    stop_workers(stack)
    rebuild(stack)  # replays the held event too: it is on the topic
    rebuilt = snapshot(stack)
    assert rebuilt["links"] == live["links"]
    assert rebuilt["stats"]["processed"] == 6
    resume_worker(stack, t)
    t.wait()
    wait_facts(stack, 6)
    assert stack.views.resolve("card:C4") == live["links"]["i:card:C4"]
    assert scalar(stack, "SELECT countIf(new_member) FROM touchpoint_facts FINAL") == 5
    assert scalar(stack, "SELECT uniqExact(person) FROM person_facts") == 5


def test_forget_reaches_a_oneid_a_rebuild_from_left_behind(stack: Running) -> None:
    """What `--from` cannot restore (docs/operations.md): A, last seen before --from, is
    met again by the workers after the rebuild and starts a new OneID. `omni forget
    card:A1` erases that one; `omni forget oneid:<the first>`, a OneID in no view, erases
    the rows ClickHouse holds under it."""
    t = Traffic(stack)
    t.send([scan(t, [card("A1")], 0, "S001", "40.00"), scan(t, [card("Z9")], 0, "S002", "5.00")])
    t.wait()
    wait_facts(stack, 2)
    first = stack.views.resolve("card:A1")
    forget(stack, "card:Z9")  # from now on a rebuild must start after this erasure
    stop_workers(stack)
    at = rebuilding.latest_erasure_ms(stack.views, stack.endpoints)
    assert at is not None
    time.sleep(0.05)
    rebuild(stack, "--from", str(at + 1))
    resume_worker(stack, t)
    t.send([scan(t, [card("A1")], 30, "S003", "7.00")])
    t.wait()
    wait_facts(stack, 2)
    again = stack.views.resolve("card:A1")
    assert again not in (None, first)
    assert scalar(stack, "SELECT uniqExact(person) FROM person_facts") == 2  # one split person
    assert forget(stack, "card:A1")["facts_deleted"] == 1
    done = forget(stack, f"oneid:{first}")
    assert (done["one_id"], done["facts_deleted"], done["ledger_deleted"]) == (first, 1, 1)
    assert scalar(stack, "SELECT count() FROM touchpoint_facts") == 0
    assert scalar(stack, "SELECT count() FROM points_ledger") == 0
    nobody = omni(stack, "forget", f"oneid:{first}", "--yes")
    assert nobody.returncode == 2, nobody.stderr


def merged_then_rebuilt_from(stack: Running) -> None:
    """D0 (O1) and a unionid (O2) merge into O1; after --from only D0 is seen again. The
    rebuilt views give D0 back O1 (its fact's OneID) but know nothing of the merge: only
    ClickHouse's merge log does."""
    t = Traffic(stack)
    t.send([scan(t, [card("D0")], 0, "S001", "10.00")])
    t.wait()
    t.send([scan(t, [unionid("u_merge_1")], 1, "S001", "11.00")])
    t.wait()
    t.send([scan(t, [card("D0"), unionid("u_merge_1")], 2, "S001", "12.00")])
    t.wait()
    since = int(time.time() * 1000) + 5
    time.sleep(0.05)
    t.send([scan(t, [card("D0")], 30, "S001", "13.00")])
    t.wait()
    wait_facts(stack, 4)
    assert (stack.views.resolve("card:D0"), stack.views.resolve("oneid:O2")) == ("O1", "O1")
    stop_workers(stack)
    rebuild(stack, "--from", str(since))
    assert (stack.views.resolve("card:D0"), stack.views.resolve("oneid:O2")) == ("O1", None)


@pytest.mark.parametrize("lookup", ["card:D0", "oneid:O2"])
def test_forget_after_a_rebuild_from_reaches_oneids_only_clickhouse_knows_merged(
    stack: Running, lookup: str
) -> None:
    """By identifier, or by the absorbed OneID the views no longer know: the whole person
    goes, O2's rows (merged into O1 before --from) with O1's."""
    merged_then_rebuilt_from(stack)
    done = forget(stack, lookup)
    assert (done["one_id"], done["absorbed"]) == ("O1", ["O2"])
    assert stack.views.resolve("card:D0") is None
    assert fact_one_ids(stack) == {}
    assert scalar(stack, "SELECT count() FROM points_ledger") == 0


def test_forget_waits_for_a_rebuild_to_finish(stack: Running) -> None:
    """A rebuild failed before replaying O1's events: the views are wiped and marked.
    Erasing now would be undone by the replay (and a OneID the views do not hold yet is
    no person cut off by --from): forget refuses, and deletes nothing."""
    t = Traffic(stack)
    t.send([scan(t, [card("D0")], 0, "S001", "10.00")])
    t.wait()
    wait_facts(stack, 1)
    stop_workers(stack)
    stack.views.client.set(stack.views.prefix + rebuilding.REBUILDING, "{}")
    rebuilding.wipe_views(stack.views)
    for lookup in ("oneid:O1", "card:D0"):
        done = omni(stack, "forget", lookup, "--yes")
        assert done.returncode == 2 and "being rebuilt" in done.stderr, done.stderr
    assert len(fact_one_ids(stack)) == 1


def absorbed_then_live_after_from(stack: Running) -> None:
    """D0 (O1) before --from; a unionid (O2) after it, then D0 and the unionid together
    merge O2 into O1. The replay creates O2 first (its fact's OneID) and D0 joins it: the
    live person is O2, a OneID the merge log shows merged into O1, which no view holds."""
    t = Traffic(stack)
    t.send([scan(t, [card("D0")], 0, "S001", "10.00")])
    t.wait()
    since = int(time.time() * 1000) + 5
    time.sleep(0.05)
    t.send([scan(t, [unionid("u_merge_1")], 1, "S001", "11.00")])
    t.wait()
    t.send([scan(t, [card("D0"), unionid("u_merge_1")], 2, "S001", "12.00")])
    t.wait()
    wait_facts(stack, 3)
    assert (stack.views.resolve("card:D0"), stack.views.resolve("oneid:O2")) == ("O1", "O1")
    stop_workers(stack)
    rebuild(stack, "--from", str(since))
    assert (stack.views.resolve("card:D0"), stack.views.resolve("oneid:O1")) == ("O2", None)


@pytest.mark.parametrize("lookup", ["card:D0", "oneid:O1"])
def test_forget_follows_the_merge_log_both_ways(stack: Running, lookup: str) -> None:
    """The person is live as O2 and, in ClickHouse, also O1, which O2 was merged into:
    by identifier or by the OneID no view holds, forget erases the live member and the
    rows under both, and keeps O1 with the erasure record (a rerun reaches it)."""
    absorbed_then_live_after_from(stack)
    done = forget(stack, lookup)
    assert (done["one_id"], done["absorbed"]) == ("O2", ["O1"])
    assert stack.views.resolve("card:D0") is None
    assert fact_one_ids(stack) == {}
    assert scalar(stack, "SELECT count() FROM points_ledger") == 0
    assert stack.views.erasure("O2")["absorbed"] == ["O1"]  # type: ignore[index]
