-- Facts keep the OneID they were processed under; a later merge does not rewrite them.
-- one_id_survivors: every absorbed OneID and the OneID that holds it now, following
-- merges of merges (A into B, then B into C: A and B -> C; docs/identity.md).
-- person_facts: touchpoint_facts FINAL with `person`, the OneID that holds each fact's
-- OneID now (its own when never absorbed). Panels that count people read it.
CREATE VIEW IF NOT EXISTS one_id_survivors AS
WITH RECURSIVE merges AS (
    SELECT other_one_id AS absorbed, any(one_id) AS survivor
    FROM identity_events FINAL
    WHERE action = 'merge'
    GROUP BY absorbed
), chain AS (
    SELECT absorbed, survivor, 1 AS depth FROM merges
    UNION ALL
    SELECT chain.absorbed, merges.survivor, chain.depth + 1
    FROM chain JOIN merges ON merges.absorbed = chain.survivor
    WHERE chain.depth < 64
)
SELECT absorbed AS one_id, argMax(survivor, depth) AS survivor
FROM chain
GROUP BY absorbed;

CREATE VIEW IF NOT EXISTS person_facts AS
SELECT f.*, if(s.survivor = '', f.one_id, s.survivor) AS person
FROM touchpoint_facts AS f FINAL
LEFT JOIN one_id_survivors AS s ON s.one_id = f.one_id
