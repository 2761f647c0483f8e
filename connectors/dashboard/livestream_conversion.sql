-- Livestream click -> order, per room: viewers who clicked, orders attributed to the room
-- (OMNI_ATTRIBUTION_WINDOW_S), their GMV, and the share of viewers who bought (people:
-- OneIDs with those merged into them since, person_facts).
WITH clicks AS (
    SELECT room_id, uniqExact(person) AS viewers, count() AS clicks
    FROM person_facts
    WHERE touchpoint_type = 'livestream_click'
    GROUP BY room_id
), orders AS (
    SELECT substring(attribution, 12) AS room_id,
           count() AS orders, uniqExact(person) AS buyers, sum(amount) AS gmv
    FROM person_facts
    WHERE touchpoint_type = 'app_order' AND startsWith(attribution, 'livestream:')
    GROUP BY room_id
)
SELECT clicks.room_id AS room_id, clicks, viewers, orders, buyers, gmv,
       round(buyers / viewers, 4) AS conversion
FROM clicks LEFT JOIN orders USING (room_id)
ORDER BY room_id
