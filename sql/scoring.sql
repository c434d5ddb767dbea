-- scoring: hand-computed values of SCORING_MODEL.md on small fixtures, as of 2026-06-01 00:00 UTC,
-- then the aggregate against engagement_score() and the SQL reference model on the generated data.
-- The session runs in pg_regress's PST8PDT: day numbers must still be UTC days.
CREATE TEMP TABLE fx (contact_id int, event_type engagement.event_type, occurred_at timestamptz,
                      conversion_value numeric);
CREATE FUNCTION pg_temp.t(days float8) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
    $$ SELECT timestamptz '2026-06-01 00:00:00+00' - days * interval '1 day' $$;
CREATE TEMP VIEW fx_scores AS
    SELECT contact_id, (engagement.score_events(event_type, occurred_at, conversion_value,
                                                '2026-06-01 00:00:00+00')).*
      FROM fx GROUP BY contact_id;

-- 1: one open two days ago.
INSERT INTO fx VALUES (1, 'opened', pg_temp.t(2), NULL);
SELECT ref.close(recency, 100 * exp(-2 / 30.0)) AS r,
       ref.close(frequency, 100 * (1 - exp(-(1 / 7.0) / 0.1))) AS f,   -- observed clamps 2 up to 7 days
       monetary = 0 AS m,
       ref.close(time_decay, 100 * (1 - exp(-power(2, -2 / 14.0) / 5))) AS td,
       diversity = 0 AS d,
       ref.close(composite, 0.30 * 100 * exp(-2 / 30.0) + 0.25 * 100 * (1 - exp(-(1 / 7.0) / 0.1))
                            + 0.15 * 100 * (1 - exp(-power(2, -2 / 14.0) / 5))) AS s,
       -- x = 1, t_x = 0, Tc = 2 days
       ref.close(churn_risk, 1 - 1 / (1 + (0.5 / 3.5) * power(12 / 10.0, 1.25))) AS churn,
       ref.close(engagement_probability,
                 1 / (1 + (0.5 / 3.5) * power(12 / 10.0, 1.25)) * (1 - power(12 / 42.0, 1.25))) AS ep,
       ref.close(conversion_probability,
                 1 / (1 + (0.5 / 3.5) * power(12 / 10.0, 1.25)) * (1 - power(12 / 42.0, 1.25)) / 11) AS cp,
       segment, opted_out, event_count, engaging_count, conversion_total, first_event_at, last_engaged_at
  FROM fx_scores WHERE contact_id = 1;

-- 2: only non-engaging events: a delivery 10 days ago and a bounce 5 days ago.
INSERT INTO fx VALUES (2, 'delivered', pg_temp.t(10), NULL), (2, 'bounced', pg_temp.t(5), NULL);
SELECT recency, frequency, monetary, time_decay, diversity, composite,   -- decay sum < 0 counts as 0
       ref.close(churn_risk, 1 - 1 / (1 + (0.5 / 2.5) * power(20 / 10.0, 0.25))) AS churn,   -- x = 0, Tc = 10
       ref.close(engagement_probability,
                 1 / (1 + (0.5 / 2.5) * power(20 / 10.0, 0.25)) * (1 - power(20 / 50.0, 0.25))) AS ep,
       ref.close(conversion_probability,
                 1 / (1 + (0.5 / 2.5) * power(20 / 10.0, 0.25)) * (1 - power(20 / 50.0, 0.25)) / 10) AS cp,
       segment, event_count, engaging_count, last_engaged_at
  FROM fx_scores WHERE contact_id = 2;

-- 3: no events, and only future events: no score.
SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01') IS NULL AS no_rows
  FROM fx WHERE false;
INSERT INTO fx VALUES (3, 'converted', pg_temp.t(-1), 10), (3, 'opened', pg_temp.t(-0.5), NULL);
SELECT count(*) AS future_only_scored FROM fx_scores WHERE contact_id = 3 AND composite IS NOT NULL;

-- 4: the lookback edge: an open exactly 365 days ago is in the window, one a second older is not.
INSERT INTO fx VALUES (4, 'opened', pg_temp.t(365), NULL),
                      (5, 'opened', pg_temp.t(365) - interval '1 second', NULL);
SELECT contact_id, ref.close(recency, 100 * exp(-365 / 30.0)) AS r_in_window, recency = 0 AS r_zero,
       ref.close(frequency, 100 * (1 - exp(-(1 / 365.0) / 0.1))) AS f_over_365_days, frequency = 0 AS f_zero,
       time_decay > 0 AS td_positive, engaging_count,
       churn_risk < 1 AS predicted_from_all_events
  FROM fx_scores WHERE contact_id IN (4, 5) ORDER BY contact_id;

-- 5: conversion values: 1000 scores exactly 100, more is capped, NULL counts as 0.
INSERT INTO fx VALUES (6, 'converted', pg_temp.t(1), 1000), (7, 'converted', pg_temp.t(1), 5000),
                      (8, 'converted', pg_temp.t(1), NULL), (9, 'converted', pg_temp.t(1), 9.99),
                      (9, 'converted', pg_temp.t(400), 100);
SELECT contact_id, monetary, conversion_total,
       ref.close(monetary, 100 * ln(1 + 9.99) / ln(1001)) AS m_window_only,
       -- q = (conversion days + 1) / (x + 1 + 9): 2/11 for one day, 3/12 for contact 9's two
       ref.close(conversion_probability,
                 engagement_probability * CASE contact_id WHEN 9 THEN 3 / 12.0 ELSE 2 / 11.0 END) AS cp
  FROM fx_scores WHERE contact_id BETWEEN 6 AND 9 ORDER BY contact_id;

