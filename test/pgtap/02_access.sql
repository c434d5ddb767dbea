-- pgTAP: the least-privilege model.  An application role inserts events, reads scores and calls
-- the scoring functions, and cannot change profiles, scores or existing events; an admin can.
BEGIN;
SELECT plan(26);

CREATE ROLE es_tap_app;
CREATE ROLE es_tap_admin;
CREATE ROLE es_tap_stranger;
SELECT lives_ok($$SELECT engagement.grant_application_access('es_tap_app')$$, 'grant application access');
SELECT lives_ok($$SELECT engagement.grant_admin_access('es_tap_admin')$$, 'grant admin access');
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (1, 'opened', now() - interval '1 day'), (2, 'clicked', now() - interval '2 days');
SELECT engagement.refresh_scores();

-- The application role.
SET LOCAL ROLE es_tap_app;
SELECT lives_ok($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
                  VALUES (3, 'opened', now() - interval '1 hour')$$, 'app: inserts events (change tracking included)');
SELECT isnt((engagement.engagement_score(1)).composite, NULL, 'app: engagement_score');
SELECT isnt(engagement.explain_score(1), NULL, 'app: explain_score');
SELECT is((SELECT count(*)::int FROM engagement.engagement_scores), 2, 'app: reads scores');
SELECT is((SELECT count(*)::int FROM engagement.contact_scores WHERE is_stale), 0, 'app: reads contact_scores');
SELECT isnt((engagement.cached_score(1)).composite, NULL, 'app: cached_score');
SELECT isnt(engagement.score_percentile(50), NULL, 'app: score_percentile');
SELECT is((SELECT count(*)::int FROM engagement.funnel()), 7, 'app: funnel');
SELECT is((SELECT count(*)::int FROM engagement.contact_events(1)), 1, 'app: contact_events');
SELECT is((SELECT sum(contacts)::int FROM engagement.segment_summary()), 2, 'app: segment_summary');
SELECT throws_ok($$UPDATE engagement.scoring_profiles SET half_life_days = 1$$, '42501', NULL, 'app: cannot change profiles');
SELECT throws_ok($$INSERT INTO engagement.scoring_profiles (name) VALUES ('mine')$$, '42501', NULL, 'app: cannot add profiles');
SELECT throws_ok($$UPDATE engagement.engagement_events SET contact_id = 9$$, '42501', NULL, 'app: cannot rewrite events');
SELECT throws_ok($$DELETE FROM engagement.engagement_events$$, '42501', NULL, 'app: cannot delete events');
SELECT throws_ok($$UPDATE engagement.engagement_scores SET composite = 100$$, '42501', NULL, 'app: cannot write scores');
SELECT throws_ok($$DELETE FROM engagement.engagement_score_history$$, '42501', NULL, 'app: cannot erase history');
SELECT throws_ok($$SELECT engagement.refresh_scores()$$, '42501', NULL, 'app: cannot refresh');
SELECT throws_ok($$SELECT engagement.grant_admin_access('es_tap_app')$$, '42501', NULL, 'app: cannot grant itself more');
RESET ROLE;

-- A role with no grant reads nothing.
SET LOCAL ROLE es_tap_stranger;
SELECT throws_ok($$SELECT count(*) FROM engagement.engagement_events$$, '42501', NULL, 'stranger: no events');
SELECT throws_ok($$SELECT engagement.engagement_score(1)$$, '42501', NULL, 'stranger: no scoring');
SELECT throws_ok($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (1, 'opened', now())$$,
                 '42501', NULL, 'stranger: no inserts');
RESET ROLE;

-- The admin role.
SET LOCAL ROLE es_tap_admin;
SELECT lives_ok($$UPDATE engagement.scoring_profiles SET half_life_days = 21 WHERE name = 'default'$$, 'admin: changes profiles');
SELECT is(engagement.refresh_scores(), 3::bigint, 'admin: refreshes (the profile changed: everyone)');
SELECT lives_ok($$DELETE FROM engagement.engagement_events WHERE contact_id = 3$$, 'admin: deletes events');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
