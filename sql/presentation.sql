-- presentation: the nested funnel (hand-counted, and against a plain-SQL computation on data where
-- independent counts give rates above 1), the rounded reads (equal to round() of the raw values),
-- and score_histogram.  Everything happens in one transaction rolled back at the end, so the tests
-- after this one see the database as it was.
BEGIN;

-- Campaign 515151, contacts 7100001..7100008, in March 2026:
--   1 the whole chain; 2 converts without responding (and opens twice, once on March 2nd);
--   3 clicks without opening; 4 opens, clicks and converts without a delivery; 5 delivered in 515151
--   but opens and clicks in 515152 (not delivered there); 6 delivered, opts out and back in;
--   7 bounces; 8 delivered on March 1st, opens and clicks on March 5th.
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)
VALUES (7100001, 515151, 'delivered', '2026-03-01 10:00+00', NULL),
       (7100001, 515151, 'opened',    '2026-03-01 10:05+00', NULL),
       (7100001, 515151, 'clicked',   '2026-03-01 10:06+00', NULL),
       (7100001, 515151, 'responded', '2026-03-01 10:10+00', NULL),
       (7100001, 515151, 'converted', '2026-03-01 10:20+00', 99.00),
       (7100002, 515151, 'delivered', '2026-03-01 10:00+00', NULL),
       (7100002, 515151, 'opened',    '2026-03-01 11:00+00', NULL),
       (7100002, 515151, 'opened',    '2026-03-02 09:00+00', NULL),
       (7100002, 515151, 'clicked',   '2026-03-01 11:01+00', NULL),
       (7100002, 515151, 'converted', '2026-03-01 11:30+00', 45.00),
       (7100003, 515151, 'delivered', '2026-03-01 10:00+00', NULL),
       (7100003, 515151, 'clicked',   '2026-03-01 12:00+00', NULL),
       (7100004, 515151, 'opened',    '2026-03-01 10:30+00', NULL),
       (7100004, 515151, 'clicked',   '2026-03-01 10:31+00', NULL),
       (7100004, 515151, 'converted', '2026-03-01 10:40+00', 10.00),
       (7100005, 515151, 'delivered', '2026-03-01 10:00+00', NULL),
       (7100005, 515152, 'opened',    '2026-03-01 10:30+00', NULL),
       (7100005, 515152, 'clicked',   '2026-03-01 10:31+00', NULL),
       (7100006, 515151, 'delivered', '2026-03-01 10:00+00', NULL),
       (7100006, 515151, 'opted_out', '2026-03-01 10:02+00', NULL),
       (7100006, 515151, 'opted_in',  '2026-03-01 10:30+00', NULL),
       (7100007, 515151, 'bounced',   '2026-03-01 10:00+00', NULL),
       (7100008, 515151, 'delivered', '2026-03-01 10:00+00', NULL),
       (7100008, 515151, 'opened',    '2026-03-05 08:00+00', NULL),
       (7100008, 515151, 'clicked',   '2026-03-05 08:01+00', NULL);
-- Counted independently, clicked (5) exceeds opened (4) and converted (3) responded (1):
SELECT stage, contacts, events, round(rate_from_previous::numeric, 3) AS rate_from_previous,
       round(rate_from_delivered::numeric, 3) AS rate_from_delivered
  FROM engagement.funnel_independent(515151);
-- Nested: 6 delivered; opened 1, 2, 8; clicked the same three; responded and converted 1 only;
-- opted_out and opted_in 6 (delivered); bounced 7 (no rate).
SELECT stage, contacts, events, round(rate_from_previous::numeric, 3) AS rate_from_previous,
       round(rate_from_delivered::numeric, 3) AS rate_from_delivered
  FROM engagement.funnel(515151);
-- March 1st only: contact 8's open and click and contact 2's second open fall outside.
SELECT stage, contacts, events FROM engagement.funnel(515151, '2026-03-01 00:00+00', '2026-03-02 00:00+00');
-- Campaign 515152 delivered nothing: nobody is in its funnel.
SELECT stage, contacts, events, rate_from_previous, rate_from_delivered FROM engagement.funnel(515152);
SELECT ref.sqlstate_of($$SELECT * FROM engagement.funnel(1, '-infinity', NULL)$$) AS null_until,
       ref.sqlstate_of($$SELECT * FROM engagement.funnel_independent(1, NULL)$$) AS independent_null_since;
