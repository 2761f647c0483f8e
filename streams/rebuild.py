"""``omni rebuild``: the Redis views built again from the input topics, for when Redis is
lost or a rule changed. Procedure and guarantees: docs/operations.md, "Rebuilding the
Redis views".

1. Refuse while workers consume (the embedded stack's record, the consumer group's
   state) and while the replay would bring back a person erased by ``omni forget``.
2. Capture the end of every input partition: the high watermark, or the workers'
   committed offset where that is further (some brokers report low watermarks).
3. Mark the views as being rebuilt (``rebuilding``: the workers' batches wait until the
   mark is gone), then wipe the view keys under ``<OMNI_TOPIC_PREFIX>:`` (SCAN + UNLINK
   in batches, never FLUSHDB: other tenants may share the Redis), keeping the erasure
   records and the dedupe records ``omni forget`` emptied.
4. Read the input partitions from the beginning (or from ``--from``, through
   offsets_for_times) up to that end with a consumer of its own (nothing is committed
   to the workers' group), in time order across partitions and offset order within one,
   and apply them in batches through ``TouchpointPipeline``: the very code the workers
   run, each event naming the OneID ClickHouse holds its fact under, which a member it
   creates takes. Facts, merge log, ledger and dead letters are not published again:
   ClickHouse has them already; dead letters are counted. Then remove the mark.

The views store the last offset applied per partition, so when the workers resume from
their committed offsets, whatever the rebuild applied already is a no-op for them.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from connectors.kafka import DeadLetter
from connectors.redis_views import RedisViews
from schemas.topics import input_topics
from streams.core.plan import EventPlan
from streams.endpoints import Endpoints, read_stack
from streams.pipeline import Inbound, TouchpointPipeline
from streams.settings import Settings
from streams.wiring import resolver, rules, views

#: Keys under the prefix a rebuild keeps: the erasure records (``omni forget``), and its
#: own mark, there from the wipe until the replay is done: workers do not apply batches
#: to half-built views (a rebuild that failed leaves it; running it again clears it).
REBUILDING = "rebuilding"
KEPT_KEYS = ("erased", REBUILDING)
#: Messages held per partition while the others catch up (time-ordered merge).
_HELD_PER_PARTITION = 5000
#: A replay that receives nothing for this long while partitions are unfinished fails.
_STALL_S = 60.0


class RebuildRefused(RuntimeError):
    """The rebuild would race the workers or undo an erasure; nothing was changed."""


@dataclass(frozen=True)
class PartitionRange:
    topic: str
    partition: int
    #: first offset to replay
    start: int
    #: replay up to here (exclusive)
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


@dataclass
class RebuildReport:
    from_ms: int | None
    partitions: int
    #: messages between the start and the end captured at the start
    total: int
    #: of which applied through the pipeline (all but the skipped)
    replayed: int = 0
    #: read but before --from, not applied (brokers whose offsets_for_times lands early)
    skipped: int = 0
    #: view keys deleted before the replay
    keys_deleted: int = 0
    #: outcomes of the pipeline: new, duplicate (re-sent event), dead, ...
    outcomes: Counter[str] = field(default_factory=Counter)
    #: dead letters of the replay by reason (not published again)
    dead_letters: Counter[str] = field(default_factory=Counter)
    members: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["outcomes"] = dict(self.outcomes)
        body["dead_letters"] = dict(self.dead_letters)
        body["dead_lettered"] = sum(self.dead_letters.values())
        return body


class DiscardOutput:
    """The pipeline's output during a rebuild: nothing is published. ClickHouse holds the
    facts, merge log and ledger already, and the dead letters are on the DLQ topic from
    the first time; they are counted by reason."""

    def __init__(self) -> None:
        self.dead: Counter[str] = Counter()
        self.facts_dropped = 0

    def dead_letters(self, letters: list[DeadLetter], now: datetime) -> None:
        self.dead.update(letter.reason for letter in letters)

    def facts(self, records_by_type: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        self.facts_dropped += len(records_by_type.get("touchpoint_fact", ()))


# -- refusals ---------------------------------------------------------------------------------


def workers_consuming(settings: Settings, endpoints: Endpoints) -> str | None:
    """Why the workers must be stopped first, or None if none consumes: the embedded
    stack's record of its workers, and the members of the workers' consumer group (a
    worker killed without leaving stays a member for OMNI_CONSUMER_SESSION_TIMEOUT_S)."""
    from connectors.embedded import is_running

    stack = read_stack(settings) or {}
    alive = [
        name
        for name, c in stack.get("components", {}).items()
        if name.startswith("worker") and is_running(c.get("pid", 0), c.get("start_time"))
    ]
    if alive:
        return f"the embedded stack's workers run ({', '.join(sorted(alive))})"
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**endpoints.kafka_config, "bootstrap.servers": endpoints.kafka_bootstrap})
    group = settings.app_id
    try:
        found = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    except Exception as exc:  # a broker error: cannot tell, so do not go ahead
        code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
        if code == KafkaError.GROUP_ID_NOT_FOUND:
            return None
        raise RebuildRefused(f"cannot tell whether group {group!r} has members: {exc}") from exc
    # Members, not the group's state: a broker that does not expire members which left
    # without saying so (the embedded one) reports such a group stable for ever.
    if found.members:
        hosts = sorted({m.host for m in found.members})
        return (
            f"the workers' consumer group {group!r} has {len(found.members)} members "
            f"({', '.join(hosts)})"
        )
    return None


def latest_erasure_ms(view: RedisViews, endpoints: Endpoints) -> int | None:
    """When the last ``omni forget`` happened: the Redis records (kept by rebuilds), and
    ClickHouse's ``erasures`` table (which survives losing Redis)."""
    from streams import reads

    times = [int(json.loads(raw)["at"]) for raw in view.client.hvals(view.prefix + "erased") if raw]
    result = reads.query(
        endpoints, "SELECT count(), toUnixTimestamp64Milli(max(erased_at)) FROM erasures"
    )
    if result.rows and int(result.rows[0][0]) > 0:
        times.append(int(result.rows[0][1]))
    return max(times) if times else None


