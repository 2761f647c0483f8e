-- OneIDs created per day, and of them how many came through a public platform
-- (livestream, WeChat) and later bought in an own channel (app, mini-program, store).
WITH firsts AS (
    SELECT one_id, toDate(min(event_time)) AS day,
           argMin(channel, event_time) AS first_channel,
           countIf(touchpoint_type IN ('app_order', 'store_scan') AND amount > 0 AND outcome != 'order_repeated') AS purchases
    FROM touchpoint_facts FINAL
    WHERE one_id != ''
    GROUP BY one_id
    HAVING max(new_member) = 1
)
SELECT day,
       count() AS new_members,
       countIf(first_channel IN ('livestream', 'wechat')) AS from_public,
       countIf(first_channel IN ('livestream', 'wechat') AND purchases > 0) AS public_to_own
FROM firsts
GROUP BY day
ORDER BY day