-- A profile's own chain (an SMS CRM's: a read receipt is rare): delivered 1, 2, 3, 5, 6, 8;
-- clicked in the same campaign 1, 2, 3, 8; converted 1 and 2.
INSERT INTO engagement.scoring_profiles (name, funnel_stages) VALUES ('presentation_sms', '{delivered,clicked,converted}');
SELECT stage, contacts, events, round(rate_from_previous::numeric, 3) AS rate_from_previous,
       round(rate_from_delivered::numeric, 3) AS rate_from_delivered
  FROM engagement.funnel(515151, profile => 'presentation_sms');
SELECT stage, contacts, events FROM engagement.funnel_independent(515151, profile => 'presentation_sms');
-- Chains that are not one: the SQLSTATE of each.
SELECT stages, ref.sqlstate_of(format('UPDATE engagement.scoring_profiles SET funnel_stages = %L WHERE name = %L',
                                      stages, 'presentation_sms')) AS refused
  FROM unnest(ARRAY['{}', '{delivered,delivered}', '{delivered,opted_out}', '{delivered,NULL}', '{bounced}']) stages;

-- 300 contacts x 3 campaigns, each stage present or not by a hash (some pairs open or convert
-- without a delivery, respond without clicking, ...), one or two events a stage, over March 2026.
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)
SELECT 7200000 + c, 525250 + g, st.t::engagement.event_type,
       timestamptz '2026-03-01 00:00+00' + ref.u01(c * 1000 + g * 10 + st.k * 2 + i, 52) * interval '30 days',
       CASE WHEN st.t = 'converted' THEN 20.00 END
  FROM generate_series(1, 300) c, generate_series(1, 3) g,
       (VALUES (1, 'delivered', 0.85), (2, 'opened', 0.55), (3, 'clicked', 0.45), (4, 'responded', 0.2),
               (5, 'converted', 0.3), (6, 'opted_out', 0.03), (7, 'bounced', 0.08), (8, 'opted_in', 0.02)) st(k, t, p),
       generate_series(1, 2) i
 WHERE ref.u01(c * 1000 + g * 10 + st.k, 51) < st.p AND (i = 1 OR ref.u01(c * 1000 + g * 10 + st.k, 53) < 0.3);

-- The nested funnel in plain SQL, written another way (relational division): a (contact, campaign)
-- pair is at a stage of the chain when no stage up to it lacks an event of the pair in the window.
CREATE FUNCTION pg_temp.nested_reference(stages text[], campaign bigint, since timestamptz, until timestamptz)
RETURNS TABLE (stage text, contacts bigint, events bigint) LANGUAGE sql AS $$
    WITH w AS (SELECT * FROM engagement.engagement_events e
                WHERE e.campaign_id IS NOT NULL AND (campaign IS NULL OR e.campaign_id = campaign)
                  AND e.occurred_at >= since AND e.occurred_at < until),
    chain AS (SELECT c.stage, c.ord FROM unnest(stages) WITH ORDINALITY c(stage, ord)),
    pairs AS (SELECT DISTINCT contact_id, campaign_id FROM w),
    at_stage AS (   -- (stage, contact, campaign) for each pair counted at the stage
        SELECT s.stage, p.contact_id, p.campaign_id FROM chain s, pairs p
         WHERE NOT EXISTS (SELECT FROM chain s2 WHERE s2.ord <= s.ord
                              AND NOT EXISTS (SELECT FROM w WHERE w.contact_id = p.contact_id
                                                 AND w.campaign_id = p.campaign_id AND w.event_type::text = s2.stage))
        UNION ALL
        SELECT o.t, p.contact_id, p.campaign_id FROM pairs p, (VALUES ('opted_out'), ('opted_in')) o(t)
         WHERE EXISTS (SELECT FROM w WHERE w.contact_id = p.contact_id AND w.campaign_id = p.campaign_id AND w.event_type::text = stages[1])
           AND EXISTS (SELECT FROM w WHERE w.contact_id = p.contact_id AND w.campaign_id = p.campaign_id AND w.event_type::text = o.t)
        UNION ALL
        SELECT 'bounced', p.contact_id, p.campaign_id FROM pairs p
         WHERE EXISTS (SELECT FROM w WHERE w.contact_id = p.contact_id AND w.campaign_id = p.campaign_id AND w.event_type = 'bounced'))
    SELECT a.stage, count(DISTINCT a.contact_id),
           (SELECT count(*) FROM w JOIN at_stage b ON b.contact_id = w.contact_id AND b.campaign_id = w.campaign_id
             WHERE b.stage = a.stage AND w.event_type::text = a.stage)
      FROM at_stage a GROUP BY a.stage
