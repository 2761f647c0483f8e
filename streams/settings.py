"""The one settings object. Read from ``OMNI_*`` environment variables (and a ``.env``
file) by the entry points only; everything below them receives it as an argument.

An unset ``OMNI_KAFKA_BOOTSTRAP`` / ``OMNI_REDIS_URL`` / ``OMNI_CLICKHOUSE_DSN`` means:
use the embedded default that ``omni up`` starts under ``OMNI_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)


class Settings(BaseSettings):
    """Every setting: from init arguments, then OMNI_* variables, then .env, then secret
    files (a file per setting named like its variable, e.g. OMNI_KAFKA_SASL_PASSWORD, in
    the folder OMNI_SECRETS_DIR names, or /run/secrets as Docker and Kubernetes mount)."""

    model_config = SettingsConfigDict(env_prefix="OMNI_", env_file=".env", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        folder = os.environ.get("OMNI_SECRETS_DIR") or "/run/secrets"
        sources: tuple[PydanticBaseSettingsSource, ...] = (
            init_settings,
            env_settings,
            dotenv_settings,
        )
        if Path(folder).is_dir():
            sources += (SecretsSettingsSource(settings_cls, secrets_dir=folder),)
        return sources

    # Where the services are. Unset: the embedded stack's.
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers, host:port[,...]"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="Kafka SASL mechanism (with SASL_*)"
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password")
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (with *SSL)"
    )
    redis_url: str | None = Field(None, description="redis://[user:password@]host:port/db")
    clickhouse_dsn: str | None = Field(
        None, description="chdb:///path/to/dir (embedded) or http(s)://user:pass@host:port"
    )
    schema_registry_url: str | None = Field(
        None, description="Confluent schema registry; unset: Avro single-object encoding"
    )
    home: Path = Field(Path(".omni"), description="State directory: pids, ports, logs, data")

    # Kafka
    topic_prefix: str = Field("omni", description="Prefix of every topic name")
    topic_partitions: int = Field(4, ge=1, description="Partitions of topics the stack creates")
    consumer_session_timeout_s: float = Field(
        6.0, gt=0, description="Kafka consumer session timeout; group joins take about half"
    )
    consumer_fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=30_000,
        description="Longest a worker's fetch waits at the broker for data "
        "(the embedded broker answers only when it runs out; streams/faust_kafka.py)",
    )
    app_id: str = Field("omni", description="Faust application id (= the workers' consumer group)")

    # Workers
    workers: int = Field(1, ge=1, description="Worker processes `omni up` starts")
    batch_max_events: int = Field(2000, ge=1, description="Most events one worker batch holds")
    batch_max_wait_s: float = Field(0.2, gt=0, description="Longest a worker batch waits to fill")
    batch_overlap: bool = Field(
        True,
        description="Decode and plan the next batch while the current one is applied "
        "(batches still reach Redis in offset order, each acknowledged once applied)",
    )
    shutdown_grace_s: float = Field(
        30.0,
        gt=0,
        description="Longest a stopping worker waits for the batch in hand before it exits "
        "unacknowledged (keep it below the orchestrator's kill timeout)",
    )
    faust_fast_drain: bool = Field(
        True,
        description="Hand fetched messages to faust streams without per-message tasks "
        "(streams/faust_fastpath.py; pinned to faust-streaming 0.15.3)",
    )
    gc_threshold: int = Field(
        50_000,
        ge=0,
        description="Net allocations between young garbage collections in workers and the "
        "sink, after freezing what startup left (0: Python's defaults; streams/gc_tuning.py)",
    )
    dedupe_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="How long an event_id is remembered for deduplication"
    )
    max_event_age_days: int = Field(
        90,
        ge=1,
        description="Events older than this when their message reached Kafka are dead-lettered"
        " (too_old)",
    )
    max_clock_skew_s: int = Field(
        3600,
        ge=0,
        description="Events further ahead of the worker's clock are dead-lettered (in_future)",
    )
    dlq_max_invalid_share: float = Field(
        0.5, gt=0, le=1, description="Invalid share over the guard window that stops a worker"
    )
    dlq_guard_window: int = Field(
        1000, ge=10, description="Messages the invalid-share guard looks back on"
    )
    identifier_blocklist: str = Field(
        "", description="Comma-separated identifier values refused on top of the built-in ones"
    )
    identity_limits: str = Field(
        "card=1,phone=1,unionid=1,app=1,openid=10,device=10",
        description="Most identifiers of a kind per OneID (KIND=N,...)",
    )
    identity_review_kinds: str = Field(
        "card,phone", description="Kinds whose holders are never fused: refused, for review"
    )
    phone_hash_key: SecretStr | None = Field(
        None, description="HMAC key for phone hashes; unset: a random key kept under OMNI_HOME"
    )

    # Points
    points_per_yuan: int = Field(1, ge=0, description="Points per whole yuan paid")
    red_envelope_bonus_points: int = Field(10, ge=0, description="Points for a red-envelope claim")
    delivery_locations: str = Field(
        "WH-EAST=31.23:121.47,WH-NORTH=39.90:116.40",
        description="Where delivery orders ship from, NAME=LAT:LON,...: nearest with stock",
    )
    earn_rates: str = Field(
        "",
        description="Points per yuan by TYPE@CHANNEL, TYPE or CHANNEL (e.g. app_order=2,"
        "store=1.5); others earn OMNI_POINTS_PER_YUAN",
    )
    tier_multipliers: str = Field(
        "", description="Earned points x the member's tier: silver=1.2,gold=1.5 (others 1)"
    )
    campaign_multipliers: str = Field(
        "", description="Earned points x the campaign's, for orders its red envelopes brought"
    )
    points_overdraft: int = Field(
        0, ge=0, description="How far a reversal may take a balance below zero"
    )
    points_expiry_days: int = Field(
        0, ge=0, description="A balance untouched this many days lapses (0: never)"
    )
    pickup_hold_hours: int = Field(
        72, ge=1, description="A pick-up reservation is released after this many hours"
    )
    attribution_window_s: int = Field(
        24 * 3600,
        ge=0,
        description="An app order is attributed to the member's last touch this recent",
    )
    campaign_budgets: str = Field(
        "",
        description="Red-envelope budgets CAMPAIGN=COUNT:YUAN,... (0: no limit); claims past "
        "them are refused",
    )

    # Sink
    sink_batch_rows: int = Field(20000, ge=1, description="Rows the sink buffers before inserting")
    sink_batch_seconds: float = Field(1.0, gt=0, description="Longest the sink buffers a row")
    sink_http_host: str = Field("127.0.0.1", description="Bind address of the sink's read API")
    sink_api_token: SecretStr | None = Field(
        None,
        description="Bearer token the sink's API requires (all but /healthz, /readyz); "
        "required when it binds beyond loopback",
    )
    sink_http_port: int = Field(0, ge=0, description="Port of the sink's read API (0: any free)")
    reporting_time_zone: str = Field(
        "Asia/Shanghai",
        description="IANA zone whose calendar days the dashboards count in (new members per day)",
    )
    sink_faults: str = Field(
        "",
        description="Fault drills, never in production: fail_inserts_s=N (inserts fail for N "
        "s after start), kill_after_insert=K (SIGKILL itself after the K-th batch's inserts, "
        "before its commit)",
    )

    # Worker web (health/readiness)
    worker_web_port: int = Field(
        0, ge=0, description="Port of a worker's health page (0: any free)"
    )
    log_json: bool = Field(False, description="Structured JSON logs")

    @model_validator(mode="after")
    def _identity_policy_parses(self) -> Settings:
        from streams.core.rules import (
            IdentityPolicy,
            parse_budgets,
            parse_locations,
            parse_rates,
        )

        IdentityPolicy.parse(self.identity_limits, self.identity_review_kinds)
        parse_budgets(self.campaign_budgets)
        parse_locations(self.delivery_locations)
        parse_rates(self.earn_rates, "earn rate")
        parse_rates(self.tier_multipliers, "tier multiplier")
        parse_rates(self.campaign_multipliers, "campaign multiplier")
        parse_rates(self.sink_faults, "sink fault")
        try:
            ZoneInfo(self.reporting_time_zone)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(
                f"OMNI_REPORTING_TIME_ZONE: no time zone {self.reporting_time_zone!r} "
                "(an IANA name such as Asia/Shanghai)"
            ) from None
        return self

    def kafka_client_config(self) -> dict[str, str]:
        """The Kafka security settings as librdkafka (confluent-kafka) configuration."""
        config = {"security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_security_protocol.startswith("SASL"):
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username or ""
            if self.kafka_sasl_password is not None:
                config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol.endswith("SSL") and self.kafka_ssl_ca_file:
            config["ssl.ca.location"] = str(self.kafka_ssl_ca_file)
        return config

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    def to_env(self) -> dict[str, str]:
        """These settings as ``OMNI_*`` variables, for the processes this one starts."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, Path):
                value = str(value.resolve())
            env[f"OMNI_{name.upper()}"] = str(value)
        return env