def highest_one_id(view: RedisViews, endpoints: Endpoints) -> int:
    """The highest OneID number issued so far, as the views (before they are wiped) and
    ClickHouse (which keeps them when Redis was lost) know it: the counter, the erased
    OneIDs, those in the facts and the merge log."""
    from connectors.errors import WarehouseUnavailable
    from streams import reads

    numbers = [int(view.client.get(view.prefix + "seq:oneid") or 0)]
    for one_id, raw in view.client.hgetall(view.prefix + "erased").items():
        absorbed = json.loads(raw).get("absorbed") or [] if raw else []
        numbers += [_number(x) for x in (one_id.decode(), *absorbed)]
    sql = (
        "SELECT max(n) FROM ("
        "SELECT max(toUInt64OrZero(substring(one_id, 2))) AS n FROM touchpoint_facts "
        "UNION ALL SELECT max(toUInt64OrZero(substring(other_one_id, 2))) FROM identity_events "
        "UNION ALL SELECT max(toUInt64OrZero(substring(one_id, 2))) FROM erasures "
        "UNION ALL SELECT max(toUInt64OrZero(substring(arrayJoin(absorbed), 2))) FROM erasures)"
    )
    try:
        numbers.append(int(reads.scalar(endpoints, sql) or 0))
    except WarehouseUnavailable as exc:
        raise RebuildRefused(f"cannot read the OneIDs issued from ClickHouse: {exc}") from exc
    return max(numbers)


def recorded_one_ids(endpoints: Endpoints, plans: Sequence[EventPlan]) -> dict[str, str]:
    """The OneID ClickHouse holds each event's fact under, by event id (events without a
    fact, or whose person was erased, are left out). Looked up by the table's sorting key
    (type, day, event id), so a batch reads only the granules it names."""
    if not plans:
        return {}
    sql = (
        "SELECT event_id, argMax(one_id, processed_time) FROM touchpoint_facts"
        " WHERE touchpoint_type IN {types:Array(String)}"
        " AND toDate(event_time) IN {days:Array(Date)}"
        " AND event_id IN {ids:Array(String)} AND one_id != ''"
        " GROUP BY event_id"
    )
    parameters = {
        "types": sorted({p.touchpoint_type for p in plans}),
        "days": sorted({p.event_time.astimezone(UTC).date().isoformat() for p in plans}),
        "ids": [p.event_id for p in plans],
    }
    from connectors.errors import WarehouseUnavailable
    from streams import reads

    try:
        rows = reads.query(endpoints, sql, parameters).rows
    except WarehouseUnavailable as exc:
        raise RebuildRefused(f"cannot read the facts' OneIDs from ClickHouse: {exc}") from exc
    return {str(event_id): str(one_id) for event_id, one_id in rows}


