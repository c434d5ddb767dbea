-- validation: the value checked on a holdout (validate_model's and validate_model_summary's value
-- columns) and the lift by decile (validate_lift), on the CDNOW purchases, every figure against
-- plain SQL written from docs/model.md: the calibration summaries from test/reference_model.sql
-- (ref.scores), the MBG/NBD expectation by its series, q, the Gamma-Gamma expected value, the
-- penalties, the holdout's value and the deciles.  Only booleans, counts and rounded figures are
-- printed.  Runs in a transaction that is rolled back: the events of the earlier tests stay.

BEGIN;
\i sql/include/cdnow.psql
INSERT INTO engagement.scoring_profiles (name) VALUES ('cdnow_value');
DELETE FROM engagement.engagement_events;
-- The purchases, and so that every rule of the value's prediction and of the holdout's value is
-- used: opt-outs (every 17th customer, the day after its first purchase, before the calibration
-- end), three bounces (every 23rd customer, on 1997-09-20), clicks in the holdout (every 5th
-- customer: engagement days without value) and purchases of no recorded value in the holdout
-- (every 7th customer: NULL counts 0).
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT customer, 'converted', day::timestamp AT TIME ZONE 'UTC', sales FROM cdnow_tx;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT customer, 'opted_out', (min(day) + 1)::timestamp AT TIME ZONE 'UTC' + interval '9 hours', NULL
  FROM cdnow_tx WHERE customer % 17 = 0 GROUP BY customer HAVING min(day) < date '1997-09-29';
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT customer, 'bounced', timestamptz '1997-09-20 10:00+00' + k * interval '1 hour', NULL
  FROM (SELECT DISTINCT customer FROM cdnow_tx WHERE customer % 23 = 0 AND day < date '1997-09-20') c,
       generate_series(1, 3) k;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT DISTINCT customer, 'clicked'::engagement.event_type, timestamptz '1998-02-02 12:00+00', NULL::numeric FROM cdnow_tx WHERE customer % 5 = 0;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT DISTINCT customer, 'converted'::engagement.event_type, timestamptz '1998-03-03 12:00+00', NULL::numeric FROM cdnow_tx WHERE customer % 7 = 0;
SELECT count(*) AS events, count(DISTINCT contact_id) AS contacts FROM engagement.engagement_events;

------------------------------------------------------------------------------------------------
-- 1. What the extension says: calibration to 1997-09-30, holdout to 1998-06-30 (273 days).
------------------------------------------------------------------------------------------------
CREATE TEMP TABLE v_model AS
SELECT * FROM engagement.validate_model('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value');
CREATE TEMP TABLE v_summary AS
SELECT * FROM engagement.validate_model_summary('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value');
CREATE TEMP TABLE v_lift AS
SELECT r.rank_by, f.fit, l.*
  FROM (VALUES ('expected_value'), ('engagement_probability'), ('composite')) r(rank_by),
       (VALUES (true), (false)) f(fit),
       LATERAL engagement.validate_lift('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value',
                                        r.rank_by, f.fit) l;
SELECT x_bucket, contacts, round(predicted_value::numeric, 2) AS predicted_value,
       round(actual_value::numeric, 2) AS actual_value
  FROM v_model;
SELECT contacts, round(predicted_value_total::numeric, 0) AS predicted_value_total,
       round(actual_value_total::numeric, 2) AS actual_value_total, round(value_correlation::numeric, 3) AS value_correlation,
       (value_parameters).converged AS value_fit_converged
  FROM v_summary;
SELECT decile, contacts, round(predicted::numeric, 0) AS predicted, round(actual::numeric, 2) AS actual,
       round(share::numeric, 3) AS share, round(cumulative_share::numeric, 3) AS cumulative_share,
       round(lift::numeric, 2) AS lift
  FROM v_lift WHERE rank_by = 'expected_value' AND fit ORDER BY decile;
SELECT rank_by, fit, count(*) AS deciles, sum(contacts) AS contacts, round(sum(actual)::numeric, 2) AS actual,
       bool_and(contacts BETWEEN 235 AND 236) AS ntile_sizes, max(cumulative_share) = 1 AS cumulative_ends_at_1
  FROM v_lift GROUP BY 1, 2 ORDER BY 1, 2;

