-- refresh: refresh_scores (full, incremental on insert/update/delete/COPY, age, profile change),
-- percentiles, history and trends, staleness, cached scores, segment summaries.
-- Scores are as of now(): every check compares with values computed here, never with literals.
SELECT extversion FROM pg_extension WHERE extname = 'engagement_scoring';
CREATE TEMP VIEW stored_vs_live AS
    SELECT s.contact_id,
           ref.differences(engagement.engagement_score(s.contact_id, s.calculated_at, s.profile),
                           ROW(s.composite, s.recency, s.frequency, s.monetary, s.time_decay, s.diversity,
                               s.engagement_probability, s.conversion_probability, s.churn_risk, s.segment,
                               s.opted_out, s.event_count, s.engaging_count)::ref.score) AS differences
      FROM engagement.engagement_scores s WHERE s.profile = 'default';

-- A full refresh scores every contact with events, exactly as the live function does.
SELECT engagement.refresh_scores() = (SELECT count(DISTINCT contact_id) FROM engagement.engagement_events
                                       WHERE occurred_at <= now()) AS every_contact_scored;
SELECT count(*) FILTER (WHERE cardinality(differences) > 0) AS stored_differing_from_live FROM stored_vs_live;
SELECT min(score_version), max(score_version), count(DISTINCT calculated_at) AS refreshes,
       bool_and(profile_version = 1) AS profile_version_recorded
  FROM engagement.engagement_scores;
-- percentile_rank = 100 * percent_rank() of the composite, and score_percentile() agrees.
SELECT count(*) AS percentile_mismatches
  FROM engagement.engagement_scores s
  JOIN (SELECT contact_id, 100 * percent_rank() OVER (ORDER BY composite) AS pr
          FROM engagement.engagement_scores WHERE profile = 'default') r USING (contact_id)
 WHERE NOT ref.close(s.percentile_rank, r.pr);
SELECT x, ref.close(engagement.score_percentile(x),
                    (SELECT 100 * percent_rank(x) WITHIN GROUP (ORDER BY composite)
                       FROM engagement.engagement_scores WHERE profile = 'default')) AS same
  FROM unnest(ARRAY[-1, 0, 0.5, 10, 33.3, 50, 75, 99.9, 100, 1000]::float8[]) x;
-- Every first score is in the history.
SELECT count(*) = (SELECT count(*) FROM engagement.engagement_scores) AS baseline_history,
       bool_and(previous_composite IS NULL) AS no_previous
  FROM engagement.engagement_score_history;

-- Nothing changed: nothing to do.
SELECT engagement.refresh_scores() AS nothing_changed;

-- Insert: an existing contact and a new one.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
VALUES (5, 'converted', now() - interval '1 hour', 250), (900001, 'opened', now() - interval '2 hours', NULL);
SELECT contact_id, is_stale FROM engagement.contact_scores WHERE contact_id IN (5, 6) ORDER BY 1;
SELECT engagement.refresh_scores() AS after_insert;
SELECT contact_id, score_version, is_stale FROM engagement.contact_scores WHERE contact_id IN (5, 6, 900001) ORDER BY 1;
SELECT count(*) FILTER (WHERE cardinality(differences) > 0) AS stored_differing_from_live FROM stored_vs_live;
-- Contact 5's conversion moved its score by more than history_min_delta: a history row with the previous value.
SELECT h.contact_id, h.previous_composite IS NOT NULL AS has_previous, abs(h.composite - h.previous_composite) >= 1 AS moved,
       h.score_version
  FROM engagement.engagement_score_history h WHERE contact_id = 5 ORDER BY id DESC LIMIT 1;

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
SELECT count(*) FILTER (WHERE cardinality(differences) > 0) AS stored_differing_from_live FROM stored_vs_live;

-- Age: scores older than max_score_age are rescored even without new events.  Ageing simulated by
-- moving these scores, and the refresh's record of its oldest score, 25 hours back.
UPDATE engagement.engagement_scores SET calculated_at = calculated_at - interval '25 hours' WHERE contact_id <= 20;
UPDATE engagement.score_distributions SET oldest_score_at = oldest_score_at - interval '25 hours';
SELECT count(*) AS stale_by_age FROM engagement.contact_scores WHERE is_stale;
SELECT engagement.refresh_scores() AS after_ageing;
SELECT count(*) AS stale_after FROM engagement.contact_scores WHERE is_stale;

-- A profile change rescores everyone (and the history threshold is honoured).
UPDATE engagement.scoring_profiles SET history_min_delta = 1000 WHERE name = 'default';
SELECT count(*) = (SELECT count(*) FROM engagement.engagement_scores) AS all_stale_after_profile_change
  FROM engagement.contact_scores WHERE is_stale;
SELECT engagement.refresh_scores() = (SELECT count(*) FROM engagement.engagement_scores) AS all_rescored;
SELECT count(DISTINCT profile_version) AS profile_versions, min(profile_version) AS profile_version
  FROM engagement.engagement_scores;
-- full => true rescores everything as well; with a huge threshold only segment changes are recorded.
CREATE TEMP TABLE history_before AS SELECT max(id) AS last_id FROM engagement.engagement_score_history;
SELECT engagement.refresh_scores('default', true) = (SELECT count(*) FROM engagement.engagement_scores) AS full_refresh;
SELECT count(*) FILTER (WHERE h.segment = h.previous_segment) AS history_rows_without_reason
  FROM engagement.engagement_score_history h WHERE h.id > (SELECT last_id FROM history_before);
