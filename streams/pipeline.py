"""One worker batch, start to end: decode -> validate -> plan (core) -> dead letters out ->
views applied in one Redis round trip -> enriched facts out. Independent of faust, so the
agent stays a thin loop and the pipeline can be driven directly.

Delivery guarantees: a batch is acknowledged to Kafka only after this returns. Redis
applies each partition's offsets at most once (offset guard in the Lua script), so a
redelivered batch changes nothing and re-emits its facts, which the sink deduplicates by
event_id. Dead letters are written before the views count them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple, TypeVar

from pydantic import ValidationError

from connectors.errors import ServiceUnavailable
from connectors.kafka import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    PipelineOutput,
)
from connectors.redis_views import (
    IDENTITY_ACTIONS,
    MinuteBucket,
    Outcome,
    RedisViews,
    dead_item,
    event_item,
)
from schemas.codec import DecodeError, SchemaResolver, decode
from schemas.models import MODELS, describe_validation_error
from streams import metrics
from streams.core.errors import InvalidTouchpoint
from streams.core.guard import InvalidShareGuard
from streams.core.plan import EventPlan, plan_event
from streams.core.rules import Rules

log = logging.getLogger("omni.pipeline")
_A = TypeVar("_A")
_R = TypeVar("_R")


class Inbound(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: the message's Kafka timestamp (ms), when it has one: an event's age is judged by
    #: it (``streams.core.plan.received_at``)
    timestamp_ms: int | None = None


def stamped(msg: Inbound) -> datetime | None:
    ms = msg.timestamp_ms
    return None if ms is None or ms < 0 else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass
class PreparedBatch:
    """A batch decoded, validated and planned (``TouchpointPipeline.prepare``), not yet
    applied: what ``TouchpointPipeline.finish`` takes."""

    batch: Sequence[Inbound]
    now: datetime
    items: list
    plans: list[EventPlan | None]
    dead: list[DeadLetter]
    seconds: float


@dataclass
class BatchReport:
    size: int
    outcomes: Counter[str]
    facts: int
    dead: int


def provenance(plan: EventPlan, msg: Inbound, now: datetime) -> dict:
    """The fields every record the workers emit carries: when, and from which message."""
    return {
        "event_time": plan.event_time,
        "processed_time": now,
        "source_topic": msg.topic,
        "source_partition": msg.partition,
        "source_offset": msg.offset,
    }


def _outcome(outcome: Outcome) -> str:
    if outcome.claim_refused:
        return "claim_refused"
    if outcome.order_repeated:
        return "order_repeated"
    return "backordered" if outcome.backordered else ""


def fact_record(plan: EventPlan, outcome: Outcome, msg: Inbound, now: datetime) -> dict:
    return {
        **provenance(plan, msg, now),
        "event_id": plan.event_id,
        "touchpoint_type": plan.touchpoint_type,
        "channel": plan.channel,
        "store_id": plan.store_id,
        "one_id": outcome.one_id,
        "new_member": outcome.new_member,
        "order_id": plan.order_id,
        "campaign_id": plan.campaign_id,
        "room_id": plan.room_id,
        "quantity": plan.quantity,
        "amount": plan.amount,
        "points": outcome.points,
        "outcome": _outcome(outcome),
        "attribution": outcome.attribution,
        "order_status": plan.order_status,
    }


def identity_records(plan: EventPlan, outcome: Outcome, msg: Inbound, now: datetime) -> list[dict]:
    """The event's identity log as merge-log records for ClickHouse."""
    return [
        {
            **provenance(plan, msg, now),
            "event_id": plan.event_id,
            "seq": seq,
            "action": change.action,
            "one_id": change.one_id,
            "other_one_id": change.other,
            "reason": change.reason,
            "identifiers_before": list(change.kept),
            "identifiers_other": list(change.moved),
            "points_moved": change.points,
        }
        for seq, change in enumerate(
            c for c in outcome.identity_log if c.action in IDENTITY_ACTIONS
        )
    ]


def ledger_records(plan: EventPlan, outcome: Outcome, msg: Inbound, now: datetime) -> list[dict]:
    """The points the event earned, and what it took back or let lapse (from the log)."""
    base = provenance(plan, msg, now)
    entries = []
    if outcome.points and outcome.one_id:
        rule = f"earn:{plan.touchpoint_type}"
        entries.append(
            {**base, "event_id": plan.event_id, "rule": rule, "one_id": outcome.one_id,
             "points": outcome.points}
        )  # fmt: skip
    for change in outcome.identity_log:
        if change.action == "points":  # other: the status event that took them back
            entries.append(
                {**base, "event_id": change.other, "rule": change.reason,
                 "one_id": change.one_id, "points": change.points}
            )  # fmt: skip
    return entries


