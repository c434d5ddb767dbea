-- scoring: hand-computed values of docs/model.md on small fixtures, as of 2026-06-01 00:00 UTC,
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

-- Each check lists what is wrong, one row per failing value: (contact_id, field, got, test,
-- expected), test being ref.fails' '~' (within 1e-9 relative), '=', '<' or '>'; no rows when all is
-- well.  Each case also shows its facts (segment, counts, times), which proves its contact scored.

-- 1: one open two days ago.
INSERT INTO fx VALUES (1, 'opened', pg_temp.t(2), NULL);
-- every float field against docs/model.md by hand
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s, LATERAL (VALUES
       ('recency', s.recency, '~', 100 * exp(-2 / 30.0)),
       ('frequency', s.frequency, '~', 100 * (1 - exp(-(1 / 30.0) / 0.1))),   -- observed clamps 2 up to 30 days
       ('monetary', s.monetary, '=', 0),
       ('time_decay', s.time_decay, '~', 100 * (1 - exp(-power(2, -2 / 14.0) / 5))),
       ('diversity', s.diversity, '=', 0),
       ('composite', s.composite, '~', 0.30 * 100 * exp(-2 / 30.0) + 0.25 * 100 * (1 - exp(-(1 / 30.0) / 0.1))
                                       + 0.15 * 100 * (1 - exp(-power(2, -2 / 14.0) / 5))),
       -- The open is on the birth day (model version 2): x = 0 repeat days, t_x = 0, Tc = 2 days;
       -- n_days = 1 engagement day, so q = (0 + 1) / (1 + 1 + 9)
       ('churn_risk', s.churn_risk, '~', 1 - 1 / (1 + (0.5 / 2.5) * power(12 / 10.0, 0.25))),
       ('engagement_probability', s.engagement_probability, '~',
        1 / (1 + (0.5 / 2.5) * power(12 / 10.0, 0.25)) * (1 - power(12 / 42.0, 0.25))),
       ('conversion_probability', s.conversion_probability, '~',
        1 / (1 + (0.5 / 2.5) * power(12 / 10.0, 0.25)) * (1 - power(12 / 42.0, 0.25)) / 11),
       -- no conversion value: the Gamma-Gamma population mean p v / (q - 1)
       ('expected_conversion_value', s.expected_conversion_value, '~', 6.25 * 15.44 / (3.74 - 1)),
       ('expected_value_30d', s.expected_value_30d, '~', s.expected_engagements_30d / 11 * 6.25 * 15.44 / (3.74 - 1))
       ) v(field, got, test, expected)
 WHERE s.contact_id = 1 AND ref.fails(v.got, v.test, v.expected)
 ORDER BY v.field;
SELECT segment, opted_out, event_count, engaging_count, conversion_total, first_event_at, last_engaged_at
  FROM fx_scores WHERE contact_id = 1;

-- 2: only non-engaging events: a delivery 10 days ago and a bounce 5 days ago.
INSERT INTO fx VALUES (2, 'delivered', pg_temp.t(10), NULL), (2, 'bounced', pg_temp.t(5), NULL);
SELECT recency, frequency, monetary, time_decay, diversity, composite,   -- decay sum < 0 counts as 0
       segment, event_count, engaging_count, last_engaged_at
  FROM fx_scores WHERE contact_id = 2;
-- the predictions from x = 0, Tc = 10 by hand
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s, LATERAL (VALUES
       ('churn_risk', s.churn_risk, '~', 1 - 1 / (1 + (0.5 / 2.5) * power(20 / 10.0, 0.25))),
       ('engagement_probability', s.engagement_probability, '~',
        1 / (1 + (0.5 / 2.5) * power(20 / 10.0, 0.25)) * (1 - power(20 / 50.0, 0.25))),
       ('conversion_probability', s.conversion_probability, '~',
        1 / (1 + (0.5 / 2.5) * power(20 / 10.0, 0.25)) * (1 - power(20 / 50.0, 0.25)) / 10)
       ) v(field, got, test, expected)
 WHERE s.contact_id = 2 AND ref.fails(v.got, v.test, v.expected)
 ORDER BY v.field;

-- 3: no events, and only future events: no score.  Lists any score that came out.
SELECT q.s AS score_of_no_rows
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01') AS s
          FROM fx WHERE false) q
 WHERE NOT (q.s IS NULL);
