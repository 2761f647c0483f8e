-- Share of buying members who bought more than once.
SELECT count() AS buyers,
       countIf(purchases >= 2) AS repeat_buyers,
       round(repeat_buyers / buyers, 4) AS repurchase_rate
FROM (
    SELECT one_id, count() AS purchases
    FROM touchpoint_facts FINAL
    WHERE touchpoint_type IN ('store_scan', 'app_order') AND amount > 0 AND outcome != 'order_repeated' AND one_id != ''
    GROUP BY one_id
)
