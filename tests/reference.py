"""Plain-Python reference of what the pipeline must end with, computed from the same
simulated messages: the numbers integration tests compare against, exactly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.models import type_name_of
from streams.core.plan import plan_event
from streams.core.rules import Rules
from streams.simulate import SimMessage


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def groups(self) -> int:
        return len({self.find(x) for x in self.parent})


@dataclass
class Expected:
    produced: int = 0
    malformed: int = 0
    duplicates: int = 0
    facts: int = 0
    points_total: int = 0
    members: int = 0
    per_type: dict[str, int] = field(default_factory=dict)


def expected_from(
    messages: list[SimMessage], rules: Rules, now: datetime | None = None
) -> Expected:
    now = now or datetime.now(UTC)
    out = Expected(produced=len(messages))
    seen: set[str] = set()
    graph = UnionFind()
    for msg in messages:
        if msg.record is None:
            out.malformed += 1
            continue
        env = msg.record.envelope
        if env.event_id in seen:
            out.duplicates += 1
            continue
        seen.add(env.event_id)
        plan = plan_event(type_name_of(msg.record), msg.record, rules, now)
        out.facts += 1
        out.per_type[plan.touchpoint_type] = out.per_type.get(plan.touchpoint_type, 0) + 1
        keys = plan.identity_keys
        for key in keys:
            graph.find(key)
        for a, b in itertools.pairwise(keys):
            graph.union(a, b)
        if keys:
            out.points_total += plan.points
    out.members = graph.groups()
    return out
