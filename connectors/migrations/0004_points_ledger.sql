-- The points ledger: append-only, one row per (event, rule). A re-emitted entry
-- (redelivery) has the same key and collapses; sum(points) per one_id is the balance
-- earned and taken back (ClickHouse does not follow merges: join identity_events for
-- the survivor of an absorbed OneID).
CREATE TABLE IF NOT EXISTS points_ledger
(
    event_id         String,
    rule             LowCardinality(String),
    one_id           String,
    points           Int64,
    event_time       DateTime64(3, 'UTC'),
    processed_time   DateTime64(3, 'UTC'),
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (event_id, rule)
SETTINGS non_replicated_deduplication_window = 10000
