"""Refunds of large orders take back points exactly: the script's share of an order's
points, floor(points x refunded / paid), passes 2^53 for orders of millions of yuan,
where a double rounds (docs/points-and-stock.md: "a full refund made in parts takes back
all of them")."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from .conftest import Services
from .test_orders import Shop

pytestmark = pytest.mark.integration


def _order(shop: Shop, paid: str, earned: int) -> None:
    order = shop._plan(
        "app_order",
        identity_keys=("card:C1",),
        points=earned,
        order_id="ORD-BIG",
        amount=Decimal(paid),
        purchase=True,
    )
    assert shop._apply(order).points == earned


@pytest.mark.parametrize(
    ("paid", "per_yuan"),
    [("9490857.45", 1), ("1096043.97", 150)],  # before: 1 point left behind by each
)
def test_a_full_refund_of_a_large_order_takes_back_every_point(
    services: Services, paid: str, per_yuan: int
) -> None:
    shop = Shop(services)
    _order(shop, paid, int(Decimal(paid)) * per_yuan)
    shop.status("ORD-BIG", "refunded", refund=paid)
    assert shop.points() == 0


def test_refunds_in_parts_take_back_the_exact_share(services: Services) -> None:
    paid, earned = Decimal("987654321098.76"), 987654321098 * 7  # points x cents > 2^53
    # the first part: a double makes the share 1,130,815,745,145 where it is ...144
    shop = Shop(services)
    _order(shop, str(paid), earned)
    cents = int(paid * 100)
    refunded = 0
    for part in ("161545106449.41", "0.01", "98765432109.87", "333333333333.33"):
        refunded += int(Decimal(part) * 100)
        shop.status("ORD-BIG", "refunded", refund=part)
        assert shop.points() == earned - earned * refunded // cents, part
    shop.status("ORD-BIG", "refunded", refund=str(paid))  # the rest and more: all of it
    assert shop.points() == 0


LUA = Path(__file__).resolve().parents[2] / "connectors" / "lua" / "apply_batch.lua"


def test_the_scripts_share_is_exact_for_any_whole_below_2_53(services: Services) -> None:
    """The script's share() alone, through EVAL, against Python's integers: amounts far
    past the contract's (below 10^14 cents) too. Before: sums of two intermediates near
    2 x whole rounded past 2^52, e.g. ...987 for ...988."""
    source = re.search(
        r"local function share\(.*?\n  return base \+ q\nend\n", LUA.read_text(), re.S
    )
    assert source is not None
    script = source.group(0) + (
        "local out = {}\nfor i = 1, #ARGV, 3 do\n"
        "  out[#out + 1] = string.format('%d', share(tonumber(ARGV[i]), tonumber(ARGV[i + 1]),"
        " tonumber(ARGV[i + 2])))\nend\nreturn out\n"
    )
    rng = random.Random(7)
    cases = [(9007199254740989, 9007199254740989, 9007199254740990), (0, 0, 1), (5, 0, 9)]
    for bits in (20, 40, 47, 52, 53):
        for _ in range(200):
            whole = rng.randrange(1, 2**bits)
            cases.append((rng.randrange(0, whole + 1), rng.randrange(0, whole + 1), whole))
    client = redis.Redis.from_url(services.redis_url)
    got = client.eval(script, 0, *[str(x) for case in cases for x in case])
    wrong = [(n, p, w, int(g), n * p // w) for (n, p, w), g in zip(cases, got, strict=True)
             if int(g) != n * p // w]  # fmt: skip
    assert wrong == []