INSERT INTO fx VALUES (3, 'converted', pg_temp.t(-1), 10), (3, 'opened', pg_temp.t(-0.5), NULL);
SELECT contact_id, composite, event_count AS future_only_scored
  FROM fx_scores WHERE contact_id = 3 AND composite IS NOT NULL;

-- 4: the lookback edge: an open exactly 365 days ago is in the window, one a second older is not.
INSERT INTO fx VALUES (4, 'opened', pg_temp.t(365), NULL),
                      (5, 'opened', pg_temp.t(365) - interval '1 second', NULL);
SELECT contact_id, engaging_count FROM fx_scores WHERE contact_id IN (4, 5) ORDER BY contact_id;
-- contact 4: recency and frequency (over 365 days) of its open, a positive decay; contact 5: none
-- of them; both: predicted from all events (churn_risk < 1)
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s, LATERAL (VALUES
       ('recency', s.recency, '~', 100 * exp(-365 / 30.0)),
       ('frequency', s.frequency, '~', 100 * (1 - exp(-(1 / 365.0) / 0.1))),
       ('time_decay', s.time_decay, '>', 0),
       ('churn_risk', s.churn_risk, '<', 1)) v(field, got, test, expected)
 WHERE s.contact_id = 4 AND ref.fails(v.got, v.test, v.expected)
UNION ALL
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s, LATERAL (VALUES
       ('recency', s.recency, '=', 0),
       ('frequency', s.frequency, '=', 0),
       ('time_decay', s.time_decay, '<=', 0),
       ('churn_risk', s.churn_risk, '<', 1)) v(field, got, test, expected)
 WHERE s.contact_id = 5 AND ref.fails(v.got, v.test, v.expected)
 ORDER BY 1, 2;

-- 5: conversion values: 1000 scores exactly 100, more is capped, NULL counts as 0.
INSERT INTO fx VALUES (6, 'converted', pg_temp.t(1), 1000), (7, 'converted', pg_temp.t(1), 5000),
                      (8, 'converted', pg_temp.t(1), NULL), (9, 'converted', pg_temp.t(1), 9.99),
                      (9, 'converted', pg_temp.t(400), 100);
SELECT contact_id, monetary, conversion_total
  FROM fx_scores WHERE contact_id BETWEEN 6 AND 9 ORDER BY contact_id;
-- contact 9's monetary counts its conversion in the window only; every conversion_probability is
-- engagement_probability * q, q = (conversion days + 1) / (x + 1 + 9): 2/11 for one day, 3/12 for
-- contact 9's two
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s, LATERAL (VALUES
       ('monetary', s.monetary, '~', 100 * ln(1 + 9.99) / ln(1001)),
       ('conversion_probability', s.conversion_probability, '~',
        s.engagement_probability * CASE s.contact_id WHEN 9 THEN 3 / 12.0 ELSE 2 / 11.0 END)
       ) v(field, got, test, expected)
 WHERE s.contact_id BETWEEN 6 AND 9 AND (v.field <> 'monetary' OR s.contact_id = 9)
   AND ref.fails(v.got, v.test, v.expected)
 ORDER BY 1, 2;

-- 6: opt-out: components unpenalised, composite and predictions penalised, segment opted_out.
INSERT INTO fx VALUES (10, 'opened', pg_temp.t(1), NULL), (10, 'opted_out', pg_temp.t(3), NULL),
                      (11, 'opened', pg_temp.t(1), NULL), (11, 'delivered', pg_temp.t(3), NULL);
SELECT o.opted_out, o.segment, n.segment AS segment_if_not, o.time_decay AS td_negative_sum_is_zero
  FROM fx_scores o, fx_scores n WHERE o.contact_id = 10 AND n.contact_id = 11;
-- the opted-out contact 10 against contact 11, the same without the opt-out
SELECT o.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores o, fx_scores n, LATERAL (VALUES
       ('recency', o.recency, '=', n.recency),
       ('frequency', o.frequency, '=', n.frequency),
       ('composite', o.composite, '~', 0.1 * (0.30 * o.recency + 0.25 * o.frequency + 0.10 * o.diversity)),
       ('engagement_probability', o.engagement_probability, '~', 0.1 * n.engagement_probability),
       ('conversion_probability', o.conversion_probability, '~', 0.1 * n.conversion_probability),
       ('churn_risk', o.churn_risk, '~', 1 - (1 - n.churn_risk) * 0.1)) v(field, got, test, expected)
 WHERE o.contact_id = 10 AND n.contact_id = 11 AND ref.fails(v.got, v.test, v.expected)
 ORDER BY v.field;