$$;
-- Every funnel below, under the default chain and two others, against the reference: the stages
-- that differ (none).
INSERT INTO engagement.scoring_profiles (name, funnel_stages) VALUES ('presentation_reversed', '{converted,clicked,opened}');
CREATE TEMP TABLE cases(campaign bigint, since timestamptz, until timestamptz) ON COMMIT DROP;
INSERT INTO cases VALUES (NULL, '-infinity', 'infinity'), (525251, '-infinity', 'infinity'),
    (525252, '-infinity', 'infinity'), (525253, '2026-03-08', '2026-03-20'), (NULL, '2026-03-10', '2026-03-31'),
    (515151, '-infinity', 'infinity'), (424242, '-infinity', 'infinity');
SELECT pr.name, c.campaign, c.since, c.until, f.stage, f.contacts, r.contacts AS reference_contacts, f.events,
       r.events AS reference_events
  FROM engagement.scoring_profiles pr, cases c, LATERAL engagement.funnel(c.campaign, c.since, c.until, pr.name) f
  LEFT JOIN LATERAL pg_temp.nested_reference(pr.funnel_stages::text[], c.campaign, c.since, c.until) r ON r.stage = f.stage
 WHERE pr.name IN ('default', 'presentation_sms', 'presentation_reversed')
   AND (f.contacts <> coalesce(r.contacts, 0) OR f.events <> coalesce(r.events, 0));
SELECT pr.name, count(DISTINCT f.stage) AS stages_checked
  FROM engagement.scoring_profiles pr, cases c, LATERAL engagement.funnel(c.campaign, c.since, c.until, pr.name) f
 WHERE pr.name IN ('default', 'presentation_sms', 'presentation_reversed') GROUP BY 1 ORDER BY 1;
-- On these data the independent counts give rates above 1, the nested ones never do.
SELECT (SELECT max(greatest(rate_from_previous, rate_from_delivered)) > 1
          FROM cases c, LATERAL engagement.funnel_independent(c.campaign, c.since, c.until)) AS independent_above_1,
       (SELECT max(greatest(rate_from_previous, rate_from_delivered)) <= 1
          FROM cases c, LATERAL engagement.funnel(c.campaign, c.since, c.until)) AS nested_at_most_1;
-- Each stage's contacts are among the previous stage's: a contact's stages, campaign by campaign.
SELECT count(*) AS funnel_rows_checked,
       count(*) FILTER (WHERE rate_from_previous > 1 OR rate_from_delivered > 1) AS rates_above_1
  FROM cases c, LATERAL engagement.funnel(c.campaign, c.since, c.until);

-- Rounded reads.  A profile's stored scores of the contacts above as of a fixed time (written
-- directly: refresh_scores scores as of now()), this test's own events only.
INSERT INTO engagement.scoring_profiles (name) VALUES ('presentation'), ('presentation_empty');
CREATE TEMP TABLE live ON COMMIT DROP AS
SELECT c AS contact_id, engagement.engagement_score(c, '2026-04-01 00:00+00', 'presentation') AS s
  FROM (SELECT generate_series(7100001, 7100008) UNION ALL SELECT generate_series(7200001, 7200300)) c(c);
