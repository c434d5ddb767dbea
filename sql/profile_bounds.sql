-- profile_bounds: every parameter of a profile has a range (issue 29).  Values that gave NaN scores or
-- made every refresh fail are refused (23514); a profile at the extremes of every range scores
-- adversarial contacts with every field finite, explains them without NaN or infinity, and refreshes.

-- Refused: the weight of issue 29 (composite NaN, segment champions, explain_score "score nan",
-- refresh_scores 22023), and a value just outside each kind of range.
SELECT c AS parameter, ref.sqlstate_of(format('INSERT INTO engagement.scoring_profiles (name, %I) VALUES (%L, %s)', c, 'b', v)) AS result
  FROM (VALUES ('decay_weight_opened', '1e308'), ('decay_weight_bounced', '-1000000.0000001'),
               ('lookback_days', '0.0000009'), ('frequency_min_days', '0.0000009'), ('half_life_days', '1.1e9'),
               ('frequency_ref_rate', '1.1e18'), ('monetary_ref_value', '0'), ('time_decay_ref', '''Infinity'''),
               ('model_r', '0.9e-9'), ('model_alpha', '1.1e18'), ('model_a', '1.1e9'), ('model_b', '''NaN'''),
               ('horizon_days', '1.1e9'), ('conv_prior_a', '1.1e9'), ('gg_p', '0'), ('gg_q', '1'), ('gg_v', '1.1e18'),
               ('opt_out_penalty', '1.0000001')) v(c, v);
-- Intervals whose now() - interval left the timestamp range (22008 in refresh_scores and
-- readable_scores): more than 100 years, or a field of one beyond 100 years (a sum of fields can
-- be small while each is not).
SELECT c AS parameter, v AS value, ref.sqlstate_of(format('INSERT INTO engagement.scoring_profiles (name, %I) VALUES (%L, %L)', c, 'b', v)) AS result
  FROM (VALUES ('max_score_age', '178000000 years'), ('refresh_log_retention', '178000000 years'),
               ('max_score_age', '100 years 1 day'), ('refresh_log_retention', '36001 days'),
               ('max_score_age', '6000000 years -2147483647 days -2562047787 hours'),
               ('refresh_log_retention', '1 year -36526 days 876624 hours'),
               ('max_score_age', '0'), ('refresh_log_retention', '-1 second')) v(c, v);
SELECT ref.sqlstate_of($$SELECT now() - interval '6000000 years -2147483647 days -2562047787 hours'$$) AS why;
-- A document is checked as a row is: 22023.
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), jsonb_set(to_jsonb(p), '{decay_weight_opened}', '1e308'))
                           FROM engagement.scoring_profiles p WHERE name = 'default'$$) AS document_weight_1e308;

-- Accepted: every parameter at its lowest and at its highest (the lower bound of gg_q excluded:
-- the next double); the intervals at their least and most (fields of opposite signs, each at its
-- bound, summing to 100 years).
INSERT INTO engagement.scoring_profiles
    (name, lookback_days, recency_tau_days, frequency_min_days, frequency_ref_rate, monetary_ref_value, half_life_days,
     time_decay_ref, decay_weight_delivered, decay_weight_opened, decay_weight_clicked, decay_weight_responded,
     decay_weight_converted, decay_weight_opted_out, decay_weight_opted_in, decay_weight_bounced, weight_recency,
     weight_frequency, weight_monetary, weight_time_decay, weight_diversity, opt_out_penalty, undeliverable_penalty,
     undeliverable_after, new_contact_days, model_r, model_alpha, model_a, model_b,
     horizon_days, conv_prior_a, conv_prior_b, gg_p, gg_q, gg_v, max_score_age, refresh_log_retention)
VALUES ('bounds_low', 1e-6, 1e-6, 1e-6, 1e-9, 1e-9, 1e-6, 1e-9, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6,
        1, 0, 0, 0, 0, 0, 0, 1, 1e-6, 1e-9, 1e-9, 1e-9, 1e-9, 1e-6, 1e-9, 1e-9, 1e-9, 1.0000000000000002, 1e-18,
        '1 microsecond', '0'),
       ('bounds_high', 1e9, 1e9, 1e9, 1e18, 1e18, 1e9, 1e18, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6,
        0.2, 0.2, 0.2, 0.2, 0.2, 1, 1, 10, 1e9, 1e9, 1e18, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e18,
        '-100 years 35475 days 876600 hours', '100 years 11 mons -330 days');
