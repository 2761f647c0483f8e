"""Builds the pipeline's parts from the settings: the one place where settings become
rules, adapters and topic names."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from connectors.kafka import PipelineOutput
from connectors.redis_views import RedisViews
from schemas.codec import SchemaResolver
from schemas.topics import DLQ_SUFFIX, FACTS_SUFFIX, input_topics
from streams.core.guard import InvalidShareGuard
from streams.core.rules import (
    IdentityPolicy,
    PointsPolicy,
    Rules,
    parse_budgets,
    parse_locations,
    parse_rates,
)
from streams.endpoints import Endpoints
from streams.pipeline import TouchpointPipeline
from streams.settings import Settings


def phone_key(settings: Settings) -> bytes:
    """The configured HMAC key, else one generated once and kept under OMNI_HOME."""
    if settings.phone_hash_key is not None:
        return settings.phone_hash_key.get_secret_value().encode()
    path = Path(settings.home) / "phone-hash.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def rules(settings: Settings, validation_only: bool = False) -> Rules:
    """The configured rules. ``validation_only``: for the producer side, which checks records
    as the workers will but hashes nothing, so needs (and creates) no phone key."""
    return Rules(
        phone_key=b"validation-only" if validation_only else phone_key(settings),
        points_per_yuan=settings.points_per_yuan,
        red_envelope_bonus_points=settings.red_envelope_bonus_points,
        max_future=timedelta(seconds=settings.max_clock_skew_s),
        max_past=timedelta(days=settings.max_event_age_days),
        extra_illegal_identifiers=frozenset(
            v.strip() for v in settings.identifier_blocklist.split(",") if v.strip()
        ),
        identity=identity_policy(settings),
        delivery_locations=parse_locations(settings.delivery_locations),
        earn_rates=parse_rates(settings.earn_rates, "earn rate"),
    )


def points_policy(settings: Settings) -> PointsPolicy:
    return PointsPolicy(
        budgets=parse_budgets(settings.campaign_budgets),
        attribution_window_s=settings.attribution_window_s,
        tier_multipliers=parse_rates(settings.tier_multipliers, "tier multiplier"),
        campaign_multipliers=parse_rates(settings.campaign_multipliers, "campaign multiplier"),
        overdraft=settings.points_overdraft,
        expiry_days=settings.points_expiry_days,
        pickup_hold_hours=settings.pickup_hold_hours,
    )


def identity_policy(settings: Settings) -> IdentityPolicy:
    return IdentityPolicy.parse(settings.identity_limits, settings.identity_review_kinds)


def facts_topic(settings: Settings) -> str:
    return settings.topic(FACTS_SUFFIX)


def dlq_topic(settings: Settings) -> str:
    return settings.topic(DLQ_SUFFIX)


def all_topics(settings: Settings) -> list[str]:
    return [*input_topics(settings.topic_prefix), facts_topic(settings), dlq_topic(settings)]


def views(settings: Settings, endpoints: Endpoints) -> RedisViews:
    return RedisViews.from_url(
        endpoints.redis_url,
        prefix=f"{settings.topic_prefix}:",
        dedupe_ttl_s=settings.dedupe_ttl_s,
        # a bucket outlives the oldest event accepted (older ones are dead-lettered)
        aggregate_ttl_s=(settings.max_event_age_days + 1) * 86400,
        policy=identity_policy(settings),
        points=points_policy(settings),
    )


def resolver(settings: Settings) -> SchemaResolver | None:
    """Writer schemas of Confluent-framed messages, when a schema registry is configured."""
    if not settings.schema_registry_url:
        return None
    from connectors.registry import RegistrySchemas

    return RegistrySchemas(settings.schema_registry_url)


def pipeline(settings: Settings, endpoints: Endpoints) -> TouchpointPipeline:
    return TouchpointPipeline(
        input_types=input_topics(settings.topic_prefix),
        rules=rules(settings),
        views=views(settings, endpoints),
        output=PipelineOutput(
            endpoints.kafka_bootstrap,
            facts_topic(settings),
            dlq_topic(settings),
            config=endpoints.kafka_config,
        ),
        resolver=resolver(settings),
        guard=InvalidShareGuard(settings.dlq_max_invalid_share, settings.dlq_guard_window),
    )


def faust_credentials(settings: Settings) -> Any:
    """The Kafka security settings as faust (aiokafka) credentials; None for PLAINTEXT."""
    import ssl

    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )
