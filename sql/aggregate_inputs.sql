-- aggregate_inputs: what the aggregates and their states accept and refuse, at the edges fault,
-- fuzz and hostile-role testing found in the C code: the ends of the timestamp range, support
-- functions called directly, extreme weights, state texts, profile documents, event types the model
-- does not know.  Runs last: it adds a label to engagement.event_type.

------------------------------------------------------------------------------------------------
-- An event's age never overflows.  The ends of the timestamp range (4713 BC, 294276 AD) lie
--    more than 2^63 microseconds apart: an open in 1900 scored in 294276 is ~292,376 years old,
--    far outside every window (it gave composite NaN and recency Infinity).
------------------------------------------------------------------------------------------------
SELECT s.composite, s.recency, s.frequency, s.monetary, s.time_decay, s.diversity, s.segment,
       s.churn_risk BETWEEN 0 AND 1 AS churn_risk_in_0_1, s.expected_engagements_30d >= 0 AS expected_not_negative
  FROM (SELECT (engagement.score_events('opened', '1900-01-01+00', NULL, '294276-12-31 23:59:59+00')).*) s;
SELECT engagement.explain_events('opened', '1900-01-01+00', NULL, '294276-12-31 23:59:59+00', 'default');
-- time_decay never exceeds the event's weight, and is 2^(-age / half-life) with the age in days
-- (the same with the extreme ends of the range).
WITH v(o, a, h) AS (
    VALUES (timestamptz '1900-01-01+00', timestamptz '294276-12-31 23:59:59+00', 1e12::float8),
           ('4713-11-24 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00', 1e15),
           ('4713-11-24 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00', 1e9)),
t AS (SELECT o, a, h, engagement.time_decay(1, o, a, h) AS d FROM v GROUP BY o, a, h)
SELECT h AS half_life_days, d < 1 AS below_the_weight,
       abs(d / 2 ^ (-((extract(epoch FROM a) - extract(epoch FROM o)) / 86400)::float8 / h) - 1) < 1e-12 AS exact
  FROM t ORDER BY o, h;
-- The age of an ordinary event is still the exact difference: the same value as ever.
SELECT engagement.time_decay(4, '2026-05-04 12:00:00+00', '2026-06-01 12:00:00+00', 14) AS one_half_life_twice;

------------------------------------------------------------------------------------------------
-- No internal error (XX000) a user can reach.
------------------------------------------------------------------------------------------------
-- The aggregates' support functions that SQL can call (the others take internal) refuse to run
-- outside an aggregate with 0A000, naming the aggregate to use.
SELECT f AS called_directly, ref.sqlstate_of('SELECT ' || f) AS result
  FROM (VALUES ('engagement._fit_mbgnbd_finalfn(NULL::engagement.btyd_fit_state)'),
               ($$engagement._fit_bgnbd_finalfn('[(1,1,2,1)]')$$),
               ('engagement._fit_transfn(NULL, 1, 1, 2)'),
               ('engagement._fit_transfn(NULL, 1, 1, 2, 0.5)'),
               ($$engagement._fit_combinefn('[(1,1,2,1)]', '[(1,1,2,1)]')$$),
               ('engagement._time_decay_transfn(NULL, 1, now(), now(), 14)'),
               ($$engagement._time_decay_combinefn('(1,0,0,14,1)', '(1,0,0,14,1)')$$)) v(f);
-- Inside an aggregate of the caller's own they still run (a Citus-style combine of partial states).
CREATE AGGREGATE pg_temp.fit_states(engagement.btyd_fit_state) (
    SFUNC = engagement._fit_combinefn, STYPE = engagement.btyd_fit_state);
SELECT pg_temp.fit_states(s::engagement.btyd_fit_state)::text AS combined
  FROM (VALUES ('[(1,1,2,1)]'), ('[(1,1,2,2),(0,0,3,1)]')) v(s);

-- Fits with extreme valid weights: only the weights' ratios matter, so a customer of weight
-- 5e-324 fits exactly like one of weight 1 (it gave XX000 "not finite at the starting points").
SELECT t.r = o.r AND t.alpha = o.alpha AND t.a = o.a AND t.b = o.b AND t.iterations = o.iterations
         AND t.converged = o.converged AS same_fit_as_weight_1,
       t.n AS tiny_n, t.log_likelihood = o.log_likelihood * 5e-324 AS log_likelihood_scaled
  FROM (SELECT (engagement.fit_mbgnbd(1, 1, 2, 5e-324)).*) t, (SELECT (engagement.fit_mbgnbd(1, 1, 2, 1)).*) o;
SELECT ref.sqlstate_of($$SELECT engagement.fit_bgnbd(x, t_x, t, 1e-320)
                           FROM (VALUES (1, 1, 2), (3, 5, 9), (0, 0, 4)) v(x, t_x, t)$$) AS subnormal_weights;
-- A total weight beyond the range of a double is 22003, not a fit with n = Infinity, whether
-- the customers differ or are identical ones summed in the state (collapsed from 65 rows on, or
-- in its text).
SELECT ref.sqlstate_of($$SELECT engagement.fit_mbgnbd(x, t_x, t, 1e308)
                           FROM (VALUES (1, 1, 2), (2, 3, 4), (0, 0, 4)) v(x, t_x, t)$$) AS total_weight_overflows,
       ref.sqlstate_of($$SELECT engagement.fit_mbgnbd(1, 1, 2, 1e308) FROM generate_series(1, 100)$$) AS summed_in_the_state,
       ref.sqlstate_of($$SELECT pg_temp.fit_states(s::engagement.btyd_fit_state)::text
                           FROM (VALUES ('[(1,1,2,1e308)]'), ('[(1,1,2,1e308)]')) v(s)$$) AS in_its_text;

