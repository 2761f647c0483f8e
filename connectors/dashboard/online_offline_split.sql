-- GMV online (app, mini-program) against offline (stores), last 24 hours.
SELECT if(channel = 'store', 'offline', 'online') AS side,
       count() AS orders,
       sum(amount) AS gmv
FROM touchpoint_facts FINAL
WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0 AND outcome != 'order_repeated'
  AND event_time >= now() - INTERVAL 24 HOUR
GROUP BY side
ORDER BY side
