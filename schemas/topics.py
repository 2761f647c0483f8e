"""The topic map: one topic per event type, and the partition key of each type.

Keys are chosen so that events whose order matters share a partition: a store's
receipts, an order's lifecycle, a SKU's stock movements.
"""

from __future__ import annotations

from typing import Any

from schemas.contract import TOUCHPOINT_TYPES

#: type -> (topic suffix, partition key field, why)
TOPIC_MAP: dict[str, tuple[str, str, str]] = {
    "store_scan": ("touchpoint.store_scan", "store_id", "a store's receipts stay in order"),
    "livestream_click": ("touchpoint.livestream_click", "room_id", "a room's clicks stay in order"),
    "red_envelope_claim": (
        "touchpoint.red_envelope_claim",
        "campaign_id",
        "a campaign's claims meet its budget in order",
    ),
    "app_order": ("touchpoint.app_order", "order_id", "an order's events stay in order"),
    "order_status": ("touchpoint.order_status", "order_id", "an order's events stay in order"),
    "inventory_adjustment": (
        "stock.inventory_adjustment",
        "sku",
        "a SKU's movements stay in order",
    ),
}
FACTS_SUFFIX = "facts"
DLQ_SUFFIX = "dlq"

assert set(TOPIC_MAP) == set(TOUCHPOINT_TYPES)


def topic_for(prefix: str, type_name: str) -> str:
    return f"{prefix}.{TOPIC_MAP[type_name][0]}"


def input_topics(prefix: str) -> dict[str, str]:
    """topic name -> event type, for every input topic."""
    return {topic_for(prefix, t): t for t in TOUCHPOINT_TYPES}


def partition_key(type_name: str, record: dict[str, Any]) -> bytes:
    return str(record[TOPIC_MAP[type_name][1]]).encode("utf-8")