-- 7: diversity: all four engaging types give 100, two types evenly give 50.
INSERT INTO fx SELECT 12, t, pg_temp.t(1), NULL
                 FROM unnest('{opened,clicked,responded,converted}'::engagement.event_type[]) t;
INSERT INTO fx VALUES (13, 'opened', pg_temp.t(1), NULL), (13, 'opened', pg_temp.t(2), NULL),
                      (13, 'clicked', pg_temp.t(1), NULL), (13, 'clicked', pg_temp.t(2), NULL);
-- (a missing contact shows with no value)
SELECT c.contact_id, 'diversity' AS field, s.diversity AS got, '~' AS test, c.expected
  FROM (VALUES (12, 100::float8), (13, 50)) c(contact_id, expected)
  LEFT JOIN fx_scores s USING (contact_id)
 WHERE ref.fails(s.diversity, '~', c.expected)
 ORDER BY 1;

-- 8: x in the thousands.  3,000 engagement days ending yesterday (the first on the birth day, so
-- x = 2999 repeat days, t_x = 2999, Tc = 3000); then the same contact first
-- reached 5,000 days ago and silent for 2,000 days, where the naive power overflows a double.
INSERT INTO fx SELECT 14, 'opened', pg_temp.t(d), NULL FROM generate_series(1, 3000) d;
INSERT INTO fx SELECT 15, 'opened', pg_temp.t(2000 + d), NULL FROM generate_series(0, 2999) d;
INSERT INTO fx VALUES (15, 'delivered', pg_temp.t(5000), NULL);
SELECT contact_id, engaging_count, churn_risk, engagement_probability, conversion_probability
  FROM fx_scores WHERE contact_id IN (14, 15) ORDER BY contact_id;
-- contact 14's churn_risk by hand
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s, LATERAL (VALUES
       ('churn_risk', s.churn_risk, '~', 1 - 1 / (1 + (0.5 / 3001.5) * power(3010 / 3009.0, 2999.25)))
       ) v(field, got, test, expected)
 WHERE s.contact_id = 14 AND ref.fails(v.got, v.test, v.expected);

-- 9: composite weights come from the profile.
INSERT INTO engagement.scoring_profiles (name, weight_recency, weight_frequency, weight_monetary,
                                         weight_time_decay, weight_diversity)
VALUES ('recency_only', 1, 0, 0, 0, 0);
SELECT (s).profile
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00', 'recency_only') AS s
          FROM fx WHERE contact_id = 1) q;
-- the composite is exactly the recency
SELECT 'composite' AS field, (s).composite AS got, '=' AS test, (s).recency AS expected
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00', 'recency_only') AS s
          FROM fx WHERE contact_id = 1) q
 WHERE ref.fails((s).composite, '=', (s).recency);

-- 10: a changed profile parameter changes the score, and bumps the profile's version.
UPDATE engagement.scoring_profiles SET recency_tau_days = 10 WHERE name = 'recency_only';
SELECT version FROM engagement.scoring_profiles WHERE name = 'recency_only';
-- the recency with tau = 10 days
SELECT 'recency' AS field, (s).recency AS got, '~' AS test, 100 * exp(-2 / 10.0) AS expected
  FROM (SELECT engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00', 'recency_only') AS s
          FROM fx WHERE contact_id = 1) q
 WHERE ref.fails((s).recency, '~', 100 * exp(-2 / 10.0));

-- 11 (model version 3): opt-ins.  An opt-in after an opt-out lifts it (contact 21); an opt-out
-- after an opt-in stands (22); at the same instant the opt-out wins (23).  Each also clicked 40
-- days ago; the segments by hand: not new (40 days >= 30), R = 100 exp(-40/30) = 26.4 (Rq 2).
INSERT INTO fx VALUES (21, 'clicked', pg_temp.t(40), NULL), (21, 'opted_out', pg_temp.t(20), NULL),
                      (21, 'opted_in', pg_temp.t(10), NULL),
                      (22, 'clicked', pg_temp.t(40), NULL), (22, 'opted_in', pg_temp.t(20), NULL),
                      (22, 'opted_out', pg_temp.t(10), NULL),
                      (23, 'clicked', pg_temp.t(40), NULL), (23, 'opted_out', pg_temp.t(10), NULL),
                      (23, 'opted_in', pg_temp.t(10), NULL);
