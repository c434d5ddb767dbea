-- time_decay(weight, occurred_at, as_of, half_life_days)
CREATE TEMP TABLE halvings (w float8, t timestamptz);
INSERT INTO halvings VALUES (1.0, '2026-06-01'), (2, '2026-05-18'), (3, '2026-05-04'),
                            (100, '2026-06-02');   -- the last row is after as_of: ignored
SELECT engagement.time_decay(w, t, '2026-05-01', 14) AS before_all_rows FROM halvings;
-- whole half-lives by hand (a row if the sum differs)
SELECT 'time_decay' AS what, v.got, '~' AS test, 1 + 2 * 0.5 + 3 * 0.25 AS expected
  FROM (SELECT engagement.time_decay(w, t, '2026-06-01', 14) AS got FROM halvings) v
 WHERE ref.fails(v.got, '~', 1 + 2 * 0.5 + 3 * 0.25);
SELECT engagement.time_decay(w, t, '2026-06-01', 14) AS no_rows FROM (VALUES (1.0::float8, now())) v(w, t) WHERE false;
SELECT engagement.time_decay(NULL, now(), now(), 14) AS null_weight_skipped;
-- It equals the time-decay sum inside the score (decay weights of the default profile): the
-- contacts where it does not, with both values.
SELECT contact_id, time_decay_aggregate, in_score
  FROM (SELECT contact_id,
               100 * (1 - exp(-greatest(engagement.time_decay(
                    CASE event_type WHEN 'opened' THEN 1 WHEN 'clicked' THEN 2 WHEN 'responded' THEN 3
                                    WHEN 'converted' THEN 10 WHEN 'opted_out' THEN -10 WHEN 'bounced' THEN -1
                                    ELSE 0 END,
                    occurred_at, '2026-06-01 12:00:00+00', 14) FILTER (WHERE occurred_at >= '2025-06-01 12:00:00+00'), 0) / 5))
                 AS time_decay_aggregate,
               (engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00:00+00')).time_decay
                 AS in_score
          FROM ref.crm_events WHERE contact_id <= 5 GROUP BY contact_id) c
 WHERE NOT ref.close(time_decay_aggregate, in_score)
 ORDER BY contact_id;
-- Parallel and serial agree.
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF) SELECT engagement.time_decay(1, occurred_at, '2026-06-01', 14) FROM ref.crm_events;
CREATE TEMP TABLE td_par AS SELECT engagement.time_decay(1, occurred_at, '2026-06-01', 14) AS v FROM ref.crm_events;
SET max_parallel_workers_per_gather = 0;
-- (a row with both sums if they differ; td_par has its one row)
SELECT td_par.v AS parallel, s.v AS serial
  FROM td_par, (SELECT engagement.time_decay(1, occurred_at, '2026-06-01', 14) AS v FROM ref.crm_events) s
 WHERE NOT ref.close(td_par.v, s.v);
SELECT count(*) AS parallel_results FROM td_par;
RESET ALL;
-- Bad input: 22023.
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1, now(), now(), 0)$$) AS zero_half_life;
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1, now(), now(), -1)$$) AS negative_half_life;
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1, now(), now(), 'NaN')$$) AS nan_half_life;
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1, now(), now(), 'Infinity')$$) AS infinite_half_life;
SELECT ref.sqlstate_of($$SELECT engagement.time_decay('NaN', now(), now(), 14)$$) AS nan_weight;
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1, 'infinity', now(), 14)$$) AS infinite_time;
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1, now(), a, 14) FROM (VALUES (now()), (now() - interval '1 day')) v(a)$$) AS as_of_varies;