UPDATE engagement.scoring_profiles SET history_min_delta = 1 WHERE name = 'default';
SELECT engagement.refresh_scores() > 0 AS rescored_after_reset;

-- A second profile is refreshed independently, and changes reach both.
SELECT engagement.refresh_scores('recency_only') = (SELECT count(*) FROM engagement.engagement_scores WHERE profile = 'default') AS second_profile;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (15, 'responded', now() - interval '1 minute');
SELECT engagement.refresh_scores('recency_only') AS second_profile_picks_up, engagement.refresh_scores() AS default_picks_up;

-- An event after the refresh's as_of (dated in the future, or committed after the refresh began)
-- is not scored yet, and its contact stays pending until it is.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (18, 'clicked', now() + interval '1 hour');
SELECT engagement.refresh_scores() AS rescored_with_future_event;
SELECT count(*) AS future_event_scored FROM engagement.engagement_scores
 WHERE profile = 'default' AND contact_id = 18 AND last_engaged_at > now();
SELECT is_stale AS still_pending FROM engagement.contact_scores WHERE profile = 'default' AND contact_id = 18;
DELETE FROM engagement.engagement_events WHERE contact_id = 18 AND occurred_at > now();
SELECT engagement.refresh_scores() AS after_future_event_removed;

-- Weights that sum to 1 within rounding can put a composite a hair above 100: stored as it is.
INSERT INTO engagement.scoring_profiles (name, weight_recency, weight_frequency, weight_monetary, weight_time_decay,
                                         weight_diversity)
VALUES ('heavy', 0, 0.56, 0.28, 0.16, 0);
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT 910000, 'converted', now() - i * interval '1 hour', 5000 FROM generate_series(1, 40) i;
SELECT engagement.refresh_scores('heavy') > 0 AS heavy_refreshed;
SELECT composite > 100 AS above_100_by_rounding, composite - 100 < 1e-9 AS by_rounding_only
  FROM engagement.engagement_scores WHERE profile = 'heavy' AND contact_id = 910000;
DELETE FROM engagement.engagement_events WHERE contact_id = 910000;
DELETE FROM engagement.scoring_profiles WHERE name = 'heavy';

-- cached_score: the stored score while fresh, a live one when stale.
SELECT (engagement.cached_score(16)).as_of = (SELECT calculated_at FROM engagement.engagement_scores WHERE profile = 'default' AND contact_id = 16) AS from_table;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (16, 'clicked', now() - interval '1 minute');
SELECT (engagement.cached_score(16)).as_of = now() AS live_when_stale,
       (engagement.cached_score(16)).engaging_count = (SELECT count(*) FROM engagement.engagement_events
                                                        WHERE contact_id = 16 AND event_type IN ('opened', 'clicked', 'responded', 'converted')
                                                          AND occurred_at <= now()) AS live_counts;
SELECT (engagement.cached_score(17, interval '0 seconds')).as_of = now() AS live_when_older_than_max_age;
SELECT engagement.cached_score(-1) IS NULL AS unknown_contact;
SELECT engagement.refresh_scores() AS before_summary;

-- segment_summary agrees with a GROUP BY of the table.
SELECT sum(contacts) = (SELECT count(*) FROM engagement.engagement_scores WHERE profile = 'default') AS all_contacts,
       ref.close(sum(share), 1) AS shares_sum_to_one
  FROM engagement.segment_summary();
SELECT count(*) AS summary_mismatches
  FROM engagement.segment_summary() m
  FULL JOIN (SELECT segment, count(*) AS contacts, avg(composite) AS mean_score FROM engagement.engagement_scores
              WHERE profile = 'default' GROUP BY segment) g USING (segment)
 WHERE m.contacts IS DISTINCT FROM g.contacts OR NOT ref.close(m.mean_score, g.mean_score);

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
SELECT ref.close((engagement.score_trend(1, '2025-01-01', 'trend')).slope_per_day,
                 (4 * (0*10 + 1*20 + 2*30 + 4*40) - (0+1+2+4) * (10+20+30+40))::float8
                 / (4 * (0+1+4+16) - (0+1+2+4)^2)) AS slope_by_hand;
SELECT t.change, t.points FROM engagement.score_trend(1, '2026-01-02', 'trend') t;

-- Bad input.
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('no_such_profile')$$) AS refresh_unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.score_percentile('NaN')$$) AS percentile_nan;
SELECT ref.sqlstate_of($$SELECT engagement.score_percentile(1, 'no_such_profile')$$) AS percentile_unknown_profile;
SELECT engagement.score_percentile(1, 'trend') IS NULL AS never_refreshed;
SELECT ref.sqlstate_of($$SELECT engagement.segment_summary('no_such_profile')$$) AS summary_unknown_profile;
SELECT ref.sqlstate_of($$SELECT engagement.score_trend(1, now(), 'no_such_profile')$$) AS trend_unknown_profile;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET max_score_age = '-1 hour' WHERE name = 'trend'$$) AS negative_max_age;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET history_min_delta = 'NaN' WHERE name = 'trend'$$) AS nan_delta;