SELECT contact_id, opted_out, segment, undeliverable, tenure_days,
       composite = (0.30 * recency + 0.25 * frequency + 0.20 * monetary + 0.15 * time_decay + 0.10 * diversity)
                   * CASE WHEN opted_out THEN 0.1 ELSE 1 END AS penalised_as_flagged
  FROM fx_scores WHERE contact_id BETWEEN 21 AND 23 ORDER BY contact_id;

-- 12: undeliverable.  Three bounces after the last delivery (24) are undeliverable_after = 3;
-- two (25) are not; a bounce at the very instant of the last delivery does not count (26: two
-- after it); a delivery after the bounces makes the contact reachable again (27).  Both flags on
-- one contact (28) give both factors, to the composite and the predictions.
INSERT INTO fx VALUES (24, 'clicked', pg_temp.t(60), NULL), (24, 'delivered', pg_temp.t(50), NULL),
                      (24, 'bounced', pg_temp.t(40), NULL), (24, 'bounced', pg_temp.t(30), NULL),
                      (24, 'bounced', pg_temp.t(20), NULL),
                      (25, 'clicked', pg_temp.t(60), NULL), (25, 'delivered', pg_temp.t(50), NULL),
                      (25, 'bounced', pg_temp.t(30), NULL), (25, 'bounced', pg_temp.t(20), NULL),
                      (26, 'clicked', pg_temp.t(60), NULL), (26, 'delivered', pg_temp.t(50), NULL),
                      (26, 'bounced', pg_temp.t(50), NULL), (26, 'bounced', pg_temp.t(30), NULL),
                      (26, 'bounced', pg_temp.t(20), NULL),
                      (27, 'clicked', pg_temp.t(60), NULL), (27, 'bounced', pg_temp.t(40), NULL),
                      (27, 'bounced', pg_temp.t(30), NULL), (27, 'bounced', pg_temp.t(20), NULL),
                      (27, 'delivered', pg_temp.t(10), NULL),
                      (28, 'clicked', pg_temp.t(60), NULL), (28, 'opted_out', pg_temp.t(55), NULL),
                      (28, 'bounced', pg_temp.t(40), NULL), (28, 'bounced', pg_temp.t(30), NULL),
                      (28, 'bounced', pg_temp.t(20), NULL);
SELECT contact_id, undeliverable, opted_out, segment FROM fx_scores WHERE contact_id BETWEEN 24 AND 28 ORDER BY contact_id;
-- the penalties by hand, keep = 0.1 for 24 (undeliverable) and 0.1 * 0.1 for 28 (both): the
-- composite is its weighted components times keep; the predictions are those of its events without
-- the bounces and the opt-out (the same summary, unflagged) times keep; churn_risk 1 - (1 - churn) * keep
SELECT s.contact_id, v.field, v.got, v.test, v.expected
  FROM fx_scores s,
       LATERAL (SELECT (engagement.score_events(f.event_type, f.occurred_at, f.conversion_value, '2026-06-01 00:00:00+00')).*
                  FROM fx f WHERE f.contact_id = s.contact_id AND f.event_type NOT IN ('bounced', 'opted_out')) u,
       LATERAL (SELECT CASE s.contact_id WHEN 24 THEN 0.1 ELSE 0.1 * 0.1 END::float8 AS keep) k,
       LATERAL (VALUES ('composite', s.composite, '~', (0.30 * s.recency + 0.25 * s.frequency + 0.20 * s.monetary
                                                        + 0.15 * s.time_decay + 0.10 * s.diversity) * k.keep),
                       ('engagement_probability', s.engagement_probability, '~', u.engagement_probability * k.keep),
                       ('conversion_probability', s.conversion_probability, '~', u.conversion_probability * k.keep),
                       ('churn_risk', s.churn_risk, '~', 1 - (1 - u.churn_risk) * k.keep)) v(field, got, test, expected)
 WHERE s.contact_id IN (24, 28) AND ref.fails(v.got, v.test, v.expected)
 ORDER BY 1, 2;

