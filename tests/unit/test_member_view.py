"""Tier and RFM values of the member view."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.core.rules import PointsPolicy, Rules, parse_rates, rfm, tier_of

DAY = 86_400_000


@pytest.mark.parametrize(
    ("earned", "tier"),
    [(0, "bronze"), (999, "bronze"), (1000, "silver"), (4999, "silver"), (5000, "gold")],
)
def test_tiers_follow_lifetime_points(earned: int, tier: str) -> None:
    assert tier_of(earned) == tier


def test_rfm_of_a_frequent_buyer() -> None:
    assert rfm(7, 123_456, 10 * DAY, 13 * DAY + 5) == {
        "recency_days": 3,
        "frequency": 7,
        "monetary": "1234.56",
        "segment": "high",
    }


@pytest.mark.parametrize(("purchases", "segment"), [(0, "low"), (1, "low"), (2, "medium"),
                                                     (4, "medium"), (5, "high")])  # fmt: skip
def test_frequency_segments(purchases: int, segment: str) -> None:
    assert rfm(purchases, 0, 0, DAY)["segment"] == segment


def test_no_purchase_has_no_recency() -> None:
    assert rfm(0, 0, 0, DAY)["recency_days"] is None


def test_earn_rates_by_type_and_channel_most_specific_first() -> None:
    rules = Rules(
        phone_key=b"k",
        points_per_yuan=1,
        earn_rates=parse_rates("app_order@mini_program=3,app_order=2,store=1.5", "earn rate"),
    )
    paid = Decimal("100.90")  # whole yuan: 100
    assert rules.points_for_payment(paid, "app_order", "mini_program") == 300
    assert rules.points_for_payment(paid, "app_order", "app") == 200
    assert rules.points_for_payment(paid, "store_scan", "store") == 150
    assert rules.points_for_payment(paid, "store_scan", "other") == 100
    assert rules.points_for_payment(Decimal("3.99"), "store_scan", "store") == 4  # 3 x 1.5


@pytest.mark.parametrize("text", ["x", "a=", "a=-1", "=2", "a=nan", "a=two"])
def test_bad_rates_are_clear_errors(text: str) -> None:
    with pytest.raises(ValueError, match="tier multiplier"):
        parse_rates(text, "tier multiplier")


def test_points_policy_as_the_script_reads_it() -> None:
    policy = PointsPolicy(
        tier_multipliers={"gold": Decimal("1.5")},
        campaign_multipliers={"CMP-1": Decimal("2")},
        expiry_days=365,
        pickup_hold_hours=48,
    )
    arg = policy.as_script_argument()
    assert arg["tiers"] == [[5000, "gold", 1.5], [1000, "silver", 1.0], [0, "bronze", 1.0]]
    assert arg["campaign_mult"] == {"CMP-1": 2.0}
    assert (arg["expiry_ms"], arg["hold_ms"], arg["overdraft"]) == (365 * DAY, 48 * 3_600_000, 0)