DELETE FROM live WHERE s IS NULL;
INSERT INTO engagement.engagement_scores (profile, contact_id, composite, recency, frequency, monetary, time_decay,
    diversity, engagement_probability, conversion_probability, churn_risk, segment, opted_out, event_count,
    engaging_count, conversion_total, first_event_at, last_engaged_at, percentile_rank, profile_version,
    calculated_at, expected_engagements_30d, model_version, expected_conversion_value, expected_value_30d,
    undeliverable, tenure_days, birth_at, x, t_x, t_c, n_days, conv_days, x_v, m_v)
SELECT 'presentation', contact_id, (s).composite, (s).recency, (s).frequency, (s).monetary, (s).time_decay,
       (s).diversity, (s).engagement_probability, (s).conversion_probability, (s).churn_risk, (s).segment,
       (s).opted_out, (s).event_count, (s).engaging_count, (s).conversion_total, (s).first_event_at,
       (s).last_engaged_at, 100 * percent_rank() OVER (ORDER BY (s).composite), 1, (s).as_of,
       (s).expected_engagements_30d, engagement.model_version(), (s).expected_conversion_value, (s).expected_value_30d,
       (s).undeliverable, (s).tenure_days, (s).birth_at, (s).x, (s).t_x, (s).t_c, (s).n_days, (s).conv_days,
       (s).x_v, (s).m_v
  FROM live;

-- One contact, live, for people:
SELECT * FROM engagement.readable_score(engagement.engagement_score(7100001, '2026-04-01 00:00+00', 'presentation'));
SELECT * FROM engagement.readable_score(NULL);   -- no score, no values
-- Every field of every contact's readable score is round() of the raw one (to 0.1 for the 0..100
-- values, 0.001 for probabilities, 0.01 for expected counts and money, 0.1 for tenure days, the
-- second for times): the contacts where one differs (none), and how many were compared.
SELECT count(*) AS compared,
       count(*) FILTER (WHERE (r.composite, r.recency, r.frequency, r.monetary, r.time_decay, r.diversity,
                               r.engagement_probability, r.conversion_probability, r.churn_risk,
                               r.expected_engagements_in_horizon, r.expected_conversion_value, r.expected_value_in_horizon,
                               r.segment, r.opted_out, r.event_count, r.engaging_count, r.conversion_total,
                               r.as_of, r.first_event_at, r.last_engaged_at, r.profile, r.undeliverable, r.tenure_days)
           IS DISTINCT FROM (round((l.s).composite::numeric, 1), round((l.s).recency::numeric, 1),
                             round((l.s).frequency::numeric, 1), round((l.s).monetary::numeric, 1),
                             round((l.s).time_decay::numeric, 1), round((l.s).diversity::numeric, 1),
                             round((l.s).engagement_probability::numeric, 3), round((l.s).conversion_probability::numeric, 3),
                             round((l.s).churn_risk::numeric, 3), round((l.s).expected_engagements_30d::numeric, 2),
                             round((l.s).expected_conversion_value::numeric, 2), round((l.s).expected_value_30d::numeric, 2),
                             (l.s).segment, (l.s).opted_out, (l.s).event_count, (l.s).engaging_count,
                             (l.s).conversion_total, date_trunc('second', (l.s).as_of),
                             date_trunc('second', (l.s).first_event_at), date_trunc('second', (l.s).last_engaged_at),
                             (l.s).profile, (l.s).undeliverable, round((l.s).tenure_days::numeric, 1))) AS differing,
       max(scale(r.composite)) AS composite_decimals, max(scale(r.churn_risk)) AS churn_risk_decimals,
       max(scale(r.expected_value_in_horizon)) AS value_decimals
  FROM live l, LATERAL engagement.readable_score(l.s) r;
