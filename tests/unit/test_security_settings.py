"""Kafka security settings reach every client; secrets can come from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings
from streams.wiring import faust_credentials


def test_plaintext_by_default() -> None:
    settings = Settings()
    assert settings.kafka_client_config() == {"security.protocol": "plaintext"}
    assert faust_credentials(settings) is None


def test_sasl_ssl_as_librdkafka_and_faust_see_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")  # (only its path is passed on to librdkafka)
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="omni",
        kafka_sasl_password="pw",
        kafka_ssl_ca_file=ca,
    )
    assert settings.kafka_client_config() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "omni",
        "sasl.password": "pw",
        "ssl.ca.location": str(ca),
    }
    creds = faust_credentials(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="omni",
            kafka_sasl_password="pw",
        )
    )
    assert (creds.username, creds.password, creds.ssl_context) == ("omni", "pw", None)
    assert "pw" not in repr(settings)


def test_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "OMNI_KAFKA_SASL_PASSWORD").write_text("from-a-file")
    (tmp_path / "OMNI_PHONE_HASH_KEY").write_text("k" * 64)
    monkeypatch.setenv("OMNI_SECRETS_DIR", str(tmp_path))
    settings = Settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "from-a-file"
    assert settings.phone_hash_key is not None
    assert settings.phone_hash_key.get_secret_value() == "k" * 64
    monkeypatch.setenv("OMNI_KAFKA_SASL_PASSWORD", "from-env")  # the environment wins
    assert Settings().kafka_sasl_password.get_secret_value() == "from-env"  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol", ["TLS", "sasl"])
def test_an_unknown_protocol_is_refused(protocol: str) -> None:
    with pytest.raises(ValueError, match="security_protocol"):
        Settings(kafka_security_protocol=protocol)


def test_an_unknown_reporting_time_zone_is_refused_by_name() -> None:
    assert Settings(reporting_time_zone="Europe/Paris").reporting_time_zone == "Europe/Paris"
    for zone in ("Asia/Shanghia", "../etc/passwd", ""):
        with pytest.raises(ValueError, match="OMNI_REPORTING_TIME_ZONE"):
            Settings(reporting_time_zone=zone)
