-- Points outstanding (the programme's liability) and how they came about, by rule.
SELECT rule, count() AS entries, sum(points) AS points
FROM points_ledger FINAL
GROUP BY rule WITH TOTALS
ORDER BY rule
