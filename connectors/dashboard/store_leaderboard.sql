-- Stores by GMV at the till and from pick-up orders, last 24 hours.
SELECT store_id,
       count() AS orders,
       sum(amount) AS gmv,
       uniqExact(person) AS members
FROM person_facts
WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0 AND outcome != 'order_repeated' AND store_id != ''
  AND event_time >= now() - INTERVAL 24 HOUR
GROUP BY store_id
ORDER BY gmv DESC, store_id
LIMIT 20
