-- refresh_switch: an incremental refresh with more contacts to rescore than
-- engagement.incremental_max_fraction (a setting; refresh.sql has its default) of the profile's scored contacts runs as a
-- full one, and refresh_runs says which ran and why (mode_reason).  Two profiles of the same
-- parameters over the same events, one refreshed past the fraction (full), the other kept
-- incremental (the setting 1): the same stored scores and history, and their pending sets consumed.
-- In one transaction (one now(): every refresh scores as of the same time), rolled back at the end.
BEGIN;
INSERT INTO engagement.scoring_profiles (name) VALUES ('switch_a'), ('switch_b');
SELECT engagement.refresh_scores('switch_a') > 0 AS a_scored, engagement.refresh_scores('switch_b') > 0 AS b_scored;
CREATE TEMP TABLE switch_contacts AS
SELECT contact_id, row_number() OVER (ORDER BY contact_id) AS i FROM engagement.engagement_scores WHERE profile = 'switch_a';
-- (the runs of this test, numbers of contacts written as n and m: the counts follow)
CREATE FUNCTION pg_temp.runs() RETURNS TABLE (profile text, mode text, mode_reason text, contacts_rescored bigint)
LANGUAGE sql AS $$
    SELECT r.profile, r.mode, regexp_replace(r.mode_reason, '^\d+ of \d+ ', 'n of m '), r.contacts_rescored
      FROM engagement.refresh_runs r WHERE r.profile LIKE 'switch%' ORDER BY r.id
$$;
SELECT profile, mode, mode_reason FROM pg_temp.runs();

-- A few contacts with new events (3 of about 3,000): incremental, for each profile.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT contact_id, 'clicked', now() - interval '1 hour' FROM switch_contacts WHERE i <= 3;
SELECT engagement.refresh_scores('switch_a') AS a_rescored, engagement.refresh_scores('switch_b') AS b_rescored;
SELECT * FROM pg_temp.runs() OFFSET 2;
SELECT r.mode_reason = format('3 of %s contacts to rescore: at most %s', (SELECT count(*) FROM switch_contacts),
                              engagement._incremental_max_fraction()) AS reason_counts
  FROM engagement.refresh_runs r WHERE r.profile = 'switch_a' ORDER BY r.id DESC LIMIT 1;

-- Nine contacts in ten with new events: switch_a runs full, switch_b (the setting 1) incremental.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT contact_id, CASE WHEN i % 2 = 0 THEN 'converted' ELSE 'opened' END::engagement.event_type,
       now() - interval '2 hours', CASE WHEN i % 2 = 0 THEN 12.5 END
  FROM switch_contacts WHERE i % 10 <> 0;
SELECT engagement.refresh_scores('switch_a') = (SELECT count(*) FROM switch_contacts) AS a_rescored_all;
SET LOCAL engagement.incremental_max_fraction = 1;
SELECT engagement.refresh_scores('switch_b') = (SELECT count(*) FROM switch_contacts WHERE i % 10 <> 0) AS b_rescored_changed;
RESET engagement.incremental_max_fraction;
SELECT * FROM pg_temp.runs() OFFSET 4;
SELECT r.mode_reason = format('%s of %s contacts to rescore: above %s', (SELECT count(*) FROM switch_contacts WHERE i % 10 <> 0),
                              (SELECT count(*) FROM switch_contacts), engagement._incremental_max_fraction()) AS reason_counts
  FROM engagement.refresh_runs r WHERE r.profile = 'switch_a' ORDER BY r.id DESC LIMIT 1;
-- The stored scores, field by field, and the history: the same for both profiles; nothing left
-- pending.  (But score_version, as a full refresh writes every row, and the percentile_rank of the
-- contacts the incremental refresh did not rescore, which keep the percentile of their last scoring
-- until the next full refresh, as the README says: the rescored ones' are compared, to 1e-9: an
-- incremental refresh computes 100 * rank / (n - 1) in numeric, a full one in float8 as
-- percent_rank() does, which can differ in the last bit.)
SELECT count(*) AS scores,
       count(*) FILTER (WHERE (to_jsonb(a) - 'profile' - 'score_version' - 'percentile_rank')
                              IS DISTINCT FROM (to_jsonb(b) - 'profile' - 'score_version' - 'percentile_rank')) AS differing,
       count(*) FILTER (WHERE c.i % 10 <> 0) AS rescored_by_both,
       count(*) FILTER (WHERE c.i % 10 <> 0 AND NOT abs(a.percentile_rank - b.percentile_rank) <= 1e-9) AS differing_percentiles
  FROM engagement.engagement_scores a FULL JOIN engagement.engagement_scores b
    ON b.profile = 'switch_b' AND b.contact_id = a.contact_id
  LEFT JOIN switch_contacts c ON c.contact_id = a.contact_id
 WHERE a.profile = 'switch_a';
SELECT (SELECT count(*) FROM engagement.engagement_score_history WHERE profile = 'switch_a') AS a_history,
       (SELECT count(*) FROM engagement.engagement_score_history WHERE profile = 'switch_b') AS b_history,
       (SELECT count(*) FROM ((SELECT contact_id, composite, segment, previous_composite, previous_segment, recorded_at
                                 FROM engagement.engagement_score_history WHERE profile = 'switch_a'
                               EXCEPT ALL
                               SELECT contact_id, composite, segment, previous_composite, previous_segment, recorded_at
                                 FROM engagement.engagement_score_history WHERE profile = 'switch_b')
                              UNION ALL
                              (SELECT contact_id, composite, segment, previous_composite, previous_segment, recorded_at
                                 FROM engagement.engagement_score_history WHERE profile = 'switch_b'
                               EXCEPT ALL
                               SELECT contact_id, composite, segment, previous_composite, previous_segment, recorded_at
                                 FROM engagement.engagement_score_history WHERE profile = 'switch_a')) d) AS history_differing,
       (SELECT count(*) FROM engagement.pending_rescore WHERE profile LIKE 'switch%') AS pending;

-- The setting at its bounds: 0 makes any change a full refresh, a value out of 0..1 is refused
-- before the refresh does anything.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT contact_id, 'clicked', now() - interval '3 hours' FROM switch_contacts WHERE i = 1;
SET LOCAL engagement.incremental_max_fraction = 0;
SELECT engagement.refresh_scores('switch_a') = (SELECT count(*) FROM switch_contacts) AS a_rescored_all;
SET LOCAL engagement.incremental_max_fraction = 1.5;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('switch_b')$$) AS above_one;
SET LOCAL engagement.incremental_max_fraction = 'a fifth';
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('switch_b')$$) AS not_a_number;
RESET engagement.incremental_max_fraction;
-- A full refresh asked for, and one after a profile change, say so.
SELECT engagement.refresh_scores('switch_b', true) IS NOT NULL AS b_full;
UPDATE engagement.scoring_profiles SET half_life_days = half_life_days + 1 WHERE name = 'switch_b';
SELECT engagement.refresh_scores('switch_b') IS NOT NULL AS b_changed;
SELECT profile, mode, mode_reason FROM pg_temp.runs() OFFSET 6;
ROLLBACK;