SELECT name, version FROM engagement.scoring_profiles WHERE name LIKE 'bounds%' ORDER BY name;

-- Adversarial contacts: events at both ends of PostgreSQL's timestamp range, conversion values of
-- the largest double and of numeric(14,2), 100,000 events at one instant, 54,501 engagement days
-- over 300,000 years, opt-outs only, and bounces and opt-ins at both ends of the range.
CREATE TABLE ref.bounds_events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                                conversion_value numeric);
INSERT INTO ref.bounds_events
SELECT 1, t, w, CASE WHEN t = 'converted' THEN 1.7976931348623157e308 END
  FROM unnest('{delivered,opened,clicked,responded,converted,opted_out,bounced}'::engagement.event_type[]) t,
       unnest(ARRAY[timestamptz '4713-11-24 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00']) w
UNION ALL
SELECT 2, ('{delivered,opened,clicked,responded,converted,opted_out,opted_in,bounced}'::engagement.event_type[])[1 + i % 8],
       '2026-06-01 00:00+00', CASE WHEN i % 8 = 4 THEN 1.7976931348623157e308 END
  FROM generate_series(1, 100000) i
UNION ALL
SELECT 3, 'converted', timestamptz '2026-06-01 00:00+00' - i * interval '1 hour', 999999999999.99
  FROM generate_series(1, 1000) i
UNION ALL
SELECT 4, CASE WHEN i % 2 = 0 THEN 'clicked' ELSE 'converted' END::engagement.event_type,
       timestamptz '4713-11-24 00:00:00+00 BC' + i * interval '2000 days', CASE WHEN i % 2 = 1 THEN 1.7976931348623157e308 END
  FROM generate_series(0, 54500) i
UNION ALL
SELECT 5, 'opted_out', w, NULL
  FROM unnest(ARRAY[timestamptz '4713-11-24 00:00:00+00 BC', '2026-06-01 00:00+00']) w
UNION ALL
SELECT 6, 'opened', '4713-11-24 00:00:00+00 BC', NULL
UNION ALL
SELECT 7, CASE WHEN i % 3 = 0 THEN 'opted_in' ELSE 'bounced' END::engagement.event_type, w, NULL
  FROM unnest(ARRAY[timestamptz '4713-11-24 00:00:00+00 BC', '2026-06-01 00:00+00']) w, generate_series(1, 12) i;
CREATE TABLE ref.bounds_as_of (contact_id bigint, as_of timestamptz);
INSERT INTO ref.bounds_as_of
VALUES (1, '294276-12-31 23:59:59.999999+00'), (2, '2026-06-01 00:00+00'), (3, '2026-06-01 00:00+00'),
       (4, '294276-12-31 23:59:59.999999+00'), (5, '2026-06-01 00:00+00'), (6, '4713-11-24 00:00:00+00 BC'),
       (7, '294276-12-31 23:59:59.999999+00');