------------------------------------------------------------------------------------------------
-- 2. Plain SQL.  Per contact: the summary and the composite as of the calibration end from the
--    reference model, the holdout's engagement days and value from the events.
------------------------------------------------------------------------------------------------
CREATE TEMP TABLE plain AS
SELECT r.contact_id, (r.s).x, (r.s).t_x::float8 AS t_x, (r.s).t_c::float8 AS t, (r.s).n_days, (r.s).conv_days,
       (r.s).x_v, (r.s).m_v, (r.s).opted_out, (r.s).undeliverable, (r.s).composite,
       (SELECT count(DISTINCT date_trunc('day', e.occurred_at AT TIME ZONE 'UTC'))
          FROM engagement.engagement_events e
         WHERE e.contact_id = r.contact_id AND e.event_type IN ('opened', 'clicked', 'responded', 'converted')
           AND e.occurred_at >= '1997-10-01 00:00+00' AND e.occurred_at < '1998-07-01 00:00+00')::float8 AS actual,
       (SELECT coalesce(sum(coalesce(e.conversion_value, 0)), 0)
          FROM engagement.engagement_events e
         WHERE e.contact_id = r.contact_id AND e.event_type = 'converted'
           AND e.occurred_at >= '1997-10-01 00:00+00' AND e.occurred_at < '1998-07-01 00:00+00')::float8 AS actual_value
  FROM ref.scores('engagement.engagement_events', '1997-09-30 00:00:00+00', 'cdnow_value') r;
SELECT count(*) AS contacts, count(*) FILTER (WHERE opted_out) AS opted_out,
       count(*) FILTER (WHERE undeliverable) AS undeliverable, count(*) FILTER (WHERE x_v > 0) AS valued
  FROM plain;
-- The parameters: MBG/NBD and Gamma-Gamma fitted to these summaries (fit => true), the profile's
-- (fit => false).  (the fits validate_model_summary used, if they are not these)
CREATE TEMP TABLE plain_params AS
SELECT true AS fit, f.r, f.alpha, f.a, f.b, g.p AS gp, g.q AS gq, g.v AS gv
  FROM (SELECT (engagement.fit_mbgnbd(x::integer, t_x, t, 1, 0)).* FROM plain) f,
       (SELECT (engagement.fit_gammagamma(x_v::integer, m_v, 1, 0)).* FROM plain WHERE x_v > 0) g
UNION ALL
SELECT false, model_r, model_alpha, model_a, model_b, gg_p, gg_q, gg_v
  FROM engagement.scoring_profiles WHERE name = 'cdnow_value';
SELECT v.what, v.got, v.test, v.expected
  FROM v_summary s, plain_params q,
       LATERAL (VALUES ('r', (s.parameters).r, '~', q.r), ('alpha', (s.parameters).alpha, '~', q.alpha),
                       ('a', (s.parameters).a, '~', q.a), ('b', (s.parameters).b, '~', q.b),
                       ('p', (s.value_parameters).p, '~', q.gp), ('q', (s.value_parameters).q, '~', q.gq),
                       ('v', (s.value_parameters).v, '~', q.gv)) v(what, got, test, expected)
 WHERE q.fit AND ref.fails(v.got, v.test, v.expected);
-- Per contact and parameter set: the MBG/NBD conditional expectation over 273 days (lifetimes'
-- closed form, 2F1 by its series), P_alive and the probability of an engagement day in the
-- holdout, q, the Gamma-Gamma expected value, the opt-out and undeliverable factors (0.1 each).
CREATE TEMP TABLE plain_pred AS
WITH RECURSIVE u AS (SELECT DISTINCT x, t_x, t FROM plain),
series(fit, x, t_x, t, k, term, total) AS (
    SELECT prm.fit, u.x, u.t_x, u.t, 0, 1::float8, 1::float8 FROM u, plain_params prm
    UNION ALL
    SELECT s.fit, s.x, s.t_x, s.t, s.k + 1,
           s.term * (prm.r + s.x + s.k) * (prm.b + s.x + 1 + s.k) / ((prm.a + prm.b + s.x + s.k) * (s.k + 1))
                  * 273 / (prm.alpha + s.t + 273),
           s.total + s.term * (prm.r + s.x + s.k) * (prm.b + s.x + 1 + s.k) / ((prm.a + prm.b + s.x + s.k) * (s.k + 1))
                     * 273 / (prm.alpha + s.t + 273)
      FROM series s JOIN plain_params prm USING (fit) WHERE abs(s.term) > 1e-18 * s.total AND s.k < 5000),