-- 13: tenure and the segment new.  A contact first reached 29.5 days ago is new whatever its
-- components (29: a conversion of 1000 and clicks, all recent); 30.5 days ago it is not (30), and
-- version 2's new (Rq >= 4, FMq = 1) is promising now (31: one open yesterday, first reached 40
-- days ago).
INSERT INTO fx VALUES (29, 'delivered', pg_temp.t(29.5), NULL), (29, 'clicked', pg_temp.t(1), NULL),
                      (29, 'responded', pg_temp.t(1), NULL), (29, 'converted', pg_temp.t(1), 1000),
                      (30, 'delivered', pg_temp.t(30.5), NULL), (30, 'clicked', pg_temp.t(1), NULL),
                      (30, 'responded', pg_temp.t(1), NULL), (30, 'converted', pg_temp.t(1), 1000),
                      (31, 'delivered', pg_temp.t(40), NULL), (31, 'opened', pg_temp.t(1), NULL);
SELECT contact_id, segment, tenure_days, recency >= 80 AS rq_5, frequency < 20 AND monetary < 20 AS fmq_1
  FROM fx_scores WHERE contact_id BETWEEN 29 AND 31 ORDER BY contact_id;
-- the summary stored with a score, by hand: contact 30's birth day is day(t(30.5)), its engagement
-- days after it one (x = 1, t_x = day(t(1)) - birth), Tc = day(as_of) - birth; one valued conversion day
SELECT contact_id, birth_at, x, t_x, t_c, n_days, conv_days, x_v, m_v
  FROM fx_scores WHERE contact_id = 30;

-- Every fixture against the reference model, every field: the fields that differ.  Contact 3
-- (future events only) has no score on either side; a contact scored on one side only differs in
-- every field.
SELECT contact_id, d.field, d.got, d.expected
  FROM (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 00:00:00+00') AS s
          FROM fx
         WHERE contact_id <> 15   -- the reference's naive power() overflows on contact 15, by design of case 8
         GROUP BY contact_id) f
  FULL JOIN ref.scores('(SELECT * FROM fx WHERE contact_id <> 15)', '2026-06-01 00:00:00+00') r USING (contact_id),
  LATERAL ref.reference_mismatches(f.s, r.s) d
 ORDER BY contact_id, d.field;
-- (the contacts compared: the fixtures' contacts the reference scores)
SELECT array_agg(contact_id ORDER BY contact_id) AS compared
  FROM ref.scores('(SELECT * FROM fx WHERE contact_id <> 15)', '2026-06-01 00:00:00+00');

-- The generated data set: the aggregate, engagement_score() and the reference agree on every contact.
CREATE TEMP TABLE agg AS
    SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value,
                                               '2026-06-01 12:00:00+00') AS s
      FROM ref.crm_events GROUP BY contact_id;
SELECT count(*) AS contacts_scored FROM agg;
-- (the counts, if no contact is opted out or fewer than 8 segments are used)
SELECT v.what, v.got, v.test, v.expected
  FROM (SELECT count(*) FILTER (WHERE (s).segment = 'opted_out') AS opted_out, count(DISTINCT (s).segment) AS segments
          FROM agg) a,
       LATERAL (VALUES ('opted-out contacts', a.opted_out::float8, '>', 0),
                       ('segments', a.segments, '>=', 8)) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
-- The aggregate against the reference: every field that differs, of every contact (a contact
-- missing on either side differs in every field).
SELECT contact_id, d.field, d.got, d.expected
  FROM agg FULL JOIN ref.scores('ref.crm_events', '2026-06-01 12:00:00+00') r USING (contact_id),
       LATERAL ref.reference_mismatches(agg.s, r.s) d
 ORDER BY contact_id, d.field;
-- The aggregate against engagement_score(), exactly: every field that differs.
SELECT agg.contact_id, d.field, d.got AS aggregate, d.expected AS engagement_score
  FROM agg, LATERAL ref.score_mismatches(agg.s, engagement.engagement_score(agg.contact_id, '2026-06-01 12:00:00+00'),
                                         'exact') d
 ORDER BY agg.contact_id, d.field;
