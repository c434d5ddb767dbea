-- refresh: refresh_scores (full, incremental on insert/update/delete/COPY, age, profile change),
-- percentiles, history and trends, staleness, cached scores, segment summaries.
-- Scores are as of now(): every check compares with values computed here, never with literals.
SELECT extversion FROM pg_extension WHERE extname = 'engagement_scoring';
-- Every stored score of the default profile against the live score as of its calculated_at: the
-- fields that differ (floats beyond ref.close, the others exactly), one row each; a live score
-- missing differs in all.  Stored scores also say the model version that computed them.
CREATE TEMP VIEW stored_vs_live AS
    SELECT s.contact_id, d.field, d.expected AS stored, d.got AS live
      FROM engagement.engagement_scores s,
           LATERAL ref.score_mismatches(
               engagement.engagement_score(s.contact_id, s.calculated_at, s.profile),
               ref.as_score(s)) d
     WHERE s.profile = 'default'
    UNION ALL
    SELECT s.contact_id, 'model_version', s.model_version::text, engagement.model_version()::text
      FROM engagement.engagement_scores s
     WHERE s.profile = 'default' AND s.model_version <> engagement.model_version();

-- A full refresh scores every contact with events, exactly as the live function does.
-- (both numbers if the refresh scored another number of contacts than have events)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores() AS refreshed)
SELECT r.refreshed, c.contacts_with_events
  FROM r, (SELECT count(DISTINCT contact_id) AS contacts_with_events FROM engagement.engagement_events
            WHERE occurred_at <= now()) c
 WHERE (r.refreshed = c.contacts_with_events) IS NOT TRUE;
SELECT * FROM stored_vs_live ORDER BY contact_id, field;
SELECT min(score_version), max(score_version), count(DISTINCT calculated_at) AS refreshes,
       min(profile_version) AS min_profile_version, max(profile_version) AS max_profile_version
  FROM engagement.engagement_scores;
-- percentile_rank = 100 * percent_rank() of the composite: the contacts where it is not.
SELECT s.contact_id, s.composite, s.percentile_rank AS stored, r.pr AS expected
  FROM engagement.engagement_scores s
  JOIN (SELECT contact_id, 100 * percent_rank() OVER (ORDER BY composite) AS pr
          FROM engagement.engagement_scores WHERE profile = 'default') r USING (contact_id)
 WHERE NOT ref.close(s.percentile_rank, r.pr)
 ORDER BY s.contact_id;
-- score_percentile() agrees: the scores where it does not.
SELECT v.score, p.got, p.expected
  FROM unnest(ARRAY[-1, 0, 0.5, 10, 33.3, 50, 75, 99.9, 100, 1000]::float8[]) v(score),
       LATERAL (SELECT engagement.score_percentile(v.score) AS got,
                       (SELECT 100 * percent_rank(v.score) WITHIN GROUP (ORDER BY composite)
                          FROM engagement.engagement_scores WHERE profile = 'default') AS expected) p
 WHERE NOT ref.close(p.got, p.expected)
 ORDER BY v.score;
-- Every first score is in the history, once, without a previous value: the scores and history
-- rows for which that is not so.
SELECT profile, contact_id, s.contact_id IS NOT NULL AS scored, coalesce(h.history_rows, 0) AS history_rows,
       h.with_previous
  FROM engagement.engagement_scores s
  FULL JOIN (SELECT profile, contact_id, count(*) AS history_rows, count(previous_composite) AS with_previous
               FROM engagement.engagement_score_history GROUP BY profile, contact_id) h USING (profile, contact_id)
 WHERE s.contact_id IS NULL OR h.history_rows IS DISTINCT FROM 1 OR h.with_previous > 0
 ORDER BY 1, 2;

-- Nothing changed: nothing to do.
SELECT engagement.refresh_scores() AS nothing_changed;

-- Insert: an existing contact and a new one.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
VALUES (5, 'converted', now() - interval '1 hour', 250), (900001, 'opened', now() - interval '2 hours', NULL);
SELECT contact_id, is_stale FROM engagement.contact_scores WHERE contact_id IN (5, 6) ORDER BY 1;
SELECT engagement.refresh_scores() AS after_insert;
SELECT contact_id, score_version, is_stale FROM engagement.contact_scores WHERE contact_id IN (5, 6, 900001) ORDER BY 1;
SELECT * FROM stored_vs_live ORDER BY contact_id, field;
-- Contact 5's conversion moved its score by more than history_min_delta: a history row with the previous value.
CREATE TEMP VIEW last_history_of_5 AS
    SELECT * FROM engagement.engagement_score_history WHERE contact_id = 5 ORDER BY id DESC LIMIT 1;
