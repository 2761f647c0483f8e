-- Every processed touchpoint, enriched with its OneID.
-- ReplacingMergeTree on the event's identity: a fact re-emitted after a crash or a
-- redelivery collapses into one row (queries that must be exact use FINAL).
CREATE TABLE IF NOT EXISTS touchpoint_facts
(
    event_id         String,
    touchpoint_type  LowCardinality(String),
    event_time       DateTime64(3, 'UTC'),
    processed_time   DateTime64(3, 'UTC'),
    channel          LowCardinality(String),
    store_id         LowCardinality(String),
    one_id           String,
    new_member       Bool,
    order_id         String,
    campaign_id      LowCardinality(String),
    room_id          LowCardinality(String),
    quantity         Int32,
    amount           Decimal(14, 2),
    points           Int64,
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (touchpoint_type, toDate(event_time), event_id)
SETTINGS non_replicated_deduplication_window = 10000