def _number(one_id: str) -> int:
    return int(one_id[1:]) if one_id[1:].isdigit() else 0


def check_erasures(view: RedisViews, endpoints: Endpoints, from_ms: int | None) -> None:
    """Refuse a replay that would bring back a person erased by ``omni forget``.

    An erasure keeps no identifier of the person, so the replay cannot tell their earlier
    events from anyone else's: only events after the last erasure may be replayed."""
    from connectors.errors import WarehouseUnavailable

    try:
        last = latest_erasure_ms(view, endpoints)
    except WarehouseUnavailable as exc:
        raise RebuildRefused(f"cannot read the erasures from ClickHouse: {exc}") from exc
    if last is not None and (from_ms is None or from_ms <= last):
        when = datetime.fromtimestamp(last / 1000, UTC).isoformat(timespec="milliseconds")
        raise RebuildRefused(
            f"people were erased (`omni forget`), the last at {when}; replaying events from "
            "before then would bring them back: rebuild with --from after that time"
        )


# -- the replay --------------------------------------------------------------------------------


def wipe_views(view: RedisViews, keep: Sequence[str] = KEPT_KEYS, batch: int = 1000) -> int:
    """Delete every key under the views' prefix but ``keep`` and the dedupe records
    ``omni forget`` emptied (an erased person's events, TTL and all: a re-sent one stays a
    duplicate through the replay and after it, instead of bringing the person back):
    SCAN + UNLINK in batches."""
    kept = {(view.prefix + k).encode() for k in keep}
    results = (view.prefix + "e:").encode()
    deleted = 0
    found = view.client.scan_iter(match=view.prefix + "*", count=batch)
    while scanned := list(itertools.islice(found, batch)):
        chunk = [key for key in scanned if key not in kept]
        dedupe = [key for key in chunk if key.startswith(results)]
        if dedupe:
            erased = {k for k, v in zip(dedupe, view.client.mget(dedupe), strict=True) if v == b""}
            chunk = [key for key in chunk if key not in erased]
        if chunk:
            deleted += view.client.unlink(*chunk)
    return deleted


