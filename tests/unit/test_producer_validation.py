"""The producer SDK refuses what the workers would dead-letter, whatever form it is given
in: a model changed without validation (``model_copy(update=...)``) is checked again."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from connectors.kafka import TouchpointProducer
from schemas.models import MODELS
from streams.core.errors import InvalidTouchpoint

from .factories import EVENT_TIME, store_scan


@pytest.fixture
def producer() -> Iterator[TouchpointProducer]:
    # validate() sends nothing: no broker is needed behind the address
    with TouchpointProducer("127.0.0.1:9", clock=lambda: EVENT_TIME) as sdk:
        yield sdk


def test_a_valid_model_passes(producer: TouchpointProducer) -> None:
    assert producer.validate(store_scan())[0] == "store_scan"


@pytest.mark.parametrize(
    "update",
    [{"paid_amount": Decimal("-5.00")}, {"store_id": ""}],
    ids=["negative amount", "empty store"],
)
def test_a_model_changed_without_validation_is_checked_again(
    producer: TouchpointProducer, update: dict
) -> None:
    changed = store_scan().model_copy(update=update)
    with pytest.raises(InvalidTouchpoint):
        producer.validate(changed)


def test_a_workers_record_type_is_not_a_touchpoint(producer: TouchpointProducer) -> None:
    fact = MODELS["touchpoint_fact"].model_construct()
    with pytest.raises(InvalidTouchpoint) as raised:
        producer.validate(fact)
    assert raised.value.reason == "unknown_type"
