"""A refused record or look-up is reported without the personal values it held (phones are
never logged in clear: docs/identity.md)."""

from __future__ import annotations

import traceback

import pytest
from click.testing import CliRunner

from connectors.kafka import TouchpointProducer
from streams.cli import main

from .factories import EVENT_TIME, PHONE, envelope, phone, store_scan


@pytest.mark.parametrize(
    "identifier, secret",
    [
        ({"kind": "phone", "value": int(PHONE)}, PHONE),  # a JSON producer sends a number
        ({"kind": "openid", "value": "o_6Xk2-SECRET"}, "o_6Xk2-SECRET"),  # appid forgotten
    ],
    ids=["phone as a number", "openid without appid"],
)
def test_the_producer_sdk_refuses_a_record_without_echoing_its_identifier(
    identifier: dict, secret: str
) -> None:
    record = store_scan(envelope=envelope(identifiers=[phone()])).model_dump(mode="json")
    record["envelope"]["identifiers"] = [identifier]
    with (
        TouchpointProducer("127.0.0.1:9", clock=lambda: EVENT_TIME) as sdk,
        pytest.raises(Exception) as raised,
    ):
        sdk.send(record, "store_scan")
    # what an application's `log.exception(...)` around send() writes
    logged = "".join(traceback.format_exception(raised.value))
    assert secret not in logged, logged


@pytest.mark.parametrize("command", ["member", "forget"])
@pytest.mark.parametrize("typed", [PHONE, f"phone;{PHONE}", f"+86 {PHONE}"])
def test_a_mistyped_lookup_is_refused_without_echoing_the_value(
    command: str, typed: str, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    monkeypatch.setenv("OMNI_PHONE_HASH_KEY", "review-key")
    result = CliRunner().invoke(main, [command, typed, "--yes"] if command == "forget" else
                                [command, typed])  # fmt: skip
    assert result.exit_code != 0
    assert PHONE not in result.output, result.output
