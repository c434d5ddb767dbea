-- predictions: the Gamma-Gamma value model (fit_gammagamma against the published CDNOW fit,
-- expected_conversion_value), fit_model's records and its failure policy, and holdout validation
-- (validate_model on the CDNOW purchases, every figure against plain SQL).
-- Runs in transactions that are rolled back: the events of the earlier tests stay as they were.

------------------------------------------------------------------------------------------------
-- 1. Gamma-Gamma on the 946 CDNOW customers with x > 0 (x, zbar of
--    cdnow_customers_summary_with_transactions.csv): p = 6.2488, q = 3.7446, v = 15.4478,
--    LL = -4055.92 (test/data/cdnow/README.md; lifetimes' tests: 6.25, 3.74, 15.44).
------------------------------------------------------------------------------------------------
CREATE TEMP TABLE cdnow_gg (id integer, x integer, t_x float8, t float8, zbar float8);
\copy cdnow_gg FROM 'test/data/cdnow/cdnow_customers_summary_with_transactions.csv' WITH (FORMAT csv, HEADER)
SELECT count(*) AS customers, count(*) FILTER (WHERE x > 0) AS with_repeat_purchases FROM cdnow_gg;
-- (rows with x = 0 carry no spend: the aggregate skips them)
CREATE TEMP TABLE gg_fit AS SELECT engagement.fit_gammagamma(x, zbar) AS f FROM cdnow_gg;
SELECT (f).converged, (f).n, (f).iterations > 0 AS iterated, (f).message FROM gg_fit;
-- An independent log-likelihood (docs/model.md "Fitting", lgamma as a sum of logs: p x and q
-- are not integers, so through ln Gamma(z) = ln Gamma(z + 30) - sum ln(z + k), Stirling at z + 30).
CREATE FUNCTION pg_temp.lgamma(z float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT (w - 0.5) * ln(w) - w + 0.5 * ln(2 * pi()) + 1 / (12 * w) - 1 / (360 * w ^ 3) + 1 / (1260 * w ^ 5)
           - 1 / (1680 * w ^ 7) - (SELECT sum(ln(z + k)) FROM generate_series(0, 29) k)
      FROM (SELECT z + 30 AS w) s
$$;
CREATE FUNCTION pg_temp.gg_ll(p float8, q float8, v float8) RETURNS float8 LANGUAGE sql STABLE AS $$
    SELECT sum(pg_temp.lgamma(p * x + q) - pg_temp.lgamma(p * x) - pg_temp.lgamma(q) + q * ln(v)
               + (p * x - 1) * ln(zbar) + p * x * ln(x) - (p * x + q) * ln(x * zbar + v))
      FROM cdnow_gg WHERE x > 0
$$;
-- (what misses: the published estimates to 1e-3 relative and LL to 0.01, the LL against the SQL
-- one at the estimate, the standard errors positive and below the estimates)
SELECT v.what, v.got, v.test, v.expected
  FROM gg_fit, LATERAL (VALUES
       ('p', (f).p, 'within 0.1%', 6.2488), ('q', (f).q, 'within 0.1%', 3.7446), ('v', (f).v, 'within 0.1%', 15.4478),
       ('log_likelihood: published', (f).log_likelihood, 'within 0.01', -4055.92),
       ('log_likelihood: SQL', (f).log_likelihood, 'within 1e-8', pg_temp.gg_ll((f).p, (f).q, (f).v)),
       ('se_p > 0', (f).se_p, '>', 0), ('se_p < p', (f).se_p, '<', (f).p),
       ('se_q > 0', (f).se_q, '>', 0), ('se_q < q', (f).se_q, '<', (f).q),
       ('se_v > 0', (f).se_v, '>', 0), ('se_v < v', (f).se_v, '<', (f).v)
       ) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
-- The estimate is a maximum: moving any parameter by 1% either way lowers the SQL log-likelihood.
SELECT i AS parameter, s AS factor
  FROM gg_fit, generate_series(1, 3) i, (VALUES (0.99::float8), (1.01)) v(s)
 WHERE (pg_temp.gg_ll((f).p * CASE WHEN i = 1 THEN s ELSE 1 END, (f).q * CASE WHEN i = 2 THEN s ELSE 1 END,
                      (f).v * CASE WHEN i = 3 THEN s ELSE 1 END) < pg_temp.gg_ll((f).p, (f).q, (f).v)) IS NOT TRUE;
-- The same fit, bit for bit, from collapsed weighted rows, in parallel, and through the state's
-- text form (as Citus would split it).  (the ways that differ)
CREATE TABLE ref.cdnow_gg AS SELECT * FROM cdnow_gg;
ANALYZE ref.cdnow_gg;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT engagement.fit_gammagamma(x, zbar) FROM ref.cdnow_gg;
CREATE TEMP TABLE gg_parallel AS SELECT engagement.fit_gammagamma(x, zbar) AS f FROM ref.cdnow_gg;
RESET ALL;
CREATE AGGREGATE pg_temp.gg_state(integer, float8) (
    SFUNC = engagement._gammagamma_transfn, STYPE = engagement.gammagamma_fit_state);
CREATE AGGREGATE pg_temp.gg_from_states(engagement.gammagamma_fit_state) (
    SFUNC = engagement._gammagamma_combinefn, STYPE = engagement.gammagamma_fit_state,
    FINALFUNC = engagement._gammagamma_finalfn);
SELECT v.way, (v.f)::text
  FROM gg_fit g, LATERAL (VALUES
       ('weighted', (SELECT engagement.fit_gammagamma(x, zbar, n) FROM (SELECT x, zbar, count(*)::float8 AS n
                                                                         FROM cdnow_gg GROUP BY 1, 2) w)),
       ('parallel', (SELECT f FROM gg_parallel)),
       ('text states', (SELECT pg_temp.gg_from_states(s::text::engagement.gammagamma_fit_state)
                          FROM (SELECT pg_temp.gg_state(x, zbar) AS s FROM cdnow_gg GROUP BY id % 7) p))
       ) v(way, f)
 WHERE v.f IS DISTINCT FROM g.f;
DROP TABLE ref.cdnow_gg;
-- The state's text form: {penalizer} first when there is one, collapsed rows (x, m, weight).
SELECT pg_temp.gg_state(x, m)::text AS state FROM (VALUES (1, 10::float8), (2, 5), (1, 10), (0, 0)) v(x, m);
SELECT engagement.fit_gammagamma(x, m, 1, 0.5) IS NOT NULL AS penalized,
       '{0.5}[(1,10,2),(2,5,1)]'::engagement.gammagamma_fit_state::text AS state_text
  FROM (VALUES (1, 10::float8), (2, 5), (1, 10)) v(x, m);
-- expected_conversion_value: p (v + x m) / (p x + q - 1), and the population mean at x = 0.
SELECT v.what, v.got, '~' AS test, v.expected
  FROM (VALUES ('x = 2, m = 30', engagement.expected_conversion_value(2, 30, 6.25, 3.74, 15.44), 6.25 * (15.44 + 60) / (12.5 + 2.74)),
               ('x = 0', engagement.expected_conversion_value(0, 0, 6.25, 3.74, 15.44), 6.25 * 15.44 / 2.74)) v(what, got, expected)
 WHERE ref.fails(v.got, '~', v.expected);
SELECT what, split_part(ref.sqlstate_of(stmt), ':', 1) AS sqlstate
  FROM (VALUES
    ('q <= 1', $$SELECT engagement.expected_conversion_value(2, 30, 6.25, 1, 15.44)$$),
    ('x < 0', $$SELECT engagement.expected_conversion_value(-1, 30, 6.25, 3.74, 15.44)$$),
    ('m NaN', $$SELECT engagement.expected_conversion_value(2, 'NaN', 6.25, 3.74, 15.44)$$),
    ('fit: m = 0 with x > 0', $$SELECT engagement.fit_gammagamma(2, 0)$$),
    ('fit: weight 0', $$SELECT engagement.fit_gammagamma(2, 10, 0)$$),
    ('fit: penalizer -1', $$SELECT engagement.fit_gammagamma(2, 10, 1, -1)$$),
    ('state text: bad row', $$SELECT '[(0,10,1)]'::engagement.gammagamma_fit_state$$)
  ) v(what, stmt);

------------------------------------------------------------------------------------------------
-- 2. Holdout validation on the CDNOW purchases: calibration to 1997-09-30, holdout to 1998-06-30
--    (273 days), MBG/NBD fitted to the calibration summaries.  Each figure against plain SQL.
------------------------------------------------------------------------------------------------
\i sql/include/cdnow.psql
INSERT INTO engagement.scoring_profiles (name) VALUES ('cdnow');
BEGIN;
DELETE FROM engagement.engagement_events;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT customer, 'converted', day::timestamp AT TIME ZONE 'UTC', sales FROM cdnow_tx;
CREATE TEMP TABLE validation AS
SELECT * FROM engagement.validate_model('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow');
SELECT x_bucket, contacts, round(predicted::numeric, 3) AS predicted, round(actual::numeric, 3) AS actual FROM validation;
CREATE TEMP TABLE validation_summary AS
SELECT * FROM engagement.validate_model_summary('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow');
SELECT contacts, round(predicted_total::numeric, 1) AS predicted_total, actual_total,
       round(mean_absolute_error::numeric, 3) AS mean_absolute_error, round(correlation::numeric, 3) AS correlation,
       horizon_days, (parameters).converged
  FROM validation_summary;
-- Plain SQL: the calibration summaries in days, the fit on them, and per customer the MBG/NBD
-- conditional expectation over 273 days (lifetimes' closed form, 2F1 by its series) and the
-- purchase days of the holdout.
CREATE TEMP TABLE plain_cal AS
SELECT customer, count(*) FILTER (WHERE day > b0)::integer AS x,
       coalesce(max(day) FILTER (WHERE day > b0) - min(b0), 0)::float8 AS t_x,
       (date '1997-09-30' - min(b0))::float8 AS t
  FROM (SELECT DISTINCT customer, day, min(day) OVER (PARTITION BY customer) AS b0
          FROM cdnow_tx WHERE day <= date '1997-09-30') d
 GROUP BY customer;
CREATE TEMP TABLE plain_fit AS
SELECT engagement.fit_mbgnbd(x, t_x, t) AS f FROM plain_cal;
-- (the fit validate_model used, if it is not the one of these summaries)
SELECT (s.parameters).r, (p.f).r FROM validation_summary s, plain_fit p
 WHERE ((s.parameters).r, (s.parameters).alpha, (s.parameters).a, (s.parameters).b)
       IS DISTINCT FROM ((p.f).r, (p.f).alpha, (p.f).a, (p.f).b);
CREATE TEMP TABLE plain_pred AS
WITH RECURSIVE prm AS (SELECT (f).r, (f).alpha, (f).a, (f).b, 273.0::float8 AS h FROM plain_fit),
u AS (SELECT DISTINCT x, t_x, t FROM plain_cal),
-- 2F1(r + x, b + x + 1; a + b + x; z), z = h / (alpha + t + h): terms until they vanish
series(x, t_x, t, k, term, total) AS (
    SELECT u.x, u.t_x, u.t, 0, 1::float8, 1::float8 FROM u
    UNION ALL
    SELECT s.x, s.t_x, s.t, s.k + 1,
           s.term * (prm.r + s.x + s.k) * (prm.b + s.x + 1 + s.k) / ((prm.a + prm.b + s.x + s.k) * (s.k + 1))
                  * prm.h / (prm.alpha + s.t + prm.h),
           s.total + s.term * (prm.r + s.x + s.k) * (prm.b + s.x + 1 + s.k) / ((prm.a + prm.b + s.x + s.k) * (s.k + 1))
                     * prm.h / (prm.alpha + s.t + prm.h)
      FROM series s, prm WHERE abs(s.term) > 1e-18 * s.total AND s.k < 5000),
hyp AS (SELECT DISTINCT ON (x, t_x, t) x, t_x, t, total FROM series ORDER BY x, t_x, t, k DESC)
SELECT hyp.x, hyp.t_x, hyp.t,
       (prm.a + prm.b + hyp.x) / (prm.a - 1)
         * (1 - hyp.total * power((prm.alpha + hyp.t) / (prm.alpha + prm.h + hyp.t), prm.r + hyp.x))
         / (1 + (prm.a / (prm.b + hyp.x)) * power((prm.alpha + hyp.t) / (prm.alpha + hyp.t_x), prm.r + hyp.x)) AS predicted
  FROM hyp, prm;
CREATE TEMP TABLE plain_val AS
SELECT c.customer, c.x, p.predicted,
       (SELECT count(DISTINCT h.day) FROM cdnow_tx h
         WHERE h.customer = c.customer AND h.day > date '1997-09-30' AND h.day <= date '1998-06-30')::float8 AS actual
  FROM plain_cal c JOIN plain_pred p USING (x, t_x, t);
-- (the buckets where validate_model and plain SQL differ: contacts exactly, means within 1e-9)
SELECT coalesce(v.x_bucket, q.x_bucket) AS x_bucket, v.contacts, q.contacts AS plain_contacts,
       v.predicted, q.predicted AS plain_predicted, v.actual, q.actual AS plain_actual
  FROM validation v
  FULL JOIN (SELECT CASE WHEN x >= 7 THEN '7+' ELSE x::text END AS x_bucket, count(*) AS contacts,
                    avg(predicted) AS predicted, avg(actual) AS actual
               FROM plain_val GROUP BY 1) q USING (x_bucket)
 WHERE v.contacts IS DISTINCT FROM q.contacts OR NOT ref.close(v.predicted, q.predicted) OR NOT ref.close(v.actual, q.actual);
-- (the summary's figures that differ from plain SQL's)
SELECT v.what, v.got, v.test, v.expected
  FROM validation_summary s,
       (SELECT count(*) AS n, sum(predicted) AS pt, sum(actual) AS at, avg(abs(predicted - actual)) AS mae,
               corr(predicted, actual) AS r FROM plain_val) q,
       LATERAL (VALUES ('contacts', s.contacts::float8, '=', q.n::float8), ('predicted_total', s.predicted_total, '~', q.pt),
                       ('actual_total', s.actual_total, '=', q.at), ('mean_absolute_error', s.mean_absolute_error, '~', q.mae),
                       ('correlation', s.correlation, '~', q.r), ('horizon_days', s.horizon_days::float8, '=', 273)) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
-- With the profile's parameters instead of a fit (fit => false): the defaults predict other
-- figures from the same summaries and the same actual ones.
SELECT count(*) AS buckets, bool_and(d.actual = v.actual) AS same_actual, bool_or(d.predicted <> v.predicted) AS other_predicted
  FROM engagement.validate_model('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow', false) d
  JOIN validation v USING (x_bucket);
SELECT what, split_part(ref.sqlstate_of(stmt), ':', 1) AS sqlstate
  FROM (VALUES
    ('holdout on the calibration day', $$SELECT * FROM engagement.validate_model('1997-09-30 00:00+00', '1997-09-30 23:00+00', 'cdnow')$$),
    ('holdout before calibration', $$SELECT * FROM engagement.validate_model('1997-09-30 00:00+00', '1997-01-01 00:00+00', 'cdnow')$$),
    ('calibration infinity', $$SELECT * FROM engagement.validate_model('infinity', '1998-06-30 00:00+00', 'cdnow')$$),
    ('no events before calibration', $$SELECT * FROM engagement.validate_model('1990-01-01 00:00+00', '1998-06-30 00:00+00', 'cdnow')$$),
    ('unknown profile', $$SELECT * FROM engagement.validate_model('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'nope')$$)
  ) v(what, stmt);
ROLLBACK;

------------------------------------------------------------------------------------------------
-- 3. fit_model when a fit does not converge: ref.crm_events' contacts never drop out (a runs off
--    to 0 unpenalised): the penalty ladder's first rung converges, by hand too, with a WARNING
--    (sql/fit_ladder.sql has the ladder in full).  With fit_penalizer both converge without it.
--    When every contact engaged on its first day only, no penalty makes the MBG/NBD converge: by
--    hand (on_failure 'error') an error that says why, once; scheduled ('warning') a WARNING, the
--    failure recorded, the Gamma-Gamma fit stored and the MBG/NBD parameters kept.
------------------------------------------------------------------------------------------------
-- (conversion values of a mean that differs between contacts, with noise around it: a spend
-- the Gamma-Gamma model describes)
CREATE TEMP VIEW valued_crm_events AS
SELECT contact_id, event_type, occurred_at,
       CASE WHEN event_type = 'converted'
            THEN round(((10 + 90 * ref.u01(contact_id, 11)) * (0.5 + ref.u01(extract(epoch FROM occurred_at)::bigint, 12)))::numeric, 2)
       END AS conversion_value
  FROM ref.crm_events;
BEGIN;
DELETE FROM engagement.engagement_events;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT * FROM valued_crm_events;
CREATE TEMP TABLE before_fit AS SELECT * FROM engagement.scoring_profiles WHERE name = 'cdnow';
CREATE TEMP TABLE by_hand AS SELECT * FROM engagement.fit_model('cdnow', '2026-06-01 12:00+00');
SELECT model, converged, stored, contacts, penalizer,
       message LIKE 'the unpenalised fit did not converge: parameter a ran off towards 0 %; it converged with the ladder''s penalty 0.001' AS says_why,
       parameters IS NOT NULL AS has_parameters, standard_errors IS NOT NULL AS has_standard_errors
  FROM by_hand ORDER BY model DESC;
SELECT p.model_fitted_at = now() AS mbgnbd_stored, p.model_r = (f.parameters ->> 'r')::float8 AS r_stored,
       p.fit_penalizer AS profile_fit_penalizer, (SELECT count(*) FROM engagement.model_fits WHERE profile = 'cdnow') AS recorded
  FROM engagement.scoring_profiles p, by_hand f WHERE p.name = 'cdnow' AND f.model = 'mbgnbd';
UPDATE engagement.scoring_profiles SET fit_penalizer = 0.01 WHERE name = 'cdnow';
SELECT model, converged, stored, penalizer, message FROM engagement.fit_model('cdnow', '2026-06-01 12:00+00') ORDER BY model DESC;
SELECT p.model_fitted_at = now() AS mbgnbd_stored, p.model_r <> b.model_r AS r_replaced,
       (SELECT count(*) FROM engagement.model_fits WHERE profile = 'cdnow') AS recorded
  FROM engagement.scoring_profiles p, before_fit b WHERE p.name = 'cdnow';
-- A CRM without conversion values: no Gamma-Gamma fit, which is no failure (the defaults stay).
UPDATE engagement.engagement_events SET conversion_value = NULL;
SELECT model, converged, stored, contacts, message FROM engagement.fit_model('cdnow', '2026-06-01 12:00+00') ORDER BY model DESC;
ROLLBACK;
-- Each contact's events of its first day only: every x = 0.
BEGIN;
DELETE FROM engagement.engagement_events;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT contact_id, event_type, occurred_at, conversion_value
  FROM (SELECT e.*, min(occurred_at) OVER (PARTITION BY contact_id) AS first_at FROM valued_crm_events e) e
 WHERE occurred_at < date_trunc('day', first_at, 'UTC') + interval '1 day';
CREATE TEMP TABLE before_fit AS SELECT * FROM engagement.scoring_profiles WHERE name = 'cdnow';
SELECT ref.sqlstate_of($$SELECT engagement.fit_model('cdnow', '2026-06-01 12:00+00')$$) AS by_hand;
SELECT count(*) AS recorded FROM engagement.model_fits WHERE profile = 'cdnow';
CREATE TEMP TABLE scheduled AS SELECT * FROM engagement.fit_model('cdnow', '2026-06-01 12:00+00', on_failure => 'warning');
SELECT model, converged, stored, contacts, penalizer,
       message LIKE '%(all x = 0)%; nor with the ladder''s penalties 0.001, 0.01, 0.1, 1; the profile keeps its parameters' AS says_why,
       parameters IS NOT NULL AS has_parameters, standard_errors IS NOT NULL AS has_standard_errors
  FROM scheduled ORDER BY model DESC;
-- (what is not so: MBG/NBD kept, Gamma-Gamma stored, the version bumped, both fits recorded)
SELECT v.what, v.got, v.expected
  FROM engagement.scoring_profiles p, before_fit b, LATERAL (VALUES
       ('model_r kept', p.model_r::text, b.model_r::text, p.model_r = b.model_r),
       ('model_fitted_at kept', p.model_fitted_at::text, NULL, p.model_fitted_at IS NULL),
       ('gg_p stored', p.gg_p::text, (SELECT parameters ->> 'p' FROM scheduled WHERE model = 'gammagamma'),
        p.gg_p = (SELECT (parameters ->> 'p')::float8 FROM scheduled WHERE model = 'gammagamma')),
       ('version bumped', p.version::text, (b.version + 1)::text, p.version = b.version + 1),
       ('recorded', (SELECT count(*) FROM engagement.model_fits WHERE profile = 'cdnow')::text, '2',
        (SELECT count(*) FROM engagement.model_fits WHERE profile = 'cdnow') = 2)) v(what, got, expected, same)
 WHERE p.name = 'cdnow' AND v.same IS NOT TRUE;
ROLLBACK;
DELETE FROM engagement.scoring_profiles WHERE name = 'cdnow';