-- 6: opt-out: components unpenalised, composite and predictions penalised, segment opted_out.
INSERT INTO fx VALUES (10, 'opened', pg_temp.t(1), NULL), (10, 'opted_out', pg_temp.t(3), NULL),
                      (11, 'opened', pg_temp.t(1), NULL), (11, 'delivered', pg_temp.t(3), NULL);
SELECT o.opted_out, o.segment, n.segment AS segment_if_not,
       o.recency = n.recency AS same_recency, o.frequency = n.frequency AS same_frequency,
       o.time_decay AS td_negative_sum_is_zero,
       ref.close(o.composite, 0.1 * (0.30 * o.recency + 0.25 * o.frequency + 0.10 * o.diversity)) AS s_penalised,
       ref.close(o.engagement_probability, 0.1 * n.engagement_probability) AS ep_penalised,
       ref.close(o.conversion_probability, 0.1 * n.conversion_probability) AS cp_penalised,
       ref.close(o.churn_risk, 1 - (1 - n.churn_risk) * 0.1) AS churn_penalised
  FROM fx_scores o, fx_scores n WHERE o.contact_id = 10 AND n.contact_id = 11;

-- 7: diversity: all four engaging types give 100, two types evenly give 50.
INSERT INTO fx SELECT 12, t, pg_temp.t(1), NULL
                 FROM unnest('{opened,clicked,responded,converted}'::engagement.event_type[]) t;
INSERT INTO fx VALUES (13, 'opened', pg_temp.t(1), NULL), (13, 'opened', pg_temp.t(2), NULL),
                      (13, 'clicked', pg_temp.t(1), NULL), (13, 'clicked', pg_temp.t(2), NULL);
SELECT contact_id, ref.close(diversity, 100) AS d100, ref.close(diversity, 50) AS d50
  FROM fx_scores WHERE contact_id IN (12, 13) ORDER BY contact_id;

-- 8: x in the thousands.  3,000 engagement days ending yesterday; then the same contact first
-- reached 5,000 days ago and silent for 2,000 days, where the naive power overflows a double.
INSERT INTO fx SELECT 14, 'opened', pg_temp.t(d), NULL FROM generate_series(1, 3000) d;
INSERT INTO fx SELECT 15, 'opened', pg_temp.t(2000 + d), NULL FROM generate_series(0, 2999) d;
INSERT INTO fx VALUES (15, 'delivered', pg_temp.t(5000), NULL);
SELECT contact_id, engaging_count,
       ref.close(churn_risk, 1 - 1 / (1 + (0.5 / 3002.5) * power(3010 / 3009.0, 3000.25))) AS churn_x3000,
       churn_risk, engagement_probability, conversion_probability
  FROM fx_scores WHERE contact_id IN (14, 15) ORDER BY contact_id;

-- 9: composite weights come from the profile.
INSERT INTO engagement.scoring_profiles (name, weight_recency, weight_frequency, weight_monetary,
                                         weight_time_decay, weight_diversity)
VALUES ('recency_only', 1, 0, 0, 0, 0);
SELECT (s).composite = (s).recency AS composite_is_recency, (s).profile
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00', 'recency_only') AS s
          FROM fx WHERE contact_id = 1) q;

-- 10: a changed profile parameter changes the score, and bumps the profile's version.
UPDATE engagement.scoring_profiles SET recency_tau_days = 10 WHERE name = 'recency_only';
SELECT version FROM engagement.scoring_profiles WHERE name = 'recency_only';
SELECT ref.close((s).recency, 100 * exp(-2 / 10.0)) AS r_tau_10
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00', 'recency_only') AS s
          FROM fx WHERE contact_id = 1) q;

-- Every fixture against the reference model, every field.
SELECT f.contact_id, ref.differences(f.s, r.s) AS differences
  FROM (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00') AS s
          FROM fx GROUP BY contact_id) f
  -- the reference's naive power() overflows on contact 15, by design of case 8
  JOIN ref.scores('(SELECT * FROM fx WHERE contact_id <> 15)', '2026-06-01 00:00:00+00') r USING (contact_id)
 ORDER BY contact_id;

-- The generated data set: the aggregate, engagement_score() and the reference agree on every contact.
CREATE TEMP TABLE agg AS
    SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value,
                                               '2026-06-01 12:00:00+00') AS s
      FROM ref.crm_events GROUP BY contact_id;
SELECT count(*) AS contacts_scored,
       count(*) FILTER (WHERE (s).segment = 'opted_out') > 0 AS some_opted_out,
       count(DISTINCT (s).segment) >= 8 AS many_segments
  FROM agg;
SELECT count(*) AS contacts_differing_from_reference
  FROM agg JOIN ref.scores('ref.crm_events', '2026-06-01 12:00:00+00') r USING (contact_id)
 WHERE cardinality(ref.differences(agg.s, r.s)) > 0;
SELECT count(*) AS reference_contacts_missing
  FROM ref.scores('ref.crm_events', '2026-06-01 12:00:00+00') r LEFT JOIN agg USING (contact_id)
 WHERE agg.contact_id IS NULL;
SELECT count(*) AS contacts_differing_from_engagement_score
  FROM agg
 WHERE agg.s IS DISTINCT FROM engagement.engagement_score(agg.contact_id, '2026-06-01 12:00:00+00');
