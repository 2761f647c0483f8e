-- Average order value per channel.
SELECT channel, count() AS orders, sum(amount) AS gmv, round(avg(amount), 2) AS aov
FROM touchpoint_facts FINAL
WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0 AND outcome != 'order_repeated'
GROUP BY channel
ORDER BY channel
