-- Members created per day, and of them how many came through a public platform
-- (livestream, WeChat) and later bought in an own channel (app, mini-program, store).
-- A member: a OneID with the OneIDs merged into it since (person_facts), counted once,
-- on the day (in OMNI_REPORTING_TIME_ZONE) of its first touchpoint.
WITH firsts AS (
    SELECT person, toDate(min(event_time), {reporting_time_zone:String}) AS day,
           argMin(channel, event_time) AS first_channel,
           countIf(touchpoint_type IN ('app_order', 'store_scan') AND amount > 0 AND outcome != 'order_repeated') AS purchases
    FROM person_facts
    WHERE person != ''
    GROUP BY person
    HAVING max(new_member) = 1
)
SELECT day,
       count() AS new_members,
       countIf(first_channel IN ('livestream', 'wechat')) AS from_public,
       countIf(first_channel IN ('livestream', 'wechat') AND purchases > 0) AS public_to_own
FROM firsts
GROUP BY day
ORDER BY day