SELECT contact_id, score_version FROM last_history_of_5;
-- (the row, if its previous value is missing or less than 1 away)
SELECT contact_id, composite, previous_composite FROM last_history_of_5
 WHERE (previous_composite IS NOT NULL AND abs(composite - previous_composite) >= 1) IS NOT TRUE;

-- Update: what the model reads makes a contact stale; metadata does not.
UPDATE engagement.engagement_events SET metadata = '{"note": "seen"}' WHERE contact_id = 7;
SELECT engagement.refresh_scores() AS after_metadata_update;
UPDATE engagement.engagement_events SET event_type = 'clicked'
 WHERE id = (SELECT min(id) FROM engagement.engagement_events WHERE contact_id = 7 AND event_type = 'delivered');
SELECT engagement.refresh_scores() AS after_type_update;
-- Moving an event to another contact rescored both.
UPDATE engagement.engagement_events SET contact_id = 10
 WHERE id = (SELECT min(id) FROM engagement.engagement_events WHERE contact_id = 9);
SELECT engagement.refresh_scores() AS after_contact_move;

-- Delete: a contact with no events left loses its score.
DELETE FROM engagement.engagement_events WHERE contact_id = 900001;
SELECT engagement.refresh_scores() AS after_delete_all;
SELECT count(*) AS scores_of_deleted_contact FROM engagement.engagement_scores WHERE contact_id = 900001;
DELETE FROM engagement.engagement_events WHERE id = (SELECT max(id) FROM engagement.engagement_events WHERE contact_id = 11);
SELECT engagement.refresh_scores() AS after_delete_one;

-- COPY: bulk ingest is tracked too.
CREATE TEMP TABLE copied (contact_id bigint, event_type engagement.event_type, minutes_ago int);
COPY copied FROM STDIN;
12	opened	5
13	clicked	50
13	responded	40
900002	delivered	30
\.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT contact_id, event_type, now() - minutes_ago * interval '1 minute' FROM copied;
SELECT engagement.refresh_scores() AS after_bulk_insert;
\copy engagement.engagement_events (contact_id, event_type, occurred_at) FROM STDIN
14	opened	2026-01-01 00:00:00+00
900003	opened	2026-01-02 00:00:00+00
\.
SELECT engagement.refresh_scores() AS after_copy;
SELECT count(*) AS copied_contact_scored FROM engagement.engagement_scores WHERE contact_id = 900003;
SELECT * FROM stored_vs_live ORDER BY contact_id, field;

-- Age: scores older than max_score_age are rescored even without new events.  Ageing simulated by
-- moving these scores, and the refresh's record of its oldest score, 25 hours back.
UPDATE engagement.engagement_scores SET calculated_at = calculated_at - interval '25 hours' WHERE contact_id <= 20;
UPDATE engagement.score_distributions SET oldest_score_at = oldest_score_at - interval '25 hours';
SELECT count(*) AS stale_by_age FROM engagement.contact_scores WHERE is_stale;
SELECT engagement.refresh_scores() AS after_ageing;
SELECT count(*) AS stale_after FROM engagement.contact_scores WHERE is_stale;

-- Scores of an older model version (as ALTER EXTENSION ... UPDATE to 1.4 leaves them: model
-- version 1, their distribution too) are stale, and the next incremental refresh rescores everyone.
UPDATE engagement.engagement_scores SET model_version = 1;
UPDATE engagement.score_distributions SET model_version = 1;
SELECT count(*) FILTER (WHERE is_stale) AS stale, count(*) AS scores FROM engagement.contact_scores;
-- (both numbers if the refresh rescored another number than there are scores)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores() AS rescored)
SELECT r.rescored, c.scores
  FROM r, (SELECT count(*) AS scores FROM engagement.engagement_scores) c
 WHERE (r.rescored = c.scores) IS NOT TRUE;
SELECT engagement.model_version(), count(*) FILTER (WHERE s.model_version <> engagement.model_version()) AS old_version,
       count(*) FILTER (WHERE is_stale) AS stale_after
  FROM engagement.contact_scores s;

-- A profile change rescores everyone (and the history threshold is honoured).
UPDATE engagement.scoring_profiles SET history_min_delta = 1000 WHERE name = 'default';
-- (the scores not stale after the change)
SELECT profile, contact_id, is_stale FROM engagement.contact_scores WHERE is_stale IS NOT TRUE ORDER BY 1, 2;
-- (both numbers if the refresh rescored another number than there are scores)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores() AS rescored)
SELECT r.rescored, c.scores
  FROM r, (SELECT count(*) AS scores FROM engagement.engagement_scores) c
 WHERE (r.rescored = c.scores) IS NOT TRUE;
