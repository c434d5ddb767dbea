-- parallel: score_events splits into partial aggregates under Gather and gives the serial results,
-- the distinct engagement days merged exactly.  ref.crm_events is a regular table in scattered order.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET enable_sort = off;   -- pin the plan shape: hashed partial aggregation

EXPLAIN (COSTS OFF)
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00')
  FROM ref.crm_events GROUP BY contact_id;
CREATE TEMP TABLE par AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00') AS s
  FROM ref.crm_events GROUP BY contact_id;

-- One group spread over every worker: each partial state holds part of the group's days.
EXPLAIN (COSTS OFF)
SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00', 'default')
  FROM ref.crm_events WHERE contact_id <= 200;
CREATE TEMP TABLE par_all AS
SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00', 'default') AS s
  FROM ref.crm_events WHERE contact_id <= 200;

RESET ALL;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF)
SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00', 'default')
  FROM ref.crm_events WHERE contact_id <= 200;
CREATE TEMP TABLE ser AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00') AS s
  FROM ref.crm_events GROUP BY contact_id;
CREATE TEMP TABLE ser_all AS
SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00', 'default') AS s
  FROM ref.crm_events WHERE contact_id <= 200;
RESET max_parallel_workers_per_gather;

SELECT count(*) AS contacts FROM ser FULL JOIN par USING (contact_id);
-- Parallel against serial, contact by contact: every field that differs (floats beyond ref.close,
-- the others, facts included, exactly); a contact on one side only differs in every field.
SELECT contact_id, d.field, d.got AS parallel, d.expected AS serial
  FROM ser FULL JOIN par USING (contact_id), LATERAL ref.score_mismatches(par.s, ser.s) d
 ORDER BY contact_id, d.field;
-- All rows as one group: x (the distinct days) drives the predictions, so they agree only if the
-- partial day sets merged exactly.
SELECT (ser_all.s).event_count, (ser_all.s).engaging_count FROM ser_all, par_all;
-- churn, conversion and composite: parallel against serial; the serial churn against the reference
SELECT v.field, v.got, v.test, v.expected
  FROM ser_all, par_all, LATERAL (VALUES
       ('churn_risk: parallel vs serial', (par_all.s).churn_risk, '~', (ser_all.s).churn_risk),
       ('conversion_probability: parallel vs serial', (par_all.s).conversion_probability, '~',
        (ser_all.s).conversion_probability),
       ('composite: parallel vs serial', (par_all.s).composite, '~', (ser_all.s).composite),
       ('churn_risk: serial vs reference', (ser_all.s).churn_risk, '~',
        (SELECT (r.s).churn_risk FROM ref.scores('(SELECT 1::bigint AS contact_id, event_type, occurred_at, conversion_value FROM ref.crm_events WHERE contact_id <= 200)',
                                                  '2026-06-01 12:00:00+00') r))) v(field, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);

-- A group whose rows are all skipped (NULL time, weight or summary) has no state: its workers'
-- partial states must be SQL NULL, not a NULL pointer handed to the serialize function.
CREATE TABLE ref.null_groups AS
SELECT g, CASE WHEN g = 1 THEN timestamptz '2026-05-01' + i * interval '1 minute' END AS ts,
       CASE WHEN g = 1 THEN 1.0::float8 END AS w
  FROM generate_series(1, 2) g, generate_series(1, 20000) i ORDER BY g, i;
ANALYZE ref.null_groups;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT g, engagement.score_events('opened', ts, NULL, '2026-06-01') FROM ref.null_groups GROUP BY g;
SET client_min_messages = warning;   -- the one-point fit of group 1 cannot converge: not the point here
SELECT g, (engagement.score_events('opened', ts, NULL, '2026-06-01')).event_count,
       engagement.time_decay(w, ts, '2026-06-01', 14) IS NULL AS no_decay,
       (engagement.btyd_summary('opened', ts, '2026-06-01')).x,
       (engagement.fit_mbgnbd(1, 0, 1, w)).n
  FROM ref.null_groups GROUP BY g ORDER BY g;
RESET ALL;
DROP TABLE ref.null_groups;

-- Rows in time order, as a CRM writes them: the state keeps its day keys compact as they come (a
-- day's flags ORed into its key in place) instead of compacting them at the end; in reverse order
-- every key is out of order.  Both give the scores of the table's scattered order, every field.
SET max_parallel_workers_per_gather = 0;
SET enable_sort = off;   -- pin the plan: the hashed aggregate keeps the subquery's order
SELECT * FROM ref.plan($$
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00') AS s
  FROM (SELECT * FROM ref.crm_events ORDER BY occurred_at) e GROUP BY contact_id$$) AS "QUERY PLAN";
CREATE TEMP TABLE in_order AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00') AS s
  FROM (SELECT * FROM ref.crm_events ORDER BY occurred_at) e GROUP BY contact_id;
CREATE TEMP TABLE reversed AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00') AS s
  FROM (SELECT * FROM ref.crm_events ORDER BY occurred_at DESC) e GROUP BY contact_id;
-- (contacts with more engagement days, UTC days of engaging events, than a state holds inline: 14)
SELECT count(*) AS contacts,
       count(*) FILTER (WHERE contact_id IN (SELECT e.contact_id FROM ref.crm_events e
                                              WHERE e.event_type IN ('opened', 'clicked', 'responded', 'converted')
                                                AND e.occurred_at <= '2026-06-01 12:00:00+00'
                                              GROUP BY e.contact_id
                                             HAVING count(DISTINCT (e.occurred_at AT TIME ZONE 'UTC')::date) > 14))
         AS more_days_than_inline_keys
  FROM ser JOIN in_order USING (contact_id) JOIN reversed USING (contact_id);
SELECT contact_id, d.field, d.got AS in_time_order, d.expected AS scattered
  FROM ser FULL JOIN in_order USING (contact_id), LATERAL ref.score_mismatches(in_order.s, ser.s) d
UNION ALL
SELECT contact_id, d.field, d.got, d.expected
  FROM ser FULL JOIN reversed USING (contact_id), LATERAL ref.score_mismatches(reversed.s, ser.s) d
 ORDER BY 1, 2;
RESET max_parallel_workers_per_gather;
RESET enable_sort;
