-- Red-envelope claim -> purchase, per campaign: claims awarded and refused (budget),
-- orders attributed to the campaign, their GMV, and the share of claimers who bought
-- (people: OneIDs with those merged into them since, person_facts).
WITH claims AS (
    SELECT campaign_id,
           countIf(outcome != 'claim_refused') AS claims,
           countIf(outcome = 'claim_refused') AS refused,
           uniqExactIf(person, outcome != 'claim_refused') AS claimers
    FROM person_facts
    WHERE touchpoint_type = 'red_envelope_claim'
    GROUP BY campaign_id
), orders AS (
    SELECT substring(attribution, 14) AS campaign_id,
           count() AS orders, uniqExact(person) AS buyers, sum(amount) AS gmv
    FROM person_facts
    WHERE touchpoint_type = 'app_order' AND startsWith(attribution, 'red_envelope:')
    GROUP BY campaign_id
)
SELECT claims.campaign_id AS campaign_id, claims, refused, orders, buyers, gmv,
       round(buyers / claimers, 4) AS conversion
FROM claims LEFT JOIN orders USING (campaign_id)
ORDER BY campaign_id