-- readable_scores: every stored score, rounded the same way, best first.
SELECT count(*) AS listed,
       count(*) FILTER (WHERE (r.composite, r.percentile_rank, r.recency, r.frequency, r.monetary, r.time_decay,
                               r.diversity, r.engagement_probability, r.conversion_probability, r.churn_risk,
                               r.expected_engagements_in_horizon, r.expected_conversion_value, r.expected_value_in_horizon,
                               r.segment, r.opted_out, r.event_count, r.conversion_total, r.last_engaged_at,
                               r.calculated_at, r.undeliverable, r.tenure_days)
           IS DISTINCT FROM (round(s.composite::numeric, 1), round(s.percentile_rank::numeric, 1),
                             round(s.recency::numeric, 1), round(s.frequency::numeric, 1), round(s.monetary::numeric, 1),
                             round(s.time_decay::numeric, 1), round(s.diversity::numeric, 1),
                             round(s.engagement_probability::numeric, 3), round(s.conversion_probability::numeric, 3),
                             round(s.churn_risk::numeric, 3), round(s.expected_engagements_30d::numeric, 2),
                             round(s.expected_conversion_value::numeric, 2), round(s.expected_value_30d::numeric, 2),
                             s.segment, s.opted_out, s.event_count, s.conversion_total,
                             date_trunc('second', s.last_engaged_at), date_trunc('second', s.calculated_at),
                             s.undeliverable, round(s.tenure_days::numeric, 1))) AS differing,
       count(*) FILTER (WHERE r.ordinality <> s.best_first) AS out_of_order,
       count(*) FILTER (WHERE NOT r.is_stale) AS fresh   -- scored long ago: all stale
  FROM engagement.readable_scores('presentation') WITH ORDINALITY r
  JOIN (SELECT *, row_number() OVER (ORDER BY composite DESC, contact_id) AS best_first
          FROM engagement.engagement_scores WHERE profile = 'presentation') s USING (contact_id);
SELECT contact_id, composite, percentile_rank, segment, churn_risk, expected_value_in_horizon, horizon_days
  FROM engagement.readable_scores('presentation') LIMIT 3;
-- readable_scores is inlined into the caller's query: a condition on the contact reaches the scores
-- table's index, one on the segment its scan, and a LIMIT bounds its sort (a top-N sort), also under
-- a sort of the caller's own.  The lines of each plan that say so (serial plans: no worker's lines).
CREATE FUNCTION pg_temp.plan_lines(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    line     text;
    in_scan  boolean := false;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        line := regexp_replace(btrim(line), '^->  ', '');
        -- the scans of the scores table with their conditions, and the sorts' methods (what the
        -- plan did, not how much memory or how many rows)
        in_scan := line ~ ' on engagement_scores' OR (in_scan AND line ~ '^(Index Cond|Filter|Rows Removed)');
        IF (in_scan AND line !~ '^Rows Removed') OR line ~ '^Sort Method' THEN
            RETURN NEXT regexp_replace(line, '\s*(\(actual.*|Memory: .*)$', '');
        END IF;
    END LOOP;
END $$;
-- (the scores table read through its primary key, whatever the statistics say: one plan to show)
SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;
SELECT pg_temp.plan_lines($$SELECT * FROM engagement.readable_scores('presentation') WHERE contact_id = 7100001$$) AS one_contact;
SELECT pg_temp.plan_lines($$SELECT * FROM engagement.readable_scores('presentation') WHERE segment = 'lost'$$) AS one_segment;
SELECT pg_temp.plan_lines($$SELECT * FROM engagement.readable_scores('presentation') LIMIT 3$$) AS best_three;
SELECT pg_temp.plan_lines($$SELECT * FROM engagement.readable_scores('presentation') WHERE segment <> 'lost'
                             ORDER BY churn_risk DESC, contact_id LIMIT 3$$) AS riskiest_three;
SELECT pg_temp.plan_lines($$SELECT * FROM engagement.readable_segments('presentation')$$) AS segments;
RESET max_parallel_workers_per_gather; RESET enable_seqscan; RESET enable_bitmapscan;
-- The same rows as the function computed whole (WITH ORDINALITY is not inlined): the three best,
-- and every contact's row under a condition.
SELECT count(*) AS differing_best_three
  FROM ((SELECT * FROM engagement.readable_scores('presentation') LIMIT 3)
        EXCEPT ALL (SELECT r.contact_id, r.composite, r.percentile_rank, r.segment, r.recency, r.frequency, r.monetary,
                           r.time_decay, r.diversity, r.engagement_probability, r.conversion_probability, r.churn_risk,
                           r.expected_engagements_in_horizon, r.expected_conversion_value, r.expected_value_in_horizon,
                           r.opted_out, r.event_count, r.conversion_total, r.last_engaged_at, r.calculated_at,
                           r.is_stale, r.undeliverable, r.tenure_days, r.horizon_days
                      FROM engagement.readable_scores('presentation') WITH ORDINALITY r WHERE r.ordinality <= 3)) d;