SELECT count(DISTINCT profile_version) AS profile_versions, min(profile_version) AS profile_version
  FROM engagement.engagement_scores;
-- full => true rescores everything as well; with a huge threshold only segment changes are recorded.
CREATE TEMP TABLE history_before AS SELECT max(id) AS last_id FROM engagement.engagement_score_history;
-- (both numbers if the full refresh rescored another number than there are scores)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores('default', true) AS rescored)
SELECT r.rescored, c.scores
  FROM r, (SELECT count(*) AS scores FROM engagement.engagement_scores) c
 WHERE (r.rescored = c.scores) IS NOT TRUE;
-- (the history rows it wrote without a change of segment)
SELECT h.contact_id, h.segment, h.previous_segment, h.composite, h.previous_composite
  FROM engagement.engagement_score_history h
 WHERE h.id > (SELECT last_id FROM history_before) AND h.segment = h.previous_segment
 ORDER BY h.id;
UPDATE engagement.scoring_profiles SET history_min_delta = 1 WHERE name = 'default';
-- (the number rescored, if not positive)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores() AS rescored_after_reset)
SELECT rescored_after_reset FROM r WHERE (rescored_after_reset > 0) IS NOT TRUE;

-- A second profile is refreshed independently, and changes reach both.
-- (both numbers if the second profile's first refresh scored another number than the default has)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores('recency_only') AS second_profile)
SELECT r.second_profile, c.default_scores
  FROM r, (SELECT count(*) AS default_scores FROM engagement.engagement_scores WHERE profile = 'default') c
 WHERE (r.second_profile = c.default_scores) IS NOT TRUE;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (15, 'responded', now() - interval '1 minute');
SELECT engagement.refresh_scores('recency_only') AS second_profile_picks_up, engagement.refresh_scores() AS default_picks_up;

-- An event after the refresh's as_of (dated in the future, or committed after the refresh began)
-- is not scored yet, and its contact stays pending until it is.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (18, 'clicked', now() + interval '1 hour');
SELECT engagement.refresh_scores() AS rescored_with_future_event;
-- (the score, if it took the future event in)
SELECT contact_id, last_engaged_at AS future_event_scored FROM engagement.engagement_scores
 WHERE profile = 'default' AND contact_id = 18 AND last_engaged_at > now();
SELECT is_stale AS still_pending FROM engagement.contact_scores WHERE profile = 'default' AND contact_id = 18;
DELETE FROM engagement.engagement_events WHERE contact_id = 18 AND occurred_at > now();
SELECT engagement.refresh_scores() AS after_future_event_removed;

-- Weights that sum to 1 within rounding can put a composite a hair above 100: stored as it is.
INSERT INTO engagement.scoring_profiles (name, weight_recency, weight_frequency, weight_monetary, weight_time_decay,
                                         weight_diversity)
VALUES ('heavy', 0, 0.56, 0.28, 0.16, 0);
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT 910000, 'converted', now() - i * interval '1 hour', 5000 FROM generate_series(1, 200) i;
-- (the number refreshed, if not positive)
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores('heavy') AS heavy_refreshed)
SELECT heavy_refreshed FROM r WHERE (heavy_refreshed > 0) IS NOT TRUE;
-- (the stored composite, if it is not in (100, 100 + 1e-9); none if the contact has no score)
SELECT c.contact_id, s.composite
  FROM (VALUES (910000::bigint)) c(contact_id)
  LEFT JOIN engagement.engagement_scores s ON s.profile = 'heavy' AND s.contact_id = c.contact_id
 WHERE (s.composite > 100 AND s.composite - 100 < 1e-9) IS NOT TRUE;
DELETE FROM engagement.engagement_events WHERE contact_id = 910000;
DELETE FROM engagement.scoring_profiles WHERE name = 'heavy';

-- cached_score: the stored score while fresh, a live one when stale.
-- Each check below lists (what, got, expected) when got = expected is not true.
SELECT v.what, v.got, v.expected
  FROM (VALUES ('cached_score(16).as_of: the stored calculated_at', (engagement.cached_score(16)).as_of::text,
                (SELECT calculated_at FROM engagement.engagement_scores WHERE profile = 'default' AND contact_id = 16)::text)
       ) v(what, got, expected)
 WHERE (v.got = v.expected) IS NOT TRUE;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (16, 'clicked', now() - interval '1 minute');