hyp AS (SELECT DISTINCT ON (fit, x, t_x, t) fit, x, t_x, t, total FROM series ORDER BY fit, x, t_x, t, k DESC),
e AS (
    SELECT hyp.fit, hyp.x, hyp.t_x, hyp.t,
           (prm.a + prm.b + hyp.x) / (prm.a - 1)
             * (1 - hyp.total * power((prm.alpha + hyp.t) / (prm.alpha + 273 + hyp.t), prm.r + hyp.x))
             / (1 + (prm.a / (prm.b + hyp.x)) * power((prm.alpha + hyp.t) / (prm.alpha + hyp.t_x), prm.r + hyp.x)) AS e,
           1 / (1 + (prm.a / (prm.b + hyp.x)) * power((prm.alpha + hyp.t) / (prm.alpha + hyp.t_x), prm.r + hyp.x))
             * (1 - power((prm.alpha + hyp.t) / (prm.alpha + hyp.t + 273), prm.r + hyp.x)) AS prob
      FROM hyp JOIN plain_params prm USING (fit))
SELECT c.*, prm.fit, e.e AS predicted,
       (CASE WHEN c.opted_out THEN 0.1 ELSE 1 END) * (CASE WHEN c.undeliverable THEN 0.1 ELSE 1 END) AS keep,
       e.e * (c.conv_days + 1.0) / (c.n_days + 1 + 9)
         * prm.gp * (prm.gv + c.x_v * c.m_v) / (prm.gp * c.x_v + prm.gq - 1)
         * (CASE WHEN c.opted_out THEN 0.1 ELSE 1 END) * (CASE WHEN c.undeliverable THEN 0.1 ELSE 1 END) AS predicted_value,
       e.prob * (CASE WHEN c.opted_out THEN 0.1 ELSE 1 END) * (CASE WHEN c.undeliverable THEN 0.1 ELSE 1 END) AS probability
  FROM plain c JOIN plain_params prm ON true JOIN e ON e.fit = prm.fit AND (e.x, e.t_x, e.t) = (c.x, c.t_x, c.t);

------------------------------------------------------------------------------------------------
-- 3. The comparisons: each prints the rows where the extension and plain SQL differ (contacts
--    exactly, figures within 1e-9 relative, ref.close).
------------------------------------------------------------------------------------------------
-- (the per-contact table the three functions share, with the calibration fit)
SELECT ((engagement._validation('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value', true)).parameters).converged AS filled;
SELECT count(*) AS per_contact_mismatches
  FROM pg_temp._es_validation v FULL JOIN (SELECT * FROM plain_pred WHERE fit) q USING (contact_id)
 WHERE v.contact_id IS NULL OR q.contact_id IS NULL
    OR (v.x, v.t_x, v.t, v.n_days, v.conv_days, v.x_v, v.opted_out, v.undeliverable)
       IS DISTINCT FROM (q.x::integer, q.t_x, q.t, q.n_days, q.conv_days, q.x_v::integer, q.opted_out, q.undeliverable)
    OR NOT ref.close(v.m_v, q.m_v) OR NOT ref.close(v.composite, q.composite)
    OR NOT ref.close(v.predicted, q.predicted) OR NOT ref.close(v.actual, q.actual)
    OR NOT ref.close(v.predicted_value, q.predicted_value) OR NOT ref.close(v.actual_value, q.actual_value);
