-- Every change of a SKU's stock at a location, with what it holds after and the stock
-- key's version (docs/clickhouse.md). (sku, location, version) is unique: a re-emitted
-- movement collapses into one row. The current stock of a key is its highest version
-- (argMax(on_hand, version)): it equals the Redis view once the sink has caught up.
-- Kept for two years; the live stock is in Redis.
CREATE TABLE IF NOT EXISTS stock_movements
(
    event_id         String,
    sku              String,
    location         LowCardinality(String),
    kind             LowCardinality(String),
    on_hand_delta    Int64,
    reserved_delta   Int64,
    on_hand          Int64,
    reserved         Int64,
    version          UInt64,
    event_time       DateTime64(3, 'UTC'),
    processed_time   DateTime64(3, 'UTC'),
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY toYYYYMM(processed_time)
ORDER BY (sku, location, version)
TTL toDateTime(processed_time) + INTERVAL 2 YEAR
SETTINGS non_replicated_deduplication_window = 10000