-- is_stale is contact_scores': with some contacts pending, some with changed events and some fresh.
SAVEPOINT staleness;
UPDATE engagement.engagement_scores SET calculated_at = now() WHERE profile = 'presentation';
INSERT INTO engagement.pending_rescore (profile, contact_id)
SELECT 'presentation', contact_id FROM engagement.engagement_scores WHERE profile = 'presentation' ORDER BY contact_id LIMIT 2;
INSERT INTO engagement.event_changes (contact_id, relation)
SELECT contact_id, 'engagement.engagement_events' FROM engagement.engagement_scores WHERE profile = 'presentation'
 ORDER BY contact_id DESC LIMIT 3;
SELECT count(*) AS scores, count(*) FILTER (WHERE r.is_stale) AS stale,
       count(*) FILTER (WHERE r.is_stale IS DISTINCT FROM c.is_stale) AS differing_from_contact_scores
  FROM engagement.readable_scores('presentation') r
  JOIN engagement.contact_scores c ON c.profile = 'presentation' AND c.contact_id = r.contact_id;
ROLLBACK TO SAVEPOINT staleness;
-- A NULL profile has no rows (as when these reads were STRICT); an unknown one is an error (below).
SELECT (SELECT count(*) FROM engagement.readable_scores(NULL)) AS null_scores,
       (SELECT count(*) FROM engagement.readable_segments(NULL)) AS null_segments,
       (SELECT count(*) FROM engagement.segment_summary(NULL)) AS null_summary;
-- readable_segments: segment_summary with the share in percent and the mean to 0.1.
SELECT * FROM engagement.readable_segments('presentation');
SELECT count(*) AS segments_differing
  FROM engagement.readable_segments('presentation') r JOIN engagement.segment_summary('presentation') m USING (segment)
 WHERE (r.contacts, r.share_pct, r.mean_score)
       IS DISTINCT FROM (m.contacts, round((100 * m.share)::numeric, 1), round(m.mean_score::numeric, 1));

-- score_histogram: ten buckets of 10 points, then four of 25, against a plain GROUP BY.
SELECT * FROM engagement.score_histogram('presentation');
SELECT * FROM engagement.score_histogram('presentation', 4);
SELECT h.score_range, h.contacts, g.contacts AS group_by_contacts
  FROM engagement.score_histogram('presentation', 10) WITH ORDINALITY h(score_range, contacts, share_pct, bar, i)
  FULL JOIN (SELECT least(floor(composite / 10)::int, 9) + 1 AS i, count(*) AS contacts
               FROM engagement.engagement_scores WHERE profile = 'presentation' GROUP BY 1) g USING (i)
 WHERE h.contacts IS DISTINCT FROM coalesce(g.contacts, 0);
SELECT score_range, contacts, share_pct, bar FROM engagement.score_histogram('presentation_empty', 2);
SELECT count(*) AS null_buckets FROM engagement.score_histogram('presentation', NULL);
SELECT ref.sqlstate_of($$SELECT * FROM engagement.score_histogram('presentation', 0)$$) AS zero_buckets,
       ref.sqlstate_of($$SELECT * FROM engagement.score_histogram('presentation', 101)$$) AS too_many_buckets,
       split_part(ref.sqlstate_of($$SELECT * FROM engagement.score_histogram('no_such_profile')$$), ':', 1) AS unknown_profile,
       split_part(ref.sqlstate_of($$SELECT * FROM engagement.readable_scores('no_such_profile')$$), ':', 1) AS unknown_profile_scores,
       split_part(ref.sqlstate_of($$SELECT * FROM engagement.readable_segments('no_such_profile')$$), ':', 1) AS unknown_profile_segments;

ROLLBACK;
