"""The simulated traffic: its size, its determinism, and that malformed messages are
rejected while every valid record plans."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.codec import DecodeError, decode, encode
from schemas.models import MODELS
from streams.core.errors import InvalidTouchpoint
from streams.core.plan import EventPlan, plan_event
from streams.core.rules import Rules
from streams.simulate import SimMessage, Simulation

RULES = Rules(phone_key=b"k")
START = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def _messages(**kwargs: object) -> list[SimMessage]:
    return list(Simulation(**kwargs))  # type: ignore[arg-type]


def _wire(msg: SimMessage) -> bytes:
    """The bytes a producer would send for ``msg``."""
    if msg.record is None:
        assert msg.raw is not None
        return msg.raw
    return encode(msg.type_name, msg.record.to_avro())


def _identity(msg: SimMessage) -> tuple[str, str]:
    """What stays the same between runs whatever the wall clock: type and event id, or
    the malformed marker."""
    if msg.record is None:
        return (msg.type_name, "malformed")
    return (msg.type_name, msg.record.envelope.event_id)


def interpret(payload: bytes, now: datetime) -> EventPlan:
    """``TouchpointPipeline.interpret`` without the topic check."""
    type_name, record = decode(payload)
    model = MODELS[type_name].model_validate(record)
    return plan_event(type_name, model, RULES, now)  # type: ignore[arg-type]


def _rejection(payload: bytes, now: datetime) -> str:
    try:
        interpret(payload, now)
    except DecodeError as exc:
        return f"decode:{exc.reason}"
    except ValidationError:
        return "validation"
    except InvalidTouchpoint as exc:
        return f"plan:{exc.reason}"
    return "accepted"


# -- size and determinism ------------------------------------------------------------------------


def test_yields_exactly_the_number_of_events() -> None:
    sim = Simulation(events=500, seed=3)
    messages = list(sim)
    assert len(messages) == 500
    assert sum(sim.counts.values()) == 500
    assert sim.counts == Counter("malformed" if m.malformed else m.type_name for m in messages)


@pytest.mark.parametrize("events", [0, 1, 7])
def test_small_runs(events: int) -> None:
    assert len(_messages(events=events, seed=3)) == events


def test_counts_with_malformed_and_duplicates_sum_up() -> None:
    sim = Simulation(events=500, seed=3, skus=5, duplicate_share=0.1, malformed_share=0.2)
    messages = list(sim)
    assert sum(sim.counts.values()) == 500
    assert sim.counts["malformed"] == sum(m.malformed for m in messages)
    assert sim.counts["malformed"] > 0
    assert set(sim.counts) == {
        "malformed",
        "store_scan",
        "livestream_click",
        "red_envelope_claim",
        "app_order",
        "order_status",
        "inventory_adjustment",
    }


def test_same_seed_same_sequence() -> None:
    first = _messages(events=500, seed=3)
    second = _messages(events=500, seed=3)
    assert [_identity(m) for m in first] == [_identity(m) for m in second]


def test_same_seed_and_start_same_bytes() -> None:
    kwargs = {"events": 300, "seed": 3, "skus": 5, "malformed_share": 0.1, "start": START}
    first = [_wire(m) for m in _messages(**kwargs)]
    second = [_wire(m) for m in _messages(**kwargs)]
    assert len(first) == 300
    assert first == second


def test_other_seed_other_sequence() -> None:
    first = [_identity(m) for m in _messages(events=500, seed=3)]
    other = [_identity(m) for m in _messages(events=500, seed=4)]
    assert first != other
    # not even one event id in common
    assert not {i for _, i in first} & {i for _, i in other}


def test_event_ids_are_unique_without_duplicates() -> None:
    messages = _messages(events=500, seed=3, skus=5, duplicate_share=0, malformed_share=0)
    ids = [m.record.envelope.event_id for m in messages if m.record is not None]
    assert len(ids) == 500
    assert len(set(ids)) == 500


def test_duplicates_repeat_event_ids() -> None:
    messages = _messages(events=500, seed=3, skus=5, duplicate_share=0.1, malformed_share=0)
    ids = Counter(m.record.envelope.event_id for m in messages if m.record is not None)
    repeated = {i: n for i, n in ids.items() if n > 1}
    assert repeated
    assert sum(ids.values()) == 500
    # a re-sent event is the same record, not just the same id
    by_id: dict[str, SimMessage] = {}
    for msg in messages:
        assert msg.record is not None
        first = by_id.setdefault(msg.record.envelope.event_id, msg)
        assert first.record == msg.record


def test_duplicates_with_the_default_run() -> None:
    messages = _messages(events=500, seed=3, duplicate_share=0.1)
    ids = Counter(m.record.envelope.event_id for m in messages if m.record is not None)
    assert max(ids.values()) > 1


# -- malformed and valid messages --------------------------------------------------------------


def test_every_malformed_message_is_rejected() -> None:
    now = datetime.now(UTC)
    messages = _messages(events=500, seed=3, skus=5, malformed_share=0.2)
    malformed = [m for m in messages if m.malformed]
    assert len(malformed) > 20
    rejections = Counter()
    for msg in malformed:
        assert msg.record is None
        assert msg.raw is not None
        assert msg.type_name == "store_scan"
        rejection = _rejection(msg.raw, now)
        assert rejection != "accepted", msg.raw
        rejections[rejection.split(":")[0]] += 1
    # all three steps have something to reject
    assert set(rejections) == {"decode", "validation", "plan"}


def test_malformed_share_zero_has_no_malformed_messages() -> None:
    messages = _messages(events=500, seed=3, skus=5, malformed_share=0)
    assert not any(m.malformed for m in messages)


def test_every_valid_record_plans() -> None:
    now = datetime.now(UTC)
    messages = _messages(events=500, seed=3, skus=5, duplicate_share=0.1, malformed_share=0.2)
    planned = Counter()
    for msg in messages:
        if msg.record is None:
            continue
        plan = plan_event(msg.type_name, msg.record, RULES, now)
        assert plan.event_id == msg.record.envelope.event_id
        assert plan.touchpoint_type == msg.type_name
        # and the full path from the wire plans the same, at the wire's millisecond precision
        wire = interpret(_wire(msg), now)
        event_time = plan.event_time
        assert wire == plan._replace(
            event_time=event_time.replace(microsecond=event_time.microsecond // 1000 * 1000)
        )
        planned[msg.type_name] += 1
    assert sum(planned.values()) == sum(not m.malformed for m in messages)
    assert len(planned) == 6


def test_every_record_of_the_default_run_plans() -> None:
    now = datetime.now(UTC)
    messages = _messages(events=500, seed=3)
    planned = [
        plan_event(m.type_name, m.record, RULES, now) for m in messages if m.record is not None
    ]
    assert len(planned) == sum(not m.malformed for m in messages)
    assert [p.event_id for p in planned] == [
        m.record.envelope.event_id for m in messages if m.record is not None
    ]


def test_stock_is_received_before_it_is_sold() -> None:
    messages = _messages(events=200, seed=3, skus=5, malformed_share=0, duplicate_share=0)
    # 5 SKUs x (10 stores + 2 warehouses) receipts come first
    receipts = messages[:60]
    assert {m.type_name for m in receipts} == {"inventory_adjustment"}
    assert "inventory_adjustment" not in {m.type_name for m in messages[60:]}
