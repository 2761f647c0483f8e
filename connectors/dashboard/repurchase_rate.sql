-- Share of buying members who bought more than once (a member: a OneID with the OneIDs
-- merged into it since, person_facts).
SELECT count() AS buyers,
       countIf(purchases >= 2) AS repeat_buyers,
       round(repeat_buyers / buyers, 4) AS repurchase_rate
FROM (
    SELECT person, count() AS purchases
    FROM person_facts
    WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0 AND outcome != 'order_repeated' AND person != ''
    GROUP BY person
)
