-- touchpoint_fact v4: the status an order-status event reports, so the panels can tell a
-- cancelled or fully refunded order from a purchase (repurchase_rate.sql).
ALTER TABLE touchpoint_facts ADD COLUMN IF NOT EXISTS order_status LowCardinality(String) DEFAULT '';

-- A view's columns are fixed when it is created: person_facts (0009) again, to take the
-- new column in.
DROP VIEW IF EXISTS person_facts;

CREATE VIEW person_facts AS
SELECT f.*, if(s.survivor = '', f.one_id, s.survivor) AS person
FROM touchpoint_facts AS f FINAL
LEFT JOIN one_id_survivors AS s ON s.one_id = f.one_id
