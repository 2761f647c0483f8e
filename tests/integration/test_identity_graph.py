"""The identity graph in Redis (connectors/lua/apply_batch.lua) against the plain-Python
reference of the same rules (tests/reference.py), on a real redis-server: random event
sequences with conflicts, duplicates, redeliveries and any order."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.redis_views import RedisViews
from streams.core.rules import IDENTITY_PRIORITY, IdentityPolicy, by_priority

from ..reference import IdentityReference, UnionFind
from .conftest import Services

pytestmark = pytest.mark.integration
T0_MS = 1_790_000_000_000
POLICY = IdentityPolicy.parse("device=3,openid=2", "card,phone")

# A small pool, so random events collide often: merges, refusals and limits all happen.
POOL = [
    *(f"card:C{n}" for n in range(3)),
    *(f"phone:{n:032x}" for n in range(3)),
    *(f"unionid:u{n}" for n in range(3)),
    *(f"app:a{n}" for n in range(3)),
    *(f"openid:wxA:o{n}" for n in range(2)),
    "openid:wxB:o0",  # the same value under another appid: another identifier
    *(f"device:d{n}" for n in range(5)),
]


def fresh_views(services: Services) -> RedisViews:
    client = redis.Redis.from_url(services.redis_url)
    return RedisViews(client, prefix=f"g{uuid.uuid4().hex[:10]}:", policy=POLICY)


def item(event_id: str, keys: tuple[str, ...], offset: int) -> dict[str, Any]:
    return {
        "tp": "t/0",
        "o": offset,
        "id": event_id,
        "y": "livestream_click",
        "t": T0_MS + offset,
        "k": list(keys),
        "c": 1,
        "p": 1,
        "s": [],
        "r": "",
    }


def redis_members(views: RedisViews) -> dict[frozenset[str], str]:
    """identifiers -> OneID of every live member"""
    found = {}
    for key in views.client.scan_iter(match=views.prefix + "mi:*", count=1000):
        one_id = key.decode().rsplit(":", 1)[1]
        found[frozenset(m.decode() for m in views.client.smembers(key))] = one_id
    return found


def redis_grouping(views: RedisViews) -> set[frozenset[str]]:
    return set(redis_members(views))


def apply_in_batches(
    views: RedisViews, events: list[tuple[str, tuple[str, ...]]], cuts: list[int]
) -> list[list[dict[str, Any]]]:
    items = [item(eid, keys, n) for n, (eid, keys) in enumerate(events)]
    bounds = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    batches = [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    for batch in batches:
        views.apply(batch)
    return batches


key_sets = st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True).map(
    lambda ks: by_priority(tuple(ks))
)


@st.composite
def sequences(draw: st.DrawFn) -> list[tuple[str, tuple[str, ...]]]:
    events = [(f"e{n}", keys) for n, keys in enumerate(draw(st.lists(key_sets, max_size=30)))]
    # producers re-send some events (same event_id, later offset)
    if events:
        events += draw(st.lists(st.sampled_from(events), max_size=5))
    return draw(st.permutations(events))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=sequences(), cuts=st.lists(st.integers(0, 40), max_size=6), again=st.integers(0, 9))
def test_graph_equals_the_reference_under_the_same_rules(
    services: Services, events: list[tuple[str, tuple[str, ...]]], cuts: list[int], again: int
) -> None:
    views = fresh_views(services)
    batches = apply_in_batches(views, events, cuts)
    reference = IdentityReference(POLICY)
    for event_id, keys in events:
        reference.apply(event_id, keys)
    assert redis_grouping(views) == reference.grouping()
    # the same OneIDs too: created in the same order, the older one surviving each merge
    assert redis_members(views) == {
        frozenset(keys): f"O{n}" for n, keys in reference.keys.items() if keys
    }
    stats = views.stats()
    assert stats.get("refusals", 0) == len(reference.refusals)
    by_rule = Counter(f"refused:{why.split(':')[0]}" for _, why in reference.refusals)
    assert {k: v for k, v in stats.items() if k.startswith("refused:")} == by_rule
    assert set(views.review_queue()) == {
        event_id for event_id, why in reference.refusals if why.startswith("both_identified")
    }
    assert stats.get("members", 0) == len(reference.grouping())
    # a redelivered batch changes nothing
    if batches:
        views.apply(batches[again % len(batches)])
        assert redis_grouping(views) == reference.grouping()
        assert views.stats() == stats
    # no member ever breaks a limit, whatever the order
    limits = dict(POLICY.limits)
    for group in redis_grouping(views):
        for kind in IDENTITY_PRIORITY:
            assert sum(k.startswith(kind + ":") for k in group) <= limits[kind]


@st.composite
def people_events(draw: st.DrawFn) -> list[tuple[str, tuple[str, ...]]]:
    """Events that each show some identifiers of one person: no rule is ever in the way."""
    people = []
    for n in range(draw(st.integers(1, 5))):
        ids = [f"card:P{n}", f"phone:{n:032x}", f"unionid:u{n}", f"app:a{n}", f"openid:wxA:o{n}"]
        ids += [f"device:p{n}d{d}" for d in range(draw(st.integers(0, 3)))]
        people.append(ids)
    events = []
    for n in range(draw(st.integers(1, 25))):
        person = draw(st.sampled_from(people))
        keys = draw(st.lists(st.sampled_from(person), min_size=1, max_size=3, unique=True))
        events.append((f"e{n}", by_priority(tuple(keys))))
    events += draw(st.lists(st.sampled_from(events), max_size=5))
    return events


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=people_events(), data=st.data())
def test_without_conflicts_the_grouping_is_a_union_find_in_any_order(
    services: Services, events: list[tuple[str, tuple[str, ...]]], data: st.DataObject
) -> None:
    expected = UnionFind()
    for _, keys in events:
        expected.link(keys)
    want = expected.components()
    for _ in range(2):  # two different orders and batchings, one answer
        views = fresh_views(services)
        order = data.draw(st.permutations(events))
        apply_in_batches(views, order, data.draw(st.lists(st.integers(0, 40), max_size=5)))
        assert redis_grouping(views) == want
        assert views.stats().get("refusals", 0) == 0
