-- touchpoint_fact v2: what the views made of the event (backordered, claim_refused).
ALTER TABLE touchpoint_facts ADD COLUMN IF NOT EXISTS outcome LowCardinality(String) DEFAULT ''
