-- Low-stock alerts: SKU-locations whose stock available to promise (on hand less
-- reserved) is 5 or fewer, from each key's newest stock movement (highest version).
SELECT sku, location, on_hand, reserved, on_hand - reserved AS available, last_change
FROM
(
    SELECT sku, location,
           argMax(on_hand, version) AS on_hand,
           argMax(reserved, version) AS reserved,
           max(processed_time) AS last_change
    FROM stock_movements
    GROUP BY sku, location
)
WHERE available <= 5
ORDER BY available, sku, location
LIMIT 50