def _consumer(settings: Settings, endpoints: Endpoints, group: str) -> Consumer:
    return Consumer(
        {
            **endpoints.kafka_config,
            "bootstrap.servers": endpoints.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


def plan_ranges(
    settings: Settings, endpoints: Endpoints, consumer: Consumer, from_ms: int | None
) -> list[PartitionRange]:
    """Where each input partition's replay starts and ends, captured now."""
    tps = []
    for topic in input_topics(settings.topic_prefix):
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None:
            continue
        tps.extend(TopicPartition(topic, p) for p in sorted(meta.partitions))
    # The workers' committed offsets, read without joining their group.
    reader = _consumer(settings, endpoints, settings.app_id)
    try:
        committed = {(t.topic, t.partition): t.offset for t in reader.committed(tps, timeout=15)}
    finally:
        reader.close()
    starts: dict[tuple[str, int], int] = {}
    if from_ms is not None:
        found = consumer.offsets_for_times(
            [TopicPartition(t.topic, t.partition, from_ms) for t in tps], timeout=15
        )
        starts = {(t.topic, t.partition): t.offset for t in found}
    marks = {
        (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=15, cached=False)
        for tp in tps
    }
    seen = _last_offsets(settings, endpoints, {tp: high for tp, (_, high) in marks.items()})
    ranges = []
    for tp in tps:
        low, high = marks[(tp.topic, tp.partition)]
        end = max(
            high,
            committed.get((tp.topic, tp.partition), -1),
            seen.get((tp.topic, tp.partition), -1) + 1,
        )
        start = starts.get((tp.topic, tp.partition), low) if from_ms is not None else low
        if start < 0:  # nothing at or after --from: an empty range
            start = end
        ranges.append(PartitionRange(tp.topic, tp.partition, max(start, low), end))
    return ranges


def _last_offsets(
    settings: Settings,
    endpoints: Endpoints,
    highs: Mapping[tuple[str, int], int],
    quiet_s: float = 1.0,
    limit_s: float = 5.0,
) -> dict[tuple[str, int], int]:
    """The last offset readable at or after each high watermark's message: a broker may
    report the high watermark of a partition's last record batch as that batch's first
    offset + 1 (the embedded one does), which would leave the rest of the batch out."""
    probe = _consumer(settings, endpoints, f"{settings.app_id}-rebuild-{uuid.uuid4().hex[:8]}")
    last: dict[tuple[str, int], int] = {}
    try:
        wanted = [TopicPartition(t, p, h - 1) for (t, p), h in highs.items() if h > 0]
        if not wanted:
            return last
        probe.assign(wanted)
        started = quiet = time.monotonic()
        ended: set[tuple[str, int]] = set()
        while time.monotonic() - quiet < quiet_s and time.monotonic() - started < limit_s:
            for msg in probe.consume(1000, 0.2):
                tp = (msg.topic(), msg.partition())
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        ended.add(tp)
                    continue
                quiet = time.monotonic()
                last[tp] = max(last.get(tp, -1), msg.offset())
            if len(ended) == len(wanted):
                break
    finally:
        probe.close()
    return last


def _timestamp(msg: Message) -> int | None:
    kind, ms = msg.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE or ms < 0 else ms


def merged(
    consumer: Consumer,
    ranges: Sequence[PartitionRange],
    from_ms: int | None = None,
    on_skipped: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """The messages of ``ranges`` in time order across partitions (message timestamp,
    then topic, partition, offset) and offset order within each, the order in which
    they most likely reached the workers. ``on_skipped(n)``: messages read but before
    ``from_ms``, left out."""
    active = {(r.topic, r.partition): r for r in ranges if r.size > 0}
    held: dict[tuple[str, int], deque[Message]] = {tp: deque() for tp in active}
    done: set[tuple[str, int]] = set()
    paused: set[tuple[str, int]] = set()
    # a partition is replayed from its first message at or after --from
    reached_from = {tp: from_ms is None for tp in active}
    skipped = 0
    if not active:
        return
    consumer.assign([TopicPartition(t, p, r.start) for (t, p), r in active.items()])
    last_message = time.monotonic()

    def key(tp: tuple[str, int]) -> tuple[int, str, int, int]:
        msg = held[tp][0]
        return (_timestamp(msg) or 0, tp[0], tp[1], msg.offset())

    while True:
        # Emit while every unfinished partition has a message in hand to compare.
        while all(held[tp] or tp in done for tp in active):
            waiting = [tp for tp in active if held[tp]]
            if not waiting:
                break
            tp = min(waiting, key=key)
            yield held[tp].popleft()
            if tp in paused and len(held[tp]) < _HELD_PER_PARTITION // 2:
                consumer.resume([TopicPartition(*tp)])
                paused.discard(tp)
        if len(done) == len(active) and not any(held.values()):
            return
        for msg in consumer.consume(1000, 0.5):
            tp = (msg.topic(), msg.partition())
            if tp not in active or tp in done:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(tp)  # everything up to the end is here
                    continue
                if error.fatal() or not error.retriable():
                    raise RuntimeError(f"reading {tp[0]}/{tp[1]}: {error}")
                continue
            last_message = time.monotonic()
            r = active[tp]
            if msg.offset() >= r.end:
                done.add(tp)
                continue
            if not reached_from[tp]:
                ts = _timestamp(msg)
                if ts is not None and ts < from_ms:  # type: ignore[operator]
                    skipped += 1
                else:
                    reached_from[tp] = True
            if reached_from[tp]:
                held[tp].append(msg)
            if msg.offset() >= r.end - 1:
                done.add(tp)
            elif len(held[tp]) >= _HELD_PER_PARTITION and tp not in paused:
                consumer.pause([TopicPartition(*tp)])
                paused.add(tp)
        if on_skipped is not None:
            on_skipped(skipped)
        if time.monotonic() - last_message > _STALL_S:
            missing = sorted(f"{t}/{p}" for t, p in set(active) - done if not held[(t, p)])
            raise RuntimeError(f"no message for {_STALL_S:.0f}s from {', '.join(missing)}")


def rebuild(
    settings: Settings,
    endpoints: Endpoints,
    from_ms: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    confirm: Callable[[int], bool] | None = None,
) -> RebuildReport:
    """Refuse, or wipe the views and replay the input topics into them (module doc).
    ``confirm(total)`` may still say no before anything is changed."""
    started = time.monotonic()
    view = views(settings, endpoints)
    why = workers_consuming(settings, endpoints)
    if why is not None:
        raise RebuildRefused(
            f"{why}: stop the workers first, then rebuild, then start them (embedded stack: "
            "`omni rebuild --pause-workers` does all three, or `omni workers pause`)"
        )
    check_erasures(view, endpoints, from_ms)
    # A member the replay creates takes the OneID ClickHouse holds its event's fact under
    # (``recorded_one_ids``); one whose fact is not there is numbered above every OneID
    # ever issued, never from O1 again: a replay from --from, or from topics retention has
    # cut, meets only part of the people, and `omni forget` deletes rows by OneID.
    issued = highest_one_id(view, endpoints)
    consumer = _consumer(settings, endpoints, f"{settings.app_id}-rebuild-{uuid.uuid4().hex[:8]}")
    try:
        ranges = plan_ranges(settings, endpoints, consumer, from_ms)
        report = RebuildReport(from_ms, len(ranges), sum(r.size for r in ranges))
        if confirm is not None and not confirm(report.total):
            raise RebuildRefused("not confirmed; nothing was changed")
        if on_total is not None:
            on_total(report.total)
        mark = {"started_at": int(time.time() * 1000), "from_ms": from_ms}
        view.client.set(view.prefix + REBUILDING, json.dumps(mark))
        report.keys_deleted = wipe_views(view)
        if issued:
            view.client.set(view.prefix + "seq:oneid", issued)
        view.replaying = True
        _replay(settings, endpoints, view, consumer, ranges, from_ms, report, on_progress)
        # up to the captured end everything is the rebuild's, applied or not (before
        # --from, or a partition with nothing after it): a worker resuming below it replays
        view.advance_offsets({f"{r.topic}/{r.partition}": r.end - 1 for r in ranges if r.end})
        view.client.delete(view.prefix + REBUILDING)
    finally:
        consumer.close()
    report.members = view.stats().get("members", 0)
    report.elapsed_s = round(time.monotonic() - started, 2)
    return report


def _replay(
    settings: Settings,
    endpoints: Endpoints,
    view: RedisViews,
    consumer: Consumer,
    ranges: Sequence[PartitionRange],
    from_ms: int | None,
    report: RebuildReport,
    on_progress: Callable[[int], None] | None,
) -> None:
    output = DiscardOutput()
    clock = {"now": datetime.now(UTC)}
    pipeline = TouchpointPipeline(
        input_types=input_topics(settings.topic_prefix),
        rules=rules(settings),
        views=view,
        output=output,  # type: ignore[arg-type]
        resolver=resolver(settings),
        # the time the message reached Kafka stands for the time a worker took it: the
        # age and clock-skew checks and the pick-up holds decide as they did then
        clock=lambda: clock["now"],
    )

    def apply(batch: list[Message]) -> None:
        stamps = [ts for ts in (_timestamp(m) for m in batch) if ts is not None]
        clock["now"] = (
            datetime.fromtimestamp(max(stamps) / 1000, UTC) if stamps else datetime.now(UTC)
        )
        inbound = [
            Inbound(m.topic(), m.partition(), m.offset(), m.key(), m.value(), _timestamp(m))
            for m in batch
        ]
        prepared = pipeline.prepare(inbound)
        hints = recorded_one_ids(endpoints, [p for p in prepared.plans if p is not None])
        for item, plan in zip(prepared.items, prepared.plans, strict=True):
            if plan is not None and plan.event_id in hints:
                item["n"] = hints[plan.event_id]
        result = pipeline.finish(prepared)
        report.outcomes.update(result.outcomes)
        report.replayed += len(batch)
        if on_progress is not None:
            on_progress(report.replayed + report.skipped)

    def skipped(n: int) -> None:
        report.skipped = n

    batch: list[Message] = []
    for msg in merged(consumer, ranges, from_ms, on_skipped=skipped):
        batch.append(msg)
        if len(batch) >= settings.batch_max_events:
            apply(batch)
            batch = []
    if batch:
        apply(batch)
    report.dead_letters = output.dead
    if on_progress is not None:
        on_progress(report.replayed + report.skipped)
