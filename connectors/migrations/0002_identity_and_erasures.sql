-- The identity merge log: every merge, refused merge and identifier left unlinked, with
-- the identifiers on each side (identity keys; phones only as keyed hashes).
-- A re-emitted entry (redelivery) has the same (event_id, seq) and collapses.
CREATE TABLE IF NOT EXISTS identity_events
(
    event_id           String,
    seq                UInt16,
    event_time         DateTime64(3, 'UTC'),
    processed_time     DateTime64(3, 'UTC'),
    action             LowCardinality(String),
    one_id             String,
    other_one_id       String,
    reason             LowCardinality(String),
    identifiers_before Array(String),
    identifiers_other  Array(String),
    points_moved       Int64,
    source_topic       LowCardinality(String),
    source_partition   UInt16,
    source_offset      UInt64
)
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (event_id, seq)
SETTINGS non_replicated_deduplication_window = 10000;

-- Erasures (`omni forget`): what was erased and when; no personal data.
CREATE TABLE IF NOT EXISTS erasures
(
    erased_at        DateTime64(3, 'UTC'),
    one_id           String,
    absorbed         Array(String),
    identifiers      UInt32,
    facts_deleted    UInt64,
    identity_deleted UInt64
)
ENGINE = MergeTree
ORDER BY (erased_at, one_id)
