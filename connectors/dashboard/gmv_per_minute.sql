-- GMV and orders per minute by channel (store checkouts and app orders), last 24 hours.
SELECT toStartOfMinute(event_time) AS minute,
       channel,
       count() AS orders,
       sum(amount) AS gmv
FROM touchpoint_facts FINAL
WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0
  AND event_time >= now() - INTERVAL 24 HOUR
GROUP BY minute, channel
ORDER BY minute, channel
