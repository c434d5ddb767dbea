-- erasure: forget_contact removes everything the extension holds about a contact, in every profile,
-- and says what it removed; a refresh removes the history of a contact whose events are all gone
-- (the CRM deleted its rows).  In one transaction rolled back at the end.
BEGIN;
INSERT INTO engagement.scoring_profiles (name, half_life_days, history_min_delta) VALUES ('erasure_a', 7, 0), ('erasure_b', 30, 0);
-- Contacts 9300001 (to forget) and 9300002 (to keep), two refreshes apart: scores and history in
-- both profiles; then a new event of each, pending.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT c, t, now() - d * interval '1 day', CASE WHEN t = 'converted' THEN 12.5 END
  FROM generate_series(9300001, 9300002) c, unnest('{opened,clicked,converted}'::engagement.event_type[]) t,
       generate_series(1, 4) d;
SELECT engagement.refresh_scores('erasure_a') > 0 AS a_first, engagement.refresh_scores('erasure_b') > 0 AS b_first;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (9300001, 'opened', now() - interval '1 hour'), (9300002, 'opened', now() - interval '1 hour');

SELECT engagement.refresh_scores('erasure_a') AS a_second, engagement.refresh_scores('erasure_b') AS b_second;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (9300001, 'clicked', now() - interval '1 minute'), (9300002, 'clicked', now() - interval '1 minute');
SELECT engagement.refresh_scores('default') IS NOT NULL AS default_drained;   -- pending for erasure_a and _b now
CREATE TEMP VIEW held AS
SELECT c.contact_id,
       (SELECT count(*) FROM engagement.engagement_scores s WHERE s.contact_id = c.contact_id AND s.profile LIKE 'erasure%') AS scores,
       (SELECT count(*) FROM engagement.engagement_score_history h WHERE h.contact_id = c.contact_id AND h.profile LIKE 'erasure%') AS history,
       (SELECT count(*) FROM engagement.engagement_events e WHERE e.contact_id = c.contact_id) AS events,
       (SELECT count(*) FROM engagement.pending_rescore p WHERE p.contact_id = c.contact_id AND p.profile LIKE 'erasure%') AS pending,
       (SELECT count(*) FROM engagement.event_changes x WHERE x.contact_id = c.contact_id) AS changes
  FROM (VALUES (9300001::bigint), (9300002)) c(contact_id);
SELECT * FROM held ORDER BY contact_id;
CREATE TEMP TABLE distribution_before ON COMMIT DROP AS
SELECT profile, contacts FROM engagement.score_distributions WHERE profile LIKE 'erasure%';
-- (what the extension holds about the contact in every profile)
CREATE TEMP TABLE held_before ON COMMIT DROP AS
SELECT 'engagement_scores' AS "table", count(*) AS rows FROM engagement.engagement_scores WHERE contact_id = 9300001
UNION ALL SELECT 'engagement_score_history', count(*) FROM engagement.engagement_score_history WHERE contact_id = 9300001
UNION ALL SELECT 'engagement_events', count(*) FROM engagement.engagement_events WHERE contact_id = 9300001
UNION ALL SELECT 'pending_rescore', count(*) FROM engagement.pending_rescore WHERE contact_id = 9300001
UNION ALL SELECT 'event_changes', count(*) FROM engagement.event_changes WHERE contact_id = 9300001;

-- Forgotten: what was removed, per table, is everything held (the change log's row is the one
-- its own deletion of the events logged); nothing is left; the other contact keeps everything.
SELECT f."table", f.rows > 0 AS removed, f.rows - b.rows AS removed_minus_held
  FROM engagement.forget_contact(9300001) WITH ORDINALITY f LEFT JOIN held_before b USING ("table")
 ORDER BY f.ordinality;
SELECT * FROM held ORDER BY contact_id;
SELECT count(*) AS scores_in_any_profile FROM engagement.engagement_scores WHERE contact_id = 9300001;
-- Each profile's distribution lost exactly that contact's composite: its count and its sorted
-- composites equal the stored scores (the profiles where they do not).
SELECT d.profile, d.contacts, b.contacts AS before, s.n AS stored
  FROM engagement.score_distributions d JOIN distribution_before b USING (profile),
       LATERAL (SELECT count(*) AS n FROM engagement.engagement_scores s WHERE s.profile = d.profile) s
 WHERE d.contacts <> b.contacts - 1 OR d.contacts <> s.n;
SELECT s.profile, s.composite, engagement.score_percentile(s.composite, s.profile) AS got,
       100.0 * (SELECT count(*) FROM engagement.engagement_scores o WHERE o.profile = s.profile AND o.composite < s.composite)
             / (SELECT count(*) FROM engagement.engagement_scores o WHERE o.profile = s.profile) AS expected
  FROM engagement.engagement_scores s
 WHERE s.profile LIKE 'erasure%' AND s.contact_id = 9300002
   AND abs(engagement.score_percentile(s.composite, s.profile)
           - 100.0 * (SELECT count(*) FROM engagement.engagement_scores o WHERE o.profile = s.profile AND o.composite < s.composite)
                   / (SELECT count(*) FROM engagement.engagement_scores o WHERE o.profile = s.profile)) > 1e-9;
-- A refresh after it does not bring the contact back; forgetting again removes nothing.
SELECT engagement.refresh_scores('erasure_a') IS NOT NULL AS refreshed, engagement.refresh_scores('erasure_a', true) > 0 AS full_refresh;
SELECT * FROM held WHERE contact_id = 9300001;
SELECT sum(rows) AS removed_again FROM engagement.forget_contact(9300001);
SELECT ref.sqlstate_of($$SELECT * FROM engagement.forget_contact(NULL)$$) AS null_contact;

-- A CRM's own table: the CRM deletes the contact's rows; the next refresh removes its scores and
-- its history, in each profile reading the table.
CREATE TABLE public.erasure_crm (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                                 conversion_value numeric);
INSERT INTO public.erasure_crm SELECT c, 'clicked', now() - d * interval '1 day', NULL
  FROM generate_series(9300011, 9300013) c, generate_series(1, 3) d;
SELECT engagement.track_event_changes('public.erasure_crm');
INSERT INTO engagement.scoring_profiles (name, events_relation, history_min_delta) VALUES ('erasure_crm', 'public.erasure_crm', 0);
SELECT engagement.refresh_scores('erasure_crm') AS crm_first;
INSERT INTO public.erasure_crm VALUES (9300012, 'opened', now() - interval '1 hour', NULL);
SELECT engagement.refresh_scores('erasure_crm') AS crm_second;
SELECT contact_id, count(*) AS history FROM engagement.engagement_score_history WHERE profile = 'erasure_crm'
 GROUP BY 1 ORDER BY 1;
DELETE FROM public.erasure_crm WHERE contact_id = 9300012;
SELECT engagement.refresh_scores('erasure_crm') AS crm_after_delete;
SELECT contact_id,
       (SELECT count(*) FROM engagement.engagement_scores s WHERE s.profile = 'erasure_crm' AND s.contact_id = c) AS scores,
       (SELECT count(*) FROM engagement.engagement_score_history h WHERE h.profile = 'erasure_crm' AND h.contact_id = c) AS history
  FROM generate_series(9300011, 9300013) c(contact_id) ORDER BY 1;
SELECT engagement.untrack_event_changes('public.erasure_crm');
ROLLBACK;
