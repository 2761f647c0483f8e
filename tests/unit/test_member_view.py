"""Tier and RFM values of the member view."""

from __future__ import annotations

import pytest

from streams.core.rules import rfm, tier_of

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
