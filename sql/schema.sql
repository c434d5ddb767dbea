-- schema: the tables' constraints reject bad data with the right SQLSTATE, and keep good data.
SELECT name, version, lookback_days, half_life_days, weight_recency + weight_frequency + weight_monetary
       + weight_time_decay + weight_diversity AS weight_sum, model_r, model_alpha, model_a, model_b
  FROM engagement.scoring_profiles ORDER BY name;

-- Events: each bad row fails alone (23514 check_violation, 23502 not_null, 23503 foreign key).
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
                         VALUES (1, 'converted', now(), -0.01)$$) AS negative_value;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
                         VALUES (1, 'clicked', now(), 5)$$) AS value_not_on_conversion;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, channel)
                         VALUES (1, 'opened', now(), 'fax')$$) AS unknown_channel;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, metadata)
                         VALUES (1, 'opened', now(), '[1, 2]')$$) AS metadata_not_object;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
                         VALUES (1, 'opened', 'infinity')$$) AS infinite_time;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
                         VALUES (NULL, 'opened', now())$$) AS no_contact;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, parent_event_id)
                         VALUES (1, 'opened', now(), -5)$$) AS missing_parent;
SELECT ref.sqlstate_of($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
                         VALUES (1, 'unsubscribed', now())$$) AS unknown_type;
SELECT ref.sqlstate_of($$UPDATE engagement.engagement_events SET parent_event_id = id
                          WHERE id = (SELECT min(id) FROM engagement.engagement_events)$$) AS parent_is_self;

-- Event chaining: a click's parent is its delivery; deleting the delivery keeps the click.
WITH d AS (INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at)
           VALUES (900001, 7, 'delivered', '2026-05-01 10:00+00') RETURNING id)
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, parent_event_id,
                                          channel, device_type, metadata)
SELECT 900001, 7, 'clicked', '2026-05-01 10:07+00', id, 'mms', 'android', '{"link": "promo"}' FROM d;
SELECT c.event_type, p.event_type AS parent_type, c.channel, c.device_type, c.metadata
  FROM engagement.engagement_events c JOIN engagement.engagement_events p ON p.id = c.parent_event_id
 WHERE c.contact_id = 900001;
DELETE FROM engagement.engagement_events WHERE contact_id = 900001 AND event_type = 'delivered';
SELECT event_type, parent_event_id FROM engagement.engagement_events WHERE contact_id = 900001;
DELETE FROM engagement.engagement_events WHERE contact_id = 900001;

-- Profiles: every parameter is checked.
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, weight_recency) VALUES ('w', 0.5)$$) AS weights_not_one;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, half_life_days) VALUES ('h', 0)$$) AS half_life_zero;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, half_life_days) VALUES ('h', 'NaN')$$) AS half_life_nan;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, lookback_days) VALUES ('l', 'Infinity')$$) AS lookback_infinite;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, recency_tau_days) VALUES ('t', -1)$$) AS tau_negative;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, opt_out_penalty) VALUES ('p', 1.5)$$) AS penalty_above_one;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, model_alpha) VALUES ('m', 0)$$) AS alpha_zero;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, frequency_min_days, lookback_days) VALUES ('f', 30, 20)$$) AS min_days_over_lookback;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, decay_weight_opened) VALUES ('d', '-Infinity')$$) AS decay_weight_infinite;
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name) VALUES ('')$$) AS empty_name;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET weight_recency = 0.31 WHERE name = 'default'$$) AS update_breaks_sum;
-- Weights that sum to 1 within floating point are accepted.
INSERT INTO engagement.scoring_profiles (name, weight_recency, weight_frequency, weight_monetary, weight_time_decay, weight_diversity)
VALUES ('thirds', 0.1, 0.2, 0.3, 0.2, 0.2);
SELECT name, version FROM engagement.scoring_profiles WHERE name = 'thirds';
-- Updates bump the version; an update that changes nothing does not.
UPDATE engagement.scoring_profiles SET half_life_days = 7 WHERE name = 'thirds';
UPDATE engagement.scoring_profiles SET half_life_days = 7 WHERE name = 'thirds';
UPDATE engagement.scoring_profiles SET description = 'test profile' WHERE name = 'thirds';
SELECT name, version FROM engagement.scoring_profiles WHERE name = 'thirds';
-- (both times, if the profile's updated_at is before its created_at)
SELECT name, created_at, updated_at FROM engagement.scoring_profiles
 WHERE name = 'thirds' AND (updated_at >= created_at) IS NOT TRUE;
-- A second `default` while the built-in one is untouched replaces it (what pg_restore relies on);
-- once changed, a duplicate is an error as usual.
BEGIN;
INSERT INTO engagement.scoring_profiles (name, description, half_life_days) VALUES ('default', 'restored', 21);
SELECT name, description, half_life_days, version FROM engagement.scoring_profiles WHERE name = 'default';
ROLLBACK;
BEGIN;
UPDATE engagement.scoring_profiles SET description = 'changed' WHERE name = 'default';
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name) VALUES ('default')$$) AS duplicate_default;
ROLLBACK;
DELETE FROM engagement.scoring_profiles WHERE name = 'thirds';

-- Score tables: constraints in place.  A valid score but for one column each.
SELECT v.what, ref.sqlstate_of(format($$INSERT INTO engagement.engagement_scores (profile, contact_id, composite, recency,
    frequency, monetary, time_decay, diversity, engagement_probability, conversion_probability, churn_risk, segment,
    opted_out, event_count, engaging_count, conversion_total, first_event_at, profile_version, model_version,
    calculated_at, expected_value_30d)
    VALUES (%L, 1, %s, 0, 0, 0, 0, 0, 0, 0, 0, %L, false, 1, 0, 0, now(), 1, 2, now(), %s)$$,
    v.profile, v.composite, v.segment, v.expected_value)) AS error
  FROM (VALUES ('composite_over_100', 'default', 101, 'lost', 0),
               ('unknown_segment', 'default', 1, 'sleepy', 0),
               ('unknown_profile', 'nope', 1, 'lost', 0),
               ('negative_value', 'default', 1, 'lost', -1)) v(what, profile, composite, segment, expected_value);
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, gg_q) VALUES ('gg', 1)$$) AS gg_q_not_above_1,
       ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, fit_penalizer) VALUES ('gg', -0.1)$$) AS negative_penalizer;

-- The user data is registered for pg_dump.
SELECT c.dumped, c.condition
  FROM pg_extension e, unnest(e.extconfig::regclass[], e.extcondition) AS c(dumped, condition)
 WHERE e.extname = 'engagement_scoring' ORDER BY c.dumped::text;
