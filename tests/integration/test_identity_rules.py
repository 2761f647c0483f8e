"""Each identity safety rule on a real redis-server: what is refused, how it is flagged,
and what the merge log says. The same rules in plain Python: tests/reference.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from connectors.redis_views import IdentityChange, Outcome, RedisViews, event_item
from streams.core.plan import EventPlan
from streams.core.rules import IdentityPolicy, by_priority

from .conftest import Services

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
PHONE_A, PHONE_B = "phone:" + "a" * 32, "phone:" + "b" * 32


class Graph:
    def __init__(self, services: Services, policy: IdentityPolicy | None = None) -> None:
        client = redis.Redis.from_url(services.redis_url)
        self.views = RedisViews(client, prefix=f"r{uuid.uuid4().hex[:8]}:", policy=policy)
        self.offset = 0

    def event(self, *keys: str, points: int = 0, event_id: str | None = None) -> Outcome:
        self.offset += 1
        plan = EventPlan(
            event_id=event_id or f"e{self.offset}",
            touchpoint_type="store_scan",
            event_time=T0 + timedelta(minutes=self.offset),
            channel="store",
            identity_keys=by_priority(keys),
            points=points,
            stock=(),
        )
        return self.views.apply([event_item(plan, "t/0", self.offset)])[0]

    def member(self, key: str) -> dict:
        found = self.views.member(key)
        assert found is not None, key
        return found


def test_a_linking_event_merges_into_the_older_member_with_points_and_history(
    services: Services,
) -> None:
    g = Graph(services)
    g.event("card:C1", "device:d1", points=100)  # O1
    g.event(PHONE_A, "app:a1", points=30)  # O2
    out = g.event("card:C1", PHONE_A, points=5)
    assert out.one_id == "O1"
    assert out.identity_log == (
        IdentityChange(
            "merge", "O1", "O2", "", ("card:C1", "device:d1"), ("app:a1", PHONE_A), points=30
        ),
    )
    member = g.member("app:a1")
    assert (member["one_id"], member["points"], member["events"]) == ("O1", 135, 3)
    assert member["identifiers"] == sorted(["card:C1", "device:d1", PHONE_A, "app:a1"])
    assert member["absorbed"] == ["O2"]
    assert g.views.resolve("oneid:O2") == "O1"  # the absorbed OneID resolves forever


def test_two_identified_members_are_never_fused_but_queued_for_review(
    services: Services,
) -> None:
    # limits raised, so only the review rule stands between the two
    g = Graph(services, IdentityPolicy.parse("card=5,phone=5", "card,phone"))
    g.event("card:C1", points=10)  # O1
    g.event("card:C2", points=20)  # O2
    out = g.event("card:C1", "card:C2", event_id="suspicious")
    assert out.one_id == "O1"
    assert [(c.action, c.one_id, c.other, c.reason) for c in out.identity_log] == [
        ("refused", "O1", "O2", "both_identified:card")
    ]
    assert g.member("card:C1")["points"] == 10
    assert g.member("card:C2")["points"] == 20
    assert g.views.review_queue() == ["suspicious"]
    stats = g.views.stats()
    assert (stats["refusals"], stats["refused:both_identified"], stats["members"]) == (1, 1, 2)
    assert stats.get("merges", 0) == 0


def test_a_member_with_a_card_and_one_with_a_phone_do_merge(services: Services) -> None:
    # one identified by card, the other by phone: the usual store -> app stitch
    g = Graph(services)
    g.event("card:C1")
    g.event(PHONE_A)
    assert g.event("card:C1", PHONE_A).identity_log[0].action == "merge"
    assert g.views.review_queue() == []


def test_a_merge_that_would_break_a_limit_is_refused_and_flagged(services: Services) -> None:
    g = Graph(services, IdentityPolicy.parse("device=2", ""))
    g.event("device:d1", "device:d2")  # O1, at its device limit
    g.event("device:d3")  # O2
    out = g.event("device:d2", "device:d3")
    assert [(c.action, c.reason) for c in out.identity_log] == [("refused", "limit:device")]
    assert g.member("device:d1")["one_id"] != g.member("device:d3")["one_id"]
    assert g.views.stats()["refused:limit"] == 1
    assert g.views.review_queue() == []  # a limit is flagged, not a case for review


def test_an_identifier_past_its_limit_is_not_linked_and_flagged(services: Services) -> None:
    g = Graph(services)
    g.event("card:C1", "unionid:u1")
    out = g.event("card:C1", "unionid:u2")  # a second unionid for one person
    assert out.identity_log == (
        IdentityChange("not_linked", "O1", "", "limit:unionid", (), ("unionid:u2",)),
    )
    assert g.views.resolve("unionid:u2") is None
    assert g.member("card:C1")["identifiers"] == ["card:C1", "unionid:u1"]


def test_the_highest_priority_identifier_decides_where_a_refused_event_goes(
    services: Services,
) -> None:
    g = Graph(services)
    g.event("device:d9", "card:C2")  # O1: the older member
    g.event("card:C1")  # O2
    out = g.event("device:d9", "card:C1")  # card ranks above device: the event is C1's
    assert out.one_id == "O2"
    assert out.identity_log[0].reason == "both_identified:card"


def test_an_anonymous_visitor_s_history_follows_into_the_member(services: Services) -> None:
    g = Graph(services)
    g.event("device:d1", points=10)  # a red envelope claimed before signing up
    g.event("device:d1")
    assert g.member("device:d1")["anonymous"] is True
    g.event("card:C1", points=50)  # the member exists already
    g.event("card:C1", "device:d1")  # and signs in on that phone
    member = g.member("card:C1")
    assert member["anonymous"] is False
    assert (member["points"], member["events"]) == (60, 4)
    assert g.member("device:d1")["one_id"] == member["one_id"]


def test_a_redelivered_event_changes_nothing_and_re_emits_its_log(services: Services) -> None:
    g = Graph(services)
    g.event("card:C1")
    g.event(PHONE_A)
    plan = EventPlan("link", "store_scan", T0, "store", ("card:C1", PHONE_A), 0, ())
    first = g.views.apply([event_item(plan, "t/0", 99)])[0]
    stats = g.views.stats()
    again = g.views.apply([event_item(plan, "t/0", 99)])[0]
    assert again.status == "replay" and again.identity_log == first.identity_log
    assert g.views.stats() == stats


def test_forget_erases_the_person_and_every_absorbed_one_id(services: Services) -> None:
    g = Graph(services)
    g.event("card:C1", points=10)
    g.event(PHONE_A, "device:d1", points=5)
    g.event("card:C1", PHONE_A)
    g.event("card:C9")  # someone else
    erased = g.views.forget(PHONE_A, at_ms=1)
    # the person's keys come back for scrubbing the rest, and are not in the record
    assert erased.pop("keys") == sorted(["card:C1", PHONE_A, "device:d1"])
    assert erased == {"one_id": "O1", "absorbed": ["O2"], "identifiers": 3, "points": 15, "at": 1}
    assert g.views.erasure("O1") == erased
    for key in ("card:C1", PHONE_A, "device:d1", "oneid:O1", "oneid:O2"):
        assert g.views.member(key) is None, key
    leftovers = [
        k.decode()
        for k in g.views.client.scan_iter(match=g.views.prefix + "*")
        if k.decode().split(":", 1)[1].startswith(("m:O1", "m:O2", "mi:O1", "ma:O1", "i:"))
    ]
    assert leftovers == [g.views.prefix + "i:card:C9"]
    assert g.member("card:C9")["one_id"] == "O3"
    stats = g.views.stats()
    assert (stats["members"], stats["erasures"]) == (1, 1)