def stock_records(plan: EventPlan, outcome: Outcome, msg: Inbound, now: datetime) -> list[dict]:
    """The stock movements the event made (and lapsed holds it carried)."""
    base = provenance(plan, msg, now)
    return [
        {
            **base,
            "event_id": move.ref or plan.event_id,
            "sku": move.sku,
            "location": move.location,
            "kind": move.kind,
            "on_hand_delta": move.on_hand_delta,
            "reserved_delta": move.reserved_delta,
            "on_hand": move.on_hand,
            "reserved": move.reserved,
            "version": move.version,
        }
        for move in outcome.stock_moves
    ]


def minute_records(buckets: Sequence[MinuteBucket], now: datetime) -> list[dict]:
    return [
        {
            "minute": datetime.fromtimestamp(b.minute, UTC),
            "channel": b.channel,
            "touchpoint_type": b.touchpoint_type,
            "store_id": b.store_id,
            "events": b.events,
            "gmv": Decimal(b.gmv_cents) / 100,
            "orders": b.orders,
            "claims": b.claims,
            "refunds": Decimal(b.refunds_cents) / 100,
            "processed_time": now,
        }
        for b in buckets
    ]


class TouchpointPipeline:
    def __init__(
        self,
        input_types: dict[str, str],
        rules: Rules,
        views: RedisViews,
        output: PipelineOutput,
        resolver: SchemaResolver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        guard: InvalidShareGuard | None = None,
    ):
        self.input_types = input_types
        self.rules = rules
        self.views = views
        self.output = output
        self.resolver = resolver
        self.clock = clock
        self.guard = guard

    def interpret(self, msg: Inbound, now: datetime) -> EventPlan:
        size = len(msg.value or b"")
        if size > MAX_MESSAGE_BYTES:
            raise InvalidTouchpoint("value", "too_large", f"{size} bytes > {MAX_MESSAGE_BYTES}")
        type_name, record = decode(msg.value, self.resolver)
        expected = self.input_types.get(msg.topic)
        if type_name != expected:
            raise InvalidTouchpoint(
                "type", "wrong_topic", f"{type_name} record on the {expected} topic"
            )
        model = MODELS[type_name].model_validate(record)
        return plan_event(type_name, model, self.rules, now, stamped(msg))  # type: ignore[arg-type]

    def _dead_letter(self, msg: Inbound, exc: Exception) -> DeadLetter:
        if isinstance(exc, DecodeError):
            field, reason, detail = "value", exc.reason, exc.detail
        elif isinstance(exc, ValidationError):
            field, reason, detail = describe_validation_error(exc)
        elif isinstance(exc, InvalidTouchpoint):
            field, reason, detail = exc.field, exc.reason, exc.detail
        else:  # a bug met by strange input: keep the message and say so, never crash
            log.exception("unexpected error on %s/%d@%d", msg.topic, msg.partition, msg.offset)
            field, reason, detail = "record", "unexpected", type(exc).__name__
        return DeadLetter(
            msg.topic,
            msg.partition,
            msg.offset,
            msg.key,
            msg.value,
            type(exc).__name__,
            reason,
            field,
            detail,
        )

    def process(self, batch: Sequence[Inbound]) -> BatchReport:
        return self.finish(self.prepare(batch))

    def prepare(self, batch: Sequence[Inbound]) -> PreparedBatch:
        """Decode, validate and plan every message (no I/O but a schema registry lookup);
        raises ``InvalidShareExceeded`` when the batch trips the guard, and
        ``ServiceUnavailable`` when the registry cannot be asked (``prepare_until_done``)."""
        started = time.monotonic()
        now = self.clock()
        items: list = []
        plans: list[EventPlan | None] = []
        dead: list[DeadLetter] = []
        for msg in batch:
            tp = f"{msg.topic}/{msg.partition}"
            try:
                plan = self.interpret(msg, now)
            except ServiceUnavailable:
                raise  # the schema registry is down, not the message bad: the batch waits
            except Exception as exc:
                dead.append(self._dead_letter(msg, exc))
                items.append(dead_item(tp, msg.offset))
                plans.append(None)
            else:
                items.append(event_item(plan, tp, msg.offset))
                plans.append(plan)
        if self.guard is not None:
            self.guard.check([plan is None for plan in plans])
        return PreparedBatch(batch, now, items, plans, dead, time.monotonic() - started)

    def finish(self, prepared: PreparedBatch) -> BatchReport:
        """Dead letters out, the views applied in one Redis call, the facts out. A
        prepared batch can be finished again after a failure (the views apply each offset
        once; the sink deduplicates facts by event_id)."""
        started = time.monotonic()
        batch, now, items, plans, dead = (
            prepared.batch,
            prepared.now,
            prepared.items,
            prepared.plans,
            prepared.dead,
        )
        out_started = time.monotonic()
        if dead:
            self.output.dead_letters(dead, now)
        out_seconds = time.monotonic() - out_started
        views_started = time.monotonic()
        applied = self.views.apply_batch(items, int(now.timestamp() * 1000))
        outcomes = applied.outcomes
        metrics.REDIS_SECONDS.observe(time.monotonic() - views_started)
        facts, identity, ledger, stock = [], [], [], []
        for msg, plan, outcome in zip(batch, plans, outcomes, strict=True):
            if plan is not None and outcome.emits_fact:
                facts.append(fact_record(plan, outcome, msg, now))
                identity.extend(identity_records(plan, outcome, msg, now))
                ledger.extend(ledger_records(plan, outcome, msg, now))
                stock.extend(stock_records(plan, outcome, msg, now))
        out_started = time.monotonic()
        if facts or applied.minutes:
            self.output.facts(
                {
                    "touchpoint_fact": facts,
                    "identity_event": identity,
                    "points_entry": ledger,
                    "stock_movement": stock,
                    "minute_aggregate": minute_records(applied.minutes, now),
                }
            )
        metrics.KAFKA_OUT_SECONDS.observe(out_seconds + time.monotonic() - out_started)
        seconds = prepared.seconds + time.monotonic() - started
        self._count(batch, plans, outcomes, dead, now, seconds)
        return BatchReport(len(batch), Counter(o.status for o in outcomes), len(facts), len(dead))

    def _count(
        self,
        batch: Sequence[Inbound],
        plans: list[EventPlan | None],
        outcomes: list[Outcome],
        dead: list[DeadLetter],
        now: datetime,
        seconds: float,
    ) -> None:
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.BATCH_SECONDS.observe(seconds)
        # counted here first, then added to each labelled counter once a batch
        events: Counter[tuple[str, str]] = Counter()
        identity: Counter[str] = Counter()
        refusals: Counter[str] = Counter()
        for msg, plan, outcome in zip(batch, plans, outcomes, strict=True):
            kind = plan.touchpoint_type if plan else self.input_types.get(msg.topic, "unknown")
            events[kind, outcome.status] += 1
            if plan is None or outcome.status != "new":
                continue
            metrics.EVENT_LAG.observe(max(0.0, (now - plan.event_time).total_seconds()))
            for change in outcome.identity_log:
                if change.action in IDENTITY_ACTIONS:
                    identity[change.action] += 1
            if outcome.claim_refused:
                refusals["claim_past_budget"] += 1
            if outcome.backordered:
                refusals["backordered"] += 1
            if outcome.order_repeated:
                refusals["order_repeated"] += 1
        metrics.add(metrics.EVENTS, events)
        metrics.add(metrics.IDENTITY, identity)
        metrics.add(metrics.REFUSALS, refusals)
        metrics.add(metrics.DEAD_LETTERS, Counter(letter.reason for letter in dead))

    def process_until_done(
        self, batch: Sequence[Inbound], stopping: threading.Event | None = None
    ) -> BatchReport | None:
        """``process`` with retries: a service that is down pauses the worker (with
        backoff) instead of losing or acknowledging the batch. Returns None only when
        asked to stop before the batch went through; the batch is then not acknowledged."""
        return self._until_done(self.process, batch, len(batch), stopping)

    def prepare_until_done(
        self, batch: Sequence[Inbound], stopping: threading.Event | None = None
    ) -> PreparedBatch | None:
        """``prepare`` with the retries of ``process_until_done``: good messages wait for a
        schema registry that is down instead of being dead-lettered."""
        return self._until_done(self.prepare, batch, len(batch), stopping)

    def finish_until_done(
        self, prepared: PreparedBatch, stopping: threading.Event | None = None
    ) -> BatchReport | None:
        """``finish`` with the retries of ``process_until_done``."""
        return self._until_done(self.finish, prepared, len(prepared.batch), stopping)

    def _until_done(
        self, step: Callable[[_A], _R], arg: _A, size: int, stopping: threading.Event | None
    ) -> _R | None:
        delay = 0.2
        while True:
            try:
                return step(arg)
            except ServiceUnavailable as exc:
                log.warning("batch of %d waits: %s; retrying in %.1fs", size, exc, delay)
                if stopping is not None and stopping.wait(delay):
                    return None
                if stopping is None:
                    time.sleep(delay)
                delay = min(delay * 2, 10.0)