DROP TABLE pg_temp._es_validation;
-- (validate_model's buckets that differ)
SELECT coalesce(v.x_bucket, q.x_bucket) AS x_bucket, v.contacts, q.contacts AS plain_contacts
  FROM v_model v
  FULL JOIN (SELECT CASE WHEN x >= 7 THEN '7+' ELSE x::text END AS x_bucket, count(*) AS contacts,
                    avg(predicted) AS predicted, avg(actual) AS actual,
                    avg(predicted_value) AS predicted_value, avg(actual_value) AS actual_value
               FROM plain_pred WHERE fit GROUP BY 1) q USING (x_bucket)
 WHERE v.contacts IS DISTINCT FROM q.contacts OR NOT ref.close(v.predicted, q.predicted) OR NOT ref.close(v.actual, q.actual)
    OR NOT ref.close(v.predicted_value, q.predicted_value) OR NOT ref.close(v.actual_value, q.actual_value);
-- (validate_model_summary's value figures that differ)
SELECT v.what, v.got, v.test, v.expected
  FROM v_summary s,
       (SELECT sum(predicted_value) AS pv, sum(actual_value) AS av, avg(abs(predicted_value - actual_value)) AS mae,
               corr(predicted_value, actual_value) AS r FROM plain_pred WHERE fit) q,
       LATERAL (VALUES ('predicted_value_total', s.predicted_value_total, '~', q.pv),
                       ('actual_value_total', s.actual_value_total, '~', q.av),
                       ('value_mean_absolute_error', s.value_mean_absolute_error, '~', q.mae),
                       ('value_correlation', s.value_correlation, '~', q.r)) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
-- With the profile's parameters (fit => false): the same actual value, another prediction, each
-- against plain SQL.
SELECT count(*) AS buckets,
       bool_and(ref.close(d.predicted_value, q.predicted_value)) AS predicted_value_as_plain,
       bool_and(ref.close(d.actual_value, q.actual_value)) AS actual_value_as_plain,
       bool_or(d.predicted_value <> v.predicted_value) AS other_than_fitted
  FROM engagement.validate_model('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value', false) d
  JOIN v_model v USING (x_bucket)
  JOIN (SELECT CASE WHEN x >= 7 THEN '7+' ELSE x::text END AS x_bucket,
               avg(predicted_value) AS predicted_value, avg(actual_value) AS actual_value
          FROM plain_pred WHERE NOT fit GROUP BY 1) q USING (x_bucket);
-- validate_lift: plain SQL ranks each parameter set's contacts by the predicted value, the
-- probability or the composite, descending, ties by contact_id, ntile(10); per decile the sums,
-- the share of all actual value, its running sum, share / share of contacts.
-- (the deciles that differ, of the six tables)
WITH ranked AS (
    SELECT r.rank_by, p.fit, p.predicted_value, p.actual_value,
           ntile(10) OVER (PARTITION BY r.rank_by, p.fit
                           ORDER BY CASE r.rank_by WHEN 'expected_value' THEN p.predicted_value
                                                   WHEN 'engagement_probability' THEN p.probability
                                                   ELSE p.composite END DESC, p.contact_id) AS decile
      FROM plain_pred p, (VALUES ('expected_value'), ('engagement_probability'), ('composite')) r(rank_by)),
d AS (SELECT rank_by, fit, decile, count(*) AS contacts, sum(predicted_value) AS predicted, sum(actual_value) AS actual
        FROM ranked GROUP BY 1, 2, 3),
q AS (SELECT d.*, actual / sum(actual) OVER w AS share,
             sum(actual) OVER (PARTITION BY rank_by, fit ORDER BY decile) / sum(actual) OVER w AS cumulative_share,
             (actual / sum(actual) OVER w) / (contacts::float8 / sum(contacts) OVER w) AS lift
        FROM d WINDOW w AS (PARTITION BY rank_by, fit))
SELECT coalesce(l.rank_by, q.rank_by) AS rank_by, coalesce(l.fit, q.fit) AS fit, coalesce(l.decile, q.decile) AS decile,
       l.contacts, q.contacts AS plain_contacts
  FROM v_lift l FULL JOIN q USING (rank_by, fit, decile)
 WHERE l.contacts IS DISTINCT FROM q.contacts OR NOT ref.close(l.predicted, q.predicted) OR NOT ref.close(l.actual, q.actual)
    OR NOT ref.close(l.share, q.share) OR NOT ref.close(l.cumulative_share, q.cumulative_share)
    OR NOT ref.close(l.lift, q.lift);
-- Composite ties (contacts of the same events on the same days) are broken by contact_id: the
-- same table every time.
SELECT bool_and(a IS NOT DISTINCT FROM b) AS repeatable
  FROM (SELECT array_agg(l ORDER BY decile) AS a
          FROM engagement.validate_lift('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value', 'composite') l) x,
       (SELECT array_agg(l ORDER BY decile) AS b
          FROM engagement.validate_lift('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value', 'composite') l) y;

------------------------------------------------------------------------------------------------
-- 4. No valued conversion anywhere: the Gamma-Gamma parameters are the profile's (nothing to fit),
--    every prediction is the population mean's, the actual value 0, and the shares NULL.
------------------------------------------------------------------------------------------------
SAVEPOINT unvalued;
UPDATE engagement.engagement_events SET conversion_value = NULL;
SELECT (value_parameters).p = 6.25 AND (value_parameters).q = 3.74 AND (value_parameters).v = 15.44 AS profile_gamma_gamma,
       (value_parameters).n IS NULL AS not_fitted, predicted_value_total > 0 AS predicted, actual_value_total,
       value_correlation
  FROM engagement.validate_model_summary('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value');
SELECT count(*) AS deciles, sum(contacts) AS contacts, sum(actual) AS actual, bool_and(share IS NULL) AS no_share,
       bool_and(lift IS NULL) AS no_lift
  FROM engagement.validate_lift('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value');
ROLLBACK TO SAVEPOINT unvalued;

------------------------------------------------------------------------------------------------
-- 5. Fewer contacts than deciles: as many deciles as contacts, one contact each.
------------------------------------------------------------------------------------------------
SAVEPOINT few;
DELETE FROM engagement.engagement_events WHERE contact_id > 4;
SELECT decile, contacts FROM engagement.validate_lift('1997-09-30 00:00:00+00', '1998-06-30 00:00:00+00', 'cdnow_value', fit => false);
ROLLBACK TO SAVEPOINT few;

------------------------------------------------------------------------------------------------
-- 6. Errors.
------------------------------------------------------------------------------------------------
SELECT what, split_part(ref.sqlstate_of(stmt), ':', 1) AS sqlstate
  FROM (VALUES
    ('calibration_end NULL', $$SELECT * FROM engagement.validate_lift(NULL, '1998-06-30 00:00+00', 'cdnow_value')$$),
    ('holdout_end NULL', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', NULL, 'cdnow_value')$$),
    ('profile NULL', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', NULL)$$),
    ('rank_by NULL', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'cdnow_value', NULL)$$),
    ('fit NULL', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'cdnow_value', 'composite', NULL)$$),
    ('rank_by unknown', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'cdnow_value', 'revenue')$$),
    ('calibration infinity', $$SELECT * FROM engagement.validate_lift('infinity', '1998-06-30 00:00+00', 'cdnow_value')$$),
    ('calibration -infinity', $$SELECT * FROM engagement.validate_lift('-infinity', '1998-06-30 00:00+00', 'cdnow_value')$$),
    ('holdout infinity', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', 'infinity', 'cdnow_value')$$),
    ('holdout on the calibration day', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1997-09-30 23:00+00', 'cdnow_value')$$),
    ('holdout before calibration', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1997-01-01 00:00+00', 'cdnow_value')$$),
    ('no events before calibration', $$SELECT * FROM engagement.validate_lift('1990-01-01 00:00+00', '1998-06-30 00:00+00', 'cdnow_value')$$),
    ('unknown profile', $$SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'nope')$$),
    ('summary: holdout infinity', $$SELECT * FROM engagement.validate_model_summary('1997-09-30 00:00+00', 'infinity', 'cdnow_value')$$)
  ) v(what, stmt);
-- The messages a user reads.
\set VERBOSITY terse
SAVEPOINT message;
SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'cdnow_value', 'revenue');
ROLLBACK TO SAVEPOINT message;
SELECT * FROM engagement.validate_lift('1997-09-30 00:00+00', '1998-06-30 00:00+00', 'cdnow_value', NULL);
\set VERBOSITY default
ROLLBACK;
