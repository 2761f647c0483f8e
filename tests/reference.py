"""Plain-Python reference of what the pipeline must end with, computed from the same
simulated messages: the numbers integration tests compare against, exactly."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.models import AppOrder, InventoryAdjustment, OrderStatus, Touchpoint, type_name_of
from streams.core.plan import plan_event
from streams.core.rules import IdentityPolicy, Rules
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

    def link(self, keys: tuple[str, ...]) -> None:
        """One event's identity keys: all in one group."""
        for key in keys:
            self.find(key)
        for a, b in itertools.pairwise(keys):
            self.union(a, b)

    def components(self) -> set[frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for key in list(self.parent):
            groups.setdefault(self.find(key), set()).add(key)
        return {frozenset(g) for g in groups.values()}


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
        graph.link(keys)
        if keys:
            out.points_total += plan.points
    out.members = graph.groups()
    return out


class IdentityReference:
    """The identity graph's rules (docs/identity.md) in plain Python, applied one event at a
    time in the order given: what the Lua script must end with, exactly."""

    def __init__(self, policy: IdentityPolicy | None = None) -> None:
        self.policy = policy or IdentityPolicy()
        self.limits = dict(self.policy.limits)
        self.owner: dict[str, int] = {}  # identity key -> live member (creation number)
        self.keys: dict[int, set[str]] = {}
        self.next = 1
        self.seen: set[str] = set()
        self.refusals: list[tuple[str, str]] = []  # (event_id, reason)

    @staticmethod
    def _counts(keys: set[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key in keys:
            kind = key.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def _verdict(self, a: set[str], b: set[str]) -> str | None:
        ca, cb = self._counts(a), self._counts(b)
        for kind in self.policy.review:
            if ca.get(kind) and cb.get(kind):
                return f"both_identified:{kind}"
        for kind, limit in self.policy.limits:
            if ca.get(kind, 0) + cb.get(kind, 0) > limit:
                return f"limit:{kind}"
        return None

    def apply(self, event_id: str, keys: tuple[str, ...]) -> None:
        """``keys`` in priority order (as ``plan_event`` gives them)."""
        if event_id in self.seen or not keys:
            self.seen.add(event_id)
            return
        self.seen.add(event_id)
        found: list[int] = []
        for key in keys:
            member = self.owner.get(key)
            if member is not None and member not in found:
                found.append(member)
        if not found:
            target = self.next
            self.next += 1
            self.keys[target] = set()
        else:
            target = found[0]
            for other in found[1:]:
                why = self._verdict(self.keys[target], self.keys[other])
                if why:
                    self.refusals.append((event_id, why))
                    continue
                survivor, absorbed = min(target, other), max(target, other)
                for key in self.keys.pop(absorbed):
                    self.owner[key] = survivor
                    self.keys[survivor].add(key)
                target = survivor
        for key in keys:
            if key in self.owner:
                continue
            kind = key.split(":", 1)[0]
            if self._counts(self.keys[target]).get(kind, 0) + 1 > self.limits.get(kind, 1 << 30):
                self.refusals.append((event_id, f"limit:{kind}"))
                continue
            self.owner[key] = target
            self.keys[target].add(key)

    def grouping(self) -> set[frozenset[str]]:
        return {frozenset(keys) for keys in self.keys.values() if keys}


def points_and_stock(
    records: Iterable[Touchpoint], rules: Rules
) -> tuple[dict[frozenset[str], int], dict[str, tuple[int, int]]]:
    """Balances per member (by identifier set) and (on_hand, reserved) per SKU@location,
    from distinct events in plain Python. Exact when no reservation is refused and no sale
    meets empty shelves (callers check both), because then arrival order does not matter."""
    now = datetime.now(UTC)
    graph = UnionFind()
    points: list[tuple[str, int]] = []  # (an identity key of the member, delta)
    on_hand: Counter[str] = Counter()
    reserved: Counter[str] = Counter()
    orders: dict[str, tuple[str, int, int, list[tuple[str, int]]]] = {}
    statuses: list[OrderStatus] = []
    for record in records:
        plan = plan_event(type_name_of(record), record, rules, now)
        graph.link(plan.identity_keys)
        if plan.identity_keys and plan.points:
            points.append((plan.identity_keys[0], plan.points))
        for op in plan.stock:
            key = f"{op.sku}@{op.location}"
            if op.kind == "receive":
                on_hand[key] += op.quantity
            elif op.kind == "sale":
                on_hand[key] -= op.quantity
            elif op.kind == "reserve":
                reserved[key] += op.quantity
        if isinstance(record, AppOrder):
            lines = [(f"{op.sku}@{op.location}", op.quantity) for op in plan.stock]
            orders[record.order_id] = (
                plan.identity_keys[0],
                plan.points,
                int(record.paid_amount * 100),
                lines,
            )
        elif isinstance(record, OrderStatus):
            statuses.append(record)
        elif isinstance(record, InventoryAdjustment):
            assert record.kind.value == "receipt"
    refunded: Counter[str] = Counter()  # cents refunded so far, per order
    for status in statuses:
        member, granted, paid, lines = orders[status.order_id]
        if status.status == "cancelled":
            for key, q in lines:
                reserved[key] -= q
            points.append((member, -granted))
        elif status.status in ("picked_up", "shipped"):
            for key, q in lines:
                reserved[key] -= q
                on_hand[key] -= q
        elif status.status == "refunded" and status.refund_amount is not None:
            # in proportion to all refunded so far, less what is back already
            before = granted * refunded[status.order_id] // paid
            refunded[status.order_id] = min(
                paid, refunded[status.order_id] + int(status.refund_amount * 100)
            )
            points.append((member, before - granted * refunded[status.order_id] // paid))
    balances: Counter[str] = Counter()
    for key, delta in points:
        balances[graph.find(key)] += delta
    members = {}
    for group in graph.components():
        members[group] = balances[graph.find(next(iter(group)))]
    stock = {k: (on_hand[k], reserved[k]) for k in set(on_hand) | set(reserved)}
    return members, stock