-- Every field finite, components in [0, 100] and probabilities in [0, 1] (up to the rounding
-- engagement_scores' CHECKs allow), explanations without NaN or infinity: under each profile's
-- document (to_jsonb of its row), and under documents mixing the extremes.
CREATE FUNCTION pg_temp.sound(s engagement.score) RETURNS boolean LANGUAGE sql AS $$
SELECT s.composite BETWEEN 0 AND 100.0000001
   AND s.recency BETWEEN 0 AND 100.0000001 AND s.frequency BETWEEN 0 AND 100.0000001
   AND s.monetary BETWEEN 0 AND 100.0000001 AND s.time_decay BETWEEN 0 AND 100.0000001
   AND s.diversity BETWEEN 0 AND 100.0000001
   AND s.engagement_probability BETWEEN 0 AND 1 AND s.conversion_probability BETWEEN 0 AND 1
   AND s.churn_risk BETWEEN 0 AND 1
   AND s.expected_engagements_30d >= 0 AND s.expected_engagements_30d < 'Infinity'
   AND s.expected_conversion_value >= 0 AND s.expected_conversion_value < 'Infinity'
   AND s.expected_value_30d >= 0 AND s.expected_value_30d < 'Infinity'
   AND s.conversion_total >= 0 AND s.conversion_total < 'Infinity'   -- (NaN is above Infinity)
   AND s.tenure_days >= 0 AND s.tenure_days < 'Infinity'
   AND s.t_x >= 0 AND s.t_x <= s.t_c AND s.t_c < 'Infinity' AND s.m_v >= 0 AND s.m_v < 'Infinity'
$$;
CREATE TEMP VIEW bounds_documents AS
SELECT p.name AS profile, to_jsonb(p) AS doc FROM engagement.scoring_profiles p WHERE p.name LIKE 'bounds%'
UNION ALL
-- the expectation's corners: r and alpha low, a, b and the horizon high, and the reverse
SELECT 'mixed_' || l.name, to_jsonb(l) || jsonb_build_object('model_a', h.model_a, 'model_b', h.model_b,
                                                             'horizon_days', h.horizon_days, 'gg_q', h.gg_q)
  FROM engagement.scoring_profiles l, engagement.scoring_profiles h
 WHERE (l.name, h.name) IN (('bounds_low', 'bounds_high'), ('bounds_high', 'bounds_low'));
SELECT d.profile, a.contact_id, pg_temp.sound(s.s) AS sound, (s.s).segment, x.text !~* 'nan|inf' AS explanation_sound
  FROM bounds_documents d
 CROSS JOIN ref.bounds_as_of a
 CROSS JOIN LATERAL (SELECT engagement.score_events(ev.event_type, ev.occurred_at, ev.conversion_value, a.as_of, d.doc) AS s
                       FROM ref.bounds_events ev WHERE ev.contact_id = a.contact_id) s
 CROSS JOIN LATERAL (SELECT engagement.explain_events(ev.event_type, ev.occurred_at, ev.conversion_value, a.as_of, d.doc) AS text
                       FROM ref.bounds_events ev WHERE ev.contact_id = a.contact_id) x
 ORDER BY 1, 2;
-- By the profile's name, as refresh_scores reads it: the same scores.
SELECT bool_and(n.s IS NOT DISTINCT FROM d.s) AS same_as_document
  FROM ref.bounds_as_of a,
       LATERAL (SELECT engagement.score_events(ev.event_type, ev.occurred_at, ev.conversion_value, a.as_of, 'bounds_high') AS s
                  FROM ref.bounds_events ev WHERE ev.contact_id = a.contact_id) n,
       LATERAL (SELECT engagement.score_events(ev.event_type, ev.occurred_at, ev.conversion_value, a.as_of, to_jsonb(p)) AS s
                  FROM ref.bounds_events ev, engagement.scoring_profiles p
                 WHERE ev.contact_id = a.contact_id AND p.name = 'bounds_high') d;

-- The refresh, reading the contacts from their own relation (as of now(): the events at 294276 AD
-- are in the future), twice (the second incremental: now() - max_score_age, and the runs older than
-- refresh_log_retention removed); then the stored scores, readable_scores and the staleness view.
UPDATE engagement.scoring_profiles SET events_relation = 'ref.bounds_events' WHERE name LIKE 'bounds%';
SELECT name, engagement.refresh_scores(name) AS first FROM engagement.scoring_profiles WHERE name LIKE 'bounds%' ORDER BY name;
SELECT name, engagement.refresh_scores(name) IS NOT NULL AS second FROM engagement.scoring_profiles WHERE name LIKE 'bounds%' ORDER BY name;
SELECT s.profile, count(*) AS scores, bool_and(pg_temp.sound(ref.as_score(s))) AS sound
  FROM engagement.engagement_scores s WHERE s.profile LIKE 'bounds%' GROUP BY 1 ORDER BY 1;
SELECT p.name, count(r.*) AS readable
  FROM engagement.scoring_profiles p, LATERAL engagement.readable_scores(p.name) r
 WHERE p.name LIKE 'bounds%' GROUP BY 1 ORDER BY 1;
SELECT profile, bool_and(error IS NULL) AS no_error FROM engagement.refresh_runs WHERE profile LIKE 'bounds%' GROUP BY 1 ORDER BY 1;

DELETE FROM engagement.scoring_profiles WHERE name LIKE 'bounds%';
DROP TABLE ref.bounds_events, ref.bounds_as_of;
