-- Per-minute aggregates, minute x channel x touchpoint type x store (docs/clickhouse.md).
-- The counts (events, GMV, orders, claims, refunds) are kept by the workers in Redis,
-- atomically with each event's dedupe record, and arrive as absolute values: a row with
-- a higher `events` replaces a lower one, an equal one is the same row again. Distinct
-- members are ClickHouse's part (touchpoint_minute_members below): a uniqExact state is
-- immune to a fact arriving twice. Read both through the view touchpoint_minute_live.
-- Kept for 400 days (a year-on-year comparison).
CREATE TABLE IF NOT EXISTS touchpoint_minute
(
    minute           DateTime('UTC'),
    channel          LowCardinality(String),
    touchpoint_type  LowCardinality(String),
    store_id         LowCardinality(String),
    events           UInt64,
    gmv              Decimal(18, 2),
    orders           UInt64,
    claims           UInt64,
    refunds          Decimal(18, 2),
    processed_time   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(events)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, channel, touchpoint_type, store_id)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS touchpoint_minute_members
(
    minute           DateTime('UTC'),
    channel          LowCardinality(String),
    touchpoint_type  LowCardinality(String),
    store_id         LowCardinality(String),
    members          AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, channel, touchpoint_type, store_id)
TTL minute + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS touchpoint_minute_members_mv
TO touchpoint_minute_members AS
SELECT
    toStartOfMinute(toDateTime(event_time, 'UTC')) AS minute,
    channel,
    touchpoint_type,
    store_id,
    uniqExactState(one_id) AS members
FROM touchpoint_facts
WHERE one_id != ''
GROUP BY minute, channel, touchpoint_type, store_id;

CREATE VIEW IF NOT EXISTS touchpoint_minute_live AS
SELECT
    a.minute AS minute,
    a.channel AS channel,
    a.touchpoint_type AS touchpoint_type,
    a.store_id AS store_id,
    a.events AS events,
    ifNull(m.members, 0) AS members,
    a.gmv AS gmv,
    a.orders AS orders,
    a.claims AS claims,
    a.refunds AS refunds
FROM (SELECT * FROM touchpoint_minute FINAL) AS a
LEFT JOIN
(
    SELECT minute, channel, touchpoint_type, store_id, uniqExactMerge(members) AS members
    FROM touchpoint_minute_members
    GROUP BY minute, channel, touchpoint_type, store_id
) AS m USING (minute, channel, touchpoint_type, store_id)
SETTINGS join_use_nulls = 1;