SELECT v.what, v.got, v.expected
  FROM (VALUES ('cached_score(16).as_of when stale: now()', (engagement.cached_score(16)).as_of::text, now()::text),
               ('cached_score(16).engaging_count when stale: live', (engagement.cached_score(16)).engaging_count::text,
                (SELECT count(*) FROM engagement.engagement_events
                  WHERE contact_id = 16 AND event_type IN ('opened', 'clicked', 'responded', 'converted')
                    AND occurred_at <= now())::text),
               ('cached_score(17, 0 seconds).as_of: now()', (engagement.cached_score(17, interval '0 seconds')).as_of::text,
                now()::text)) v(what, got, expected)
 WHERE (v.got = v.expected) IS NOT TRUE;
-- (a score of an unknown contact, if any)
SELECT q.c AS unknown_contact FROM (SELECT engagement.cached_score(-1) AS c) q WHERE NOT (q.c IS NULL);
SELECT engagement.refresh_scores() AS before_summary;

-- segment_summary agrees with a GROUP BY of the table: its totals (the ones that do not add up),
SELECT v.what, v.got, v.test, v.expected
  FROM (SELECT sum(contacts) AS contacts, sum(share) AS shares FROM engagement.segment_summary()) m,
       LATERAL (VALUES ('contacts', m.contacts::float8, '=',
                        (SELECT count(*) FROM engagement.engagement_scores WHERE profile = 'default')::float8),
                       ('shares', m.shares, '~', 1)) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
-- and each segment (the segments that differ).
SELECT segment, m.contacts AS summary_contacts, g.contacts AS group_by_contacts,
       m.mean_score AS summary_mean, g.mean_score AS group_by_mean
  FROM engagement.segment_summary() m
  FULL JOIN (SELECT segment, count(*) AS contacts, avg(composite) AS mean_score FROM engagement.engagement_scores
              WHERE profile = 'default' GROUP BY segment) g USING (segment)
 WHERE m.contacts IS DISTINCT FROM g.contacts OR NOT ref.close(m.mean_score, g.mean_score)
 ORDER BY segment;

-- score_trend on a known history (profile 'trend', inserted by hand).
INSERT INTO engagement.scoring_profiles (name) VALUES ('trend');
INSERT INTO engagement.engagement_score_history (profile, contact_id, composite, segment, score_version, recorded_at)
VALUES ('trend', 1, 10, 'lost', 1, '2026-01-01'), ('trend', 1, 20, 'lost', 2, '2026-01-02'),
       ('trend', 1, 30, 'lost', 3, '2026-01-03'), ('trend', 1, 40, 'lost', 4, '2026-01-05'),
       ('trend', 2, 50, 'lost', 1, '2026-01-01'), ('trend', 2, 45, 'lost', 2, '2026-01-11'),
       ('trend', 3, 50, 'lost', 1, '2026-01-01'), ('trend', 3, 50.5, 'lost', 2, '2026-01-11');
SELECT c, round(t.slope_per_day::numeric, 6) AS slope, t.change, t.direction, t.points
  FROM generate_series(1, 4) c, engagement.score_trend(c, '2025-12-31', 'trend') t ORDER BY c;
-- slope of 10, 20, 30, 40 at days 0, 1, 2, 4: least squares by hand
SELECT 'slope_per_day' AS what, v.got, '~' AS test, v.expected
  FROM (SELECT (engagement.score_trend(1, '2025-01-01', 'trend')).slope_per_day AS got,
               (4 * (0*10 + 1*20 + 2*30 + 4*40) - (0+1+2+4) * (10+20+30+40))::float8
               / (4 * (0+1+4+16) - (0+1+2+4)^2) AS expected) v
 WHERE ref.fails(v.got, '~', v.expected);
SELECT t.change, t.points FROM engagement.score_trend(1, '2026-01-02', 'trend') t;

-- Bad input.
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('no_such_profile')$$) AS refresh_unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.score_percentile('NaN')$$) AS percentile_nan;
SELECT ref.sqlstate_of($$SELECT engagement.score_percentile(1, 'no_such_profile')$$) AS percentile_unknown_profile;
-- (the percentile of a never refreshed profile, if it is not NULL)
SELECT p AS never_refreshed FROM (SELECT engagement.score_percentile(1, 'trend') AS p) q WHERE p IS NOT NULL;
SELECT ref.sqlstate_of($$SELECT engagement.segment_summary('no_such_profile')$$) AS summary_unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.score_trend(1, now(), 'no_such_profile')$$) AS trend_unknown_profile;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET max_score_age = '-1 hour' WHERE name = 'trend'$$) AS negative_max_age;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET history_min_delta = 'NaN' WHERE name = 'trend'$$) AS nan_delta;
