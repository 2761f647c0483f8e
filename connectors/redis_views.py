"""Redis views: the identity graph, member points and stock, applied one batch per round
trip by ``lua/apply_batch.lua``. Key layout: docs/redis-keys.md."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import orjson
import redis

from connectors.errors import ViewsUnavailable
from streams.core.plan import CHANNELS, EventPlan
from streams.core.rules import IDENTITY_PRIORITY, IdentityPolicy, PointsPolicy, rfm, tier_of

_TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


class IdentityChange(NamedTuple):
    """One entry of an event's identity log (what ``apply_batch.lua`` decided):

    * ``merge``: ``other`` was absorbed into ``one_id``; ``kept`` were the survivor's
      identifiers before, ``moved`` the absorbed member's;
    * ``refused``: the event linked ``one_id`` and ``other`` but a safety rule (``reason``)
      forbids fusing them: both stay as they were, flagged;
    * ``not_linked``: the identifier in ``moved`` was not added to ``one_id`` (``reason``).
    """

    action: str
    one_id: str
    other: str
    reason: str
    kept: tuple[str, ...]
    moved: tuple[str, ...]
    points: int = 0


def _change(entry: dict[str, Any]) -> IdentityChange:
    def keys(v: Any) -> tuple[str, ...]:  # cjson writes an empty list as {}
        return tuple(sorted(v)) if isinstance(v, list) else ()

    return IdentityChange(
        entry["action"],
        entry["one_id"],
        entry.get("other", ""),
        entry.get("reason", ""),
        keys(entry.get("kept")),
        keys(entry.get("moved")),
        int(entry.get("points", 0)),
    )


#: log entries about the identity graph (the rest: points, attribution)
IDENTITY_ACTIONS = frozenset({"merge", "refused", "not_linked"})
_ADVANCE_OFFSETS = """
for i = 1, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1') then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
"""
_GLOB = re.compile(r"[\\*?\[\]]")


def _literal(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return _GLOB.sub(r"\\\g<0>", text)


class StockMove(NamedTuple):
    """One change of a stock key (``apply_batch.lua`` ``move``): by how much on hand and
    reserved moved, what they hold after, and the key's version after the change.
    ``ref``: what caused it when no event did (``hold:<order>`` for a lapsed pick-up hold)."""

    sku: str
    location: str
    kind: str
    on_hand_delta: int
    reserved_delta: int
    on_hand: int
    reserved: int
    version: int
    ref: str = ""


def _is_move(entry: list[Any] | dict[str, Any]) -> bool:
    return isinstance(entry, list) or entry["action"] == "stock"


def _move(e: list[Any] | dict[str, Any]) -> StockMove:
    """A stock movement of the script's log: ``["stock", sku, location, kind, d_on, d_res,
    on, res, v, ref]``. Dedupe records written before movements were arrays (they live for
    ``OMNI_DEDUPE_TTL_S``) hold it as ``{"action": "stock", "sku": ..., "loc": ...}``."""
    if isinstance(e, list):
        _, sku, loc, kind, d_on, d_res, on, res, v, ref = e
        return StockMove(sku, loc, kind, int(d_on), int(d_res), int(on), int(res), int(v), ref)
    return StockMove(
        e["sku"], e["loc"], e["kind"], int(e["d_on"]), int(e["d_res"]), int(e["on"]),
        int(e["res"]), int(e["v"]), e.get("ref", ""),
    )  # fmt: skip


class MinuteBucket(NamedTuple):
    """The absolute counts of one minute x channel x touchpoint type x store, as Redis holds
    them after a batch; ``events`` only grows, so it versions the row."""

    minute: int  # epoch seconds of the minute's start
    channel: str
    touchpoint_type: str
    store_id: str
    events: int
    gmv_cents: int
    orders: int
    claims: int
    refunds_cents: int


def bucket_of(plan: EventPlan) -> str:
    minute = int(plan.event_time.timestamp()) // 60 * 60
    return f"{minute}|{plan.channel}|{plan.touchpoint_type}|{plan.store_id}"


def _bucket(row: list[Any]) -> MinuteBucket:
    minute, channel, kind, store = row[0].split("|", 3)
    return MinuteBucket(int(minute), channel, kind, store, *(int(v) for v in row[1:6]))


@dataclass(frozen=True)
class Applied:
    """What one batch did: an outcome per item, and the per-minute buckets it touched."""

    outcomes: list[Outcome]
    minutes: list[MinuteBucket]


class Outcome(NamedTuple):
    #: new | duplicate | replay | replay_expired | dead | replay_dead (see apply_batch.lua);
    #: replay_expired: redelivered after its dedupe record expired, nothing known to re-emit
    status: str
    one_id: str = ""
    new_member: bool = False
    backordered: bool = False
    claim_refused: bool = False
    #: an app order whose order id was applied already, under another event id: recorded,
    #: not applied again
    order_repeated: bool = False
    #: points the event earned (after tier and campaign multipliers; 0 if refused)
    points: int = 0
    identity_log: tuple[IdentityChange, ...] = ()
    stock_moves: tuple[StockMove, ...] = ()

    @property
    def attribution(self) -> str:
        return next((c.reason for c in self.identity_log if c.action == "attributed"), "")

    @property
    def emits_fact(self) -> bool:
        """A fact goes out for a first application and again on redelivery (the sink
        deduplicates by event_id); a re-sent duplicate adds nothing."""
        return self.status in ("new", "replay")


#: kinds that name a person (a member can be told apart by them)
_IDENTIFYING = frozenset(k for k in IDENTITY_PRIORITY if k not in ("device", "openid"))


def _parse(status: bytes | str, result: bytes | str) -> Outcome:
    status = status.decode() if isinstance(status, bytes) else status
    text = result.decode() if isinstance(result, bytes) else result
    if not text:
        return Outcome("replay_expired" if status == "replay" else status)
    one_id, created, flags, points, *log = text.split("|", 4)
    entries = orjson.loads(log[0]) if log else []
    changes = tuple(_change(e) for e in entries if not _is_move(e))
    moves = tuple(_move(e) for e in entries if _is_move(e))
    return Outcome(
        status,
        one_id,
        created == "1",
        "B" in flags,
        "X" in flags,
        "R" in flags,
        int(points),
        changes,
        moves,
    )


def event_item(plan: EventPlan, tp: str, offset: int) -> dict[str, Any]:
    item = {
        "tp": tp,
        "o": offset,
        "id": plan.event_id,
        "y": plan.touchpoint_type,
        "t": int(plan.event_time.timestamp() * 1000),
        "k": list(plan.identity_keys),
        "c": CHANNELS.index(plan.channel),
        "p": plan.points,
        "s": [[op.kind, op.sku, op.location, op.quantity, op.from_location] for op in plan.stock],
        "r": plan.order_id,
        "m": int(plan.amount * 100),
        "u": plan.order_status,
        "g": plan.campaign_id,
        "b": 1 if plan.purchase else 0,
        "L": list(plan.candidates),
        "h": plan.touch,
        "H": 1 if plan.pickup else 0,
        "a": bucket_of(plan),
    }
    if plan.order_status and plan.store_id:
        item["S"] = plan.store_id  # where a backordered order ships from
    return item


def dead_item(tp: str, offset: int) -> dict[str, Any]:
    return {"tp": tp, "o": offset, "d": 1}


class RedisViews:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "omni:",
        dedupe_ttl_s: int = 7 * 24 * 3600,
        policy: IdentityPolicy | None = None,
        points: PointsPolicy | None = None,
        aggregate_ttl_s: int = 31 * 24 * 3600,
    ):
        self.client = client
        self.prefix = prefix
        #: True for `omni rebuild`'s replay: applies while ``rebuilding`` is set
        self.replaying = False
        self.dedupe_ttl_s = dedupe_ttl_s
        self.aggregate_ttl_s = aggregate_ttl_s
        self.policy = orjson.dumps((policy or IdentityPolicy()).as_script_argument())
        self.config = orjson.dumps((points or PointsPolicy()).as_script_argument())
        lua = resources.files("connectors").joinpath("lua")
        self._apply = client.register_script(lua.joinpath("apply_batch.lua").read_text("utf-8"))
        self._forget = client.register_script(lua.joinpath("forget.lua").read_text("utf-8"))
        self._advance = client.register_script(_ADVANCE_OFFSETS)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisViews:
        client = redis.Redis.from_url(
            url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=10
        )
        return cls(client, **kwargs)

    def apply(self, items: list[dict[str, Any]], now_ms: int | None = None) -> list[Outcome]:
        """The outcomes of ``apply_batch``."""
        return self.apply_batch(items, now_ms).outcomes

    def apply_batch(self, items: list[dict[str, Any]], now_ms: int | None = None) -> Applied:
        """Apply a batch atomically: one round trip, whatever its size. ``now_ms``: the
        worker's clock, for pick-up holds that lapse."""
        if not items:
            return Applied([], [])
        payload = orjson.dumps(items)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        args = [
            self.prefix, self.dedupe_ttl_s, payload, self.policy, self.config, now_ms,
            self.aggregate_ttl_s, "1" if self.replaying else "0",
        ]  # fmt: skip
        try:
            raw = self._apply(args=args)
        except _TRANSIENT as exc:
            raise ViewsUnavailable(f"redis: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("REBUILDING"):
                raise ViewsUnavailable(
                    "the views are being rebuilt: `omni rebuild` wiped them and has not "
                    "finished (if it failed, run it again); the batch waits"
                ) from exc
            raise
        *per_item, (_, minutes) = raw
        rows = orjson.loads(minutes)
        return Applied(
            [_parse(s, r) for s, r in per_item],
            [_bucket(r) for r in rows] if isinstance(rows, list) else [],  # {} when none
        )

    def stats(self) -> dict[str, int]:
        try:
            raw = self.client.hgetall(self.prefix + "stats")
        except _TRANSIENT as exc:
            raise ViewsUnavailable(f"redis: {exc}") from exc
        return {k.decode(): int(v) for k, v in raw.items()}

    def resolve(self, key: str) -> str | None:
        """identity key (or ``oneid:<id>``) -> the live OneID, following merges."""
        if key.startswith("oneid:"):
            one_id: str | None = key.split(":", 1)[1]
        else:
            got = self.client.get(self.prefix + "i:" + key)
            one_id = got.decode() if got else None
        for _ in range(64):
            if one_id is None:
                return None
            into = self.client.hget(self.prefix + "m:" + one_id, "into")
            if into is None:
                break
            one_id = into.decode()
        if one_id is not None and not self.client.exists(self.prefix + "m:" + one_id):
            return None
        return one_id

    def member(self, key: str) -> dict[str, Any] | None:
        one_id = self.resolve(key)
        if one_id is None:
            return None
        fields = {
            k.decode(): v.decode()
            for k, v in self.client.hgetall(self.prefix + "m:" + one_id).items()
        }
        ids = sorted(m.decode() for m in self.client.smembers(self.prefix + "mi:" + one_id))
        channel_bits = int(fields.get("ch", 0))
        absorbed = sorted(m.decode() for m in self.client.smembers(self.prefix + "ma:" + one_id))
        return {
            "one_id": one_id,
            # a device or an openid alone says nothing about who: an anonymous visitor
            "anonymous": not any(i.split(":", 1)[0] in _IDENTIFYING for i in ids),
            "identifiers": ids,
            "absorbed": absorbed,
            "points": int(fields.get("pts", 0)),
            "tier": tier_of(int(fields.get("earned", 0))),
            "rfm": rfm(
                int(fields.get("f", 0)),
                int(fields.get("mon", 0)),
                int(fields.get("rec", 0)),
                int(time.time() * 1000),
            ),
            "recent_points": [
                dict(zip(("event_id", "rule", "points"), e.decode().split(" "), strict=True))
                for e in self.client.lrange(self.prefix + "l:" + one_id, 0, -1)
            ],
            "events": int(fields.get("n", 0)),
            "first_seen_ms": int(fields.get("first", 0)),
            "last_seen_ms": int(fields.get("last", 0)),
            "channels": [c for i, c in enumerate(CHANNELS) if channel_bits & (1 << i)],
        }

    def stock(self, sku: str, location: str | None = None) -> list[dict[str, Any]]:
        """The SKU's stock at ``location``, or at every location that has a key for it.
        A SKU may hold ``@`` and glob characters (a location holds no ``@``): the key
        ``s:<sku>@<location>`` is matched literally, and ``s:A@B@C`` is SKU ``A@B``."""
        head = f"{self.prefix}s:{sku}@"
        if location is not None:
            locations = [location]
        else:
            pattern = _literal(head) + "*"
            found = (
                k.decode()[len(head) :] for k in self.client.scan_iter(match=pattern, count=1000)
            )
            locations = sorted(loc for loc in found if "@" not in loc)
        rows = []
        for loc in locations:
            h = {k.decode(): int(v) for k, v in self.client.hgetall(head + loc).items()}
            if not h:
                continue
            on_hand, reserved = h.get("on_hand", 0), h.get("reserved", 0)
            rows.append(
                {
                    "sku": sku,
                    "location": loc,
                    "on_hand": on_hand,
                    "reserved": reserved,
                    "available_to_promise": on_hand - reserved,
                }
            )
        return rows

    def review_queue(self) -> list[str]:
        """Events whose merge was refused because both members were identified."""
        return [m.decode() for m in self.client.zrange(self.prefix + "review", 0, -1)]

    def advance_offsets(self, last: Mapping[str, int]) -> None:
        """Count every offset up to ``last[topic/partition]`` as applied (a rebuild's end:
        what a worker reads again up to there is a replay), never lowering one."""
        if last:
            args = [x for tp, offset in sorted(last.items()) for x in (tp, offset)]
            self._advance(keys=[self.prefix + "offsets"], args=args)

    def forget(self, key: str, at_ms: int) -> dict[str, Any] | None:
        """Erase the member ``key`` resolves to: identity links, profile, points and the
        OneIDs it absorbed, atomically; an erasure record (no personal data) is kept.
        The results stored for their events go next (``blank_results``)."""
        one_id = self.resolve(key)
        if one_id is None:
            return None
        try:
            raw, keys = self._forget(args=[self.prefix, one_id, at_ms])
        except _TRANSIENT as exc:
            raise ViewsUnavailable(f"redis: {exc}") from exc
        erased = _erasure(raw)
        # not part of the record: for blank_results and the ClickHouse erasure only
        erased["keys"] = sorted(orjson.loads(keys) or [])  # cjson: [] as {}
        return erased

    def blank_results(
        self, one_ids: Collection[str], keys: Collection[str] = (), batch: int = 1000
    ) -> int:
        """Empty the dedupe records (``e:``) of erased OneIDs' events: their results name
        the person's identifiers and would be re-emitted on redelivery. Other members'
        results lose the log entries that name the person (a merge refused with one of
        their OneIDs, one of their ``keys`` not linked). The records stay, TTL and all, so
        a re-sent event is still a duplicate. No index leads from a member to its events,
        so every record is read, in batches. Safe to repeat; how many were changed."""
        people, their_keys = set(one_ids), set(keys)
        heads = tuple(f"{one_id}|".encode() for one_id in people)
        needles = [f'"{one_id}"'.encode() for one_id in people]
        # as the script's cjson writes them too: it escapes "/" (a card "C/0042")
        needles += [orjson.dumps(key) for key in keys]
        needles += [orjson.dumps(key).replace(b"/", b"\\/") for key in keys if "/" in key]
        pattern = _literal(self.prefix) + "e:*"
        changed = 0
        try:
            found = self.client.scan_iter(match=pattern, count=batch)
            while chunk := list(itertools.islice(found, batch)):
                values = self.client.mget(chunk)
                rewrites = {}
                for k, v in zip(chunk, values, strict=True):
                    if not v:
                        continue
                    if v.startswith(heads):
                        rewrites[k] = b""
                    elif any(n in v for n in needles):
                        scrubbed = _scrub(v, people, their_keys)
                        if scrubbed != v:
                            rewrites[k] = scrubbed
                if rewrites:
                    with self.client.pipeline(transaction=False) as pipe:
                        for key, value in rewrites.items():
                            pipe.set(key, value, keepttl=True, xx=True)
                        pipe.execute()
                    changed += len(rewrites)
        except _TRANSIENT as exc:
            raise ViewsUnavailable(f"redis: {exc}") from exc
        return changed

    def erasure(self, one_id: str) -> dict[str, Any] | None:
        """The record of an earlier erasure of ``one_id`` (``forget``), if any."""
        raw = self.client.hget(self.prefix + "erased", one_id)
        return _erasure(raw) if raw else None

    def record_erasure(self, erased: Mapping[str, Any]) -> None:
        """Write (or widen) the erasure record of ``erased["one_id"]``: the OneIDs found
        merged into the person outside the views (ClickHouse's merge log) are kept with
        it, so a rerun that completes the erasure still reaches them once the merge log
        itself is erased."""
        fields = ("one_id", "absorbed", "identifiers", "points", "at")
        record = {k: erased[k] for k in fields}
        try:
            self.client.hset(self.prefix + "erased", erased["one_id"], orjson.dumps(record))
        except _TRANSIENT as exc:
            raise ViewsUnavailable(f"redis: {exc}") from exc


def _scrub(result: bytes, one_ids: set[str], keys: set[str]) -> bytes:
    """Another member's stored result without the log entries that name an erased person:
    one of their OneIDs as either side, or one of their identity keys."""
    one_id, created, flags, points, *log = result.split(b"|", 4)
    if not log:
        return result

    def names_them(entry: list[Any] | dict[str, Any]) -> bool:
        if isinstance(entry, list):  # a stock movement: no person in it
            return False
        sides = {entry.get("one_id"), entry.get("other")}
        held = [*(entry.get("kept") or []), *(entry.get("moved") or [])]
        return bool(sides & one_ids) or any(k in keys for k in held)

    entries = [e for e in orjson.loads(log[0]) if not names_them(e)]
    head = b"|".join([one_id, created, flags, points])
    return head + b"|" + orjson.dumps(entries) if entries else head


def _erasure(raw: bytes | str) -> dict[str, Any]:
    erased = orjson.loads(raw)
    # cjson writes an empty list as {}
    erased["absorbed"] = sorted(erased["absorbed"]) if erased["absorbed"] else []
    return erased
