-- Share of buying members who bought more than once (a member: a OneID with the OneIDs
-- merged into it since, person_facts). An app order cancelled since, or refunded in full
-- (its refunds add up to what was paid), is not a purchase here.
WITH undone AS (
    SELECT s.order_id
    FROM (
        SELECT order_id,
               countIf(order_status = 'cancelled') AS cancellations,
               sumIf(amount, order_status = 'refunded') AS refunded
        FROM touchpoint_facts FINAL
        WHERE touchpoint_type = 'order_status' AND order_id != ''
        GROUP BY order_id
    ) AS s
    JOIN (
        SELECT order_id, max(amount) AS paid
        FROM touchpoint_facts FINAL
        WHERE touchpoint_type = 'app_order' AND outcome != 'order_repeated' AND order_id != ''
        GROUP BY order_id
    ) AS o ON o.order_id = s.order_id
    WHERE s.cancellations > 0 OR s.refunded >= o.paid
)
SELECT count() AS buyers,
       countIf(purchases >= 2) AS repeat_buyers,
       round(repeat_buyers / buyers, 4) AS repurchase_rate
FROM (
    SELECT person, count() AS purchases
    FROM person_facts
    WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0 AND outcome != 'order_repeated' AND person != ''
      AND order_id NOT IN (SELECT order_id FROM undone)
    GROUP BY person
)
