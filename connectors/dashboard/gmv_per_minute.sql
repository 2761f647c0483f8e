-- GMV, orders, touchpoints and distinct members per minute by channel, last 24 hours,
-- from the per-minute aggregates (touchpoint_minute and its members, docs/clickhouse.md).
SELECT minute, channel, orders, gmv, events, members
FROM
(
    SELECT minute, channel, sum(orders) AS orders, sum(gmv) AS gmv, sum(events) AS events
    FROM touchpoint_minute FINAL
    WHERE minute >= now() - INTERVAL 24 HOUR
    GROUP BY minute, channel
) AS a
LEFT JOIN
(
    SELECT minute, channel, uniqExactMerge(members) AS members
    FROM touchpoint_minute_members
    WHERE minute >= now() - INTERVAL 24 HOUR
    GROUP BY minute, channel
) AS m USING (minute, channel)
ORDER BY minute, channel