-- An event type the model does not know (a label added to the enum): 22023, naming the label
-- and the seven types the model knows.  (The label stays: this test runs last.)
ALTER TYPE engagement.event_type ADD VALUE 'unknown_test_type';
SELECT ref.sqlstate_of($$SELECT engagement.score_events(t::engagement.event_type, '2026-05-01', NULL, '2026-06-01')
                           FROM (VALUES ('opened'), ('unknown_test_type')) v(t)$$) AS score_events,
       ref.sqlstate_of($$SELECT engagement.btyd_summary('unknown_test_type', '2026-05-01', '2026-06-01')$$) AS btyd_summary;
SELECT engagement.score_events('unknown_test_type', '2026-05-01', NULL, '2026-06-01');
-- A label the model needs, renamed: 55000.
BEGIN;
ALTER TYPE engagement.event_type RENAME VALUE 'bounced' TO 'bounce';
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', '2026-05-01', NULL, '2026-06-01')$$) AS label_renamed;
ROLLBACK;
-- The score type, altered: 42804 (not XX000).
BEGIN;
ALTER TYPE engagement.score ADD ATTRIBUTE extra integer;
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', '2026-05-01', NULL, '2026-06-01')$$) AS score_type_altered;
ROLLBACK;

------------------------------------------------------------------------------------------------
-- SQLSTATEs as the README's table says.
------------------------------------------------------------------------------------------------
-- A conversion value beyond the range of a double given to the aggregate: 22023, like an
-- infinite one (was 22003); a tiny one is (close to) 0, like any rounding to a double.
SELECT ref.sqlstate_of($$SELECT engagement.score_events('converted', '2026-05-01', 1e400, '2026-06-01')$$) AS beyond_a_double,
       ref.sqlstate_of($$SELECT engagement.score_events('converted', '2026-05-01', 'Infinity', '2026-06-01')$$) AS infinite,
       (engagement.score_events('converted', '2026-05-01', 1e-400, '2026-06-01')).conversion_total AS tiny;

-- A profile document with a value that is not a number, or not a double: 22023 like every other
-- flaw of a document (not 22P02, 22003).
SELECT k AS lookback_days, ref.sqlstate_of(format(
         $$SELECT engagement.score_events('opened', '2026-05-01', NULL, '2026-06-01', jsonb_set(to_jsonb(p), '{lookback_days}', %L))
             FROM engagement.scoring_profiles p WHERE name = 'default'$$, k)) AS result
  FROM (VALUES ('"abc"'), ('1e400'), ('-1e400'), ('"1e400"'), ('1e-400'), ('true'), ('[365]'), ('{"days": 365}'),
               ('""'), ('" 365 "'), ('null')) v(k);
-- Numbers given as strings are read as float8in reads them; the score is the named profile's.
SELECT d.s = n.s AS same_as_by_name
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00',
                                       jsonb_set(jsonb_set(to_jsonb(p), '{lookback_days}', '"365"'),
                                                 '{half_life_days}', '" 14.0e0 "')) AS s
          FROM ref.crm_events, engagement.scoring_profiles p WHERE contact_id = 7 AND p.name = 'default') d,
       (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00', 'default') AS s
          FROM ref.crm_events WHERE contact_id = 7) n;
-- The name: a string (a number or boolean as its text), 1 to 63 bytes.
SELECT n AS name, ref.sqlstate_of(format(
         $$SELECT (engagement.score_events('opened', '2026-05-01', NULL, '2026-06-01', jsonb_set(to_jsonb(p), '{name}', %L))).profile
             FROM engagement.scoring_profiles p WHERE name = 'default'$$, n)) AS result
  FROM (VALUES ('"x"'), ('42'), ('""'), ('null'), ('{"a": 1}'), (to_jsonb(repeat('n', 64))::text)) v(n);
SELECT (engagement.score_events('opened', '2026-05-01', NULL, '2026-06-01', jsonb_set(to_jsonb(p), '{name}', '42'))).profile
  FROM engagement.scoring_profiles p WHERE name = 'default';

-- A number beyond the range of a double in a state's text: 22P02 like any other flaw of the text
-- (not 22003).
SELECT s AS state_text, ref.sqlstate_of(format('SELECT %L::engagement.decay_state', s)) AS result
  FROM (VALUES ('(1e999,0,0,14,1)'), ('(1,-1e999,0,14,1)'), ('(1,0,0,1e999,1)'), ('(1,0,0,1e-999,1)')) v(s);
SELECT s AS state_text, ref.sqlstate_of(format('SELECT %L::engagement.btyd_fit_state', s)) AS result
  FROM (VALUES ('[(1e999,1,2,1)]'), ('[(1,1,2,1e999)]'), ('[(1,1,1e999,1)]'), ('[(1,1,2,1),(0,0,3,1e-999)]')) v(s);
SELECT '(1e999,0,0,14,1)'::engagement.decay_state;
