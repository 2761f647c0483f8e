-- touchpoint_fact v3: the touch an app order is attributed to (livestream:<room>,
-- red_envelope:<campaign>, guide:<staff id>), for livestream GMV and guide performance.
ALTER TABLE touchpoint_facts ADD COLUMN IF NOT EXISTS attribution LowCardinality(String) DEFAULT ''
