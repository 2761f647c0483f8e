"""The simulated workload stitches as people do: claimers link to their orders, and a
person has a different openid in each WeChat app."""

from __future__ import annotations

from collections import defaultdict

from schemas.models import IdentifierKind
from streams.simulate import Simulation


def _key(i) -> str:  # type: ignore[no-untyped-def]
    if i.kind == IdentifierKind.openid:
        return f"openid:{i.app_id}:{i.value}"
    return f"{i.kind.value}:{i.value}"


def test_red_envelope_claimers_can_be_stitched_to_their_other_touchpoints() -> None:
    """ "Members show up across channels with overlapping identifiers (..., a unionid when
    claiming a red envelope, openids per WeChat app), so the identity graph has real
    stitching to do" (simulate.py); "shows different subsets of them on different
    channels, so identities are stitched and merged as in production" (benchmarks.md).
    Red-envelope claim -> purchase is a dashboard panel: some claimer must be joinable to
    a purchase. Union-find over the identifiers each record shows together."""
    sim = Simulation(events=3000, seed=3, duplicate_share=0, malformed_share=0)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    types_of_key: dict[str, set[str]] = defaultdict(set)
    for msg in sim:
        assert msg.record is not None
        keys = [_key(i) for i in msg.record.envelope.identifiers]
        for k in keys:
            types_of_key[k].add(msg.type_name)
            parent[find(k)] = find(keys[0])
    types_of_person: dict[str, set[str]] = defaultdict(set)
    for k, types in types_of_key.items():
        types_of_person[find(k)] |= types
    claimers = [t for t in types_of_person.values() if "red_envelope_claim" in t]
    assert claimers
    stitched = [t for t in claimers if t & {"app_order", "store_scan", "livestream_click"}]
    assert stitched, f"none of {len(claimers)} claimers shares an identifier with anything else"


def test_a_persons_openids_differ_between_wechat_apps() -> None:
    """DOMAIN.md: "openids are per WeChat app (appid): the same person has different
    openids in different apps"."""
    sim = Simulation(events=10, seed=3)
    for member in sim.members:
        assert len(set(member.openids.values())) == len(member.openids), member.openids
