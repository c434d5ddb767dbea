-- pgTAP: the least-privilege model.  An application role inserts events, reads scores and calls
-- the scoring functions, and cannot change profiles, scores or existing events; an admin can.
BEGIN;
SELECT plan(41);

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
SELECT is((SELECT count(*)::int FROM engagement.funnel()), 8, 'app: funnel');
SELECT is((SELECT count(*)::int FROM engagement.contact_events(1)), 1, 'app: contact_events');
SELECT is((SELECT sum(contacts)::int FROM engagement.segment_summary()), 2, 'app: segment_summary');
SELECT throws_ok($$UPDATE engagement.scoring_profiles SET half_life_days = 1$$, '42501', NULL, 'app: cannot change profiles');
SELECT throws_ok($$INSERT INTO engagement.scoring_profiles (name) VALUES ('mine')$$, '42501', NULL, 'app: cannot add profiles');
SELECT throws_ok($$UPDATE engagement.engagement_events SET contact_id = 9$$, '42501', NULL, 'app: cannot rewrite events');
SELECT throws_ok($$DELETE FROM engagement.engagement_events$$, '42501', NULL, 'app: cannot delete events');
SELECT throws_ok($$UPDATE engagement.engagement_scores SET composite = 100$$, '42501', NULL, 'app: cannot write scores');
SELECT throws_ok($$DELETE FROM engagement.engagement_score_history$$, '42501', NULL, 'app: cannot erase history');
SELECT throws_ok($$SELECT engagement.refresh_scores()$$, '42501', NULL, 'app: cannot refresh');
SELECT throws_ok($$SELECT * FROM engagement.forget_contact(1)$$, '42501', NULL, 'app: cannot erase a contact');
SELECT throws_ok($$SELECT engagement.grant_admin_access('es_tap_app')$$, '42501', NULL, 'app: cannot grant itself more');
-- Ids are the identity's: taking future ones would break every other writer's inserts.
SELECT throws_ok($$INSERT INTO engagement.engagement_events (id, contact_id, event_type, occurred_at)
                   OVERRIDING SYSTEM VALUE VALUES (1000000, 4, 'opened', now())$$, '42501', NULL,
                 'app: cannot choose event ids (OVERRIDING SYSTEM VALUE)');
SELECT throws_ok($$INSERT INTO engagement.event_changes VALUES (1)$$, '42501', NULL,
                 'app: cannot write the change log (only the tracking triggers do)');
SELECT throws_ok($$SELECT FROM engagement.score_distributions FOR UPDATE$$, '42501', NULL,
                 'app: cannot take the lock that holds refreshes off');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM engagement.event_changes WHERE contact_id = 3), 1,
          'the application''s insert was tracked (by the trigger, as its owner)');

-- A role with no grant reads nothing, and cannot attach the change-tracking trigger (which runs as
-- its owner) to a table of its own to write the change log.
GRANT CREATE ON SCHEMA public TO es_tap_stranger;
SET LOCAL ROLE es_tap_stranger;
CREATE TABLE public.es_tap_own (contact_id bigint);
SELECT throws_ok($$CREATE TRIGGER own_track AFTER INSERT ON public.es_tap_own REFERENCING NEW TABLE AS new_events
                   FOR EACH STATEMENT EXECUTE FUNCTION engagement._track_event_changes()$$, '42501', NULL,
                 'stranger: cannot attach the change-tracking trigger');
SELECT throws_ok($$SELECT count(*) FROM engagement.engagement_events$$, '42501', NULL, 'stranger: no events');
SELECT throws_ok($$SELECT engagement.engagement_score(1)$$, '42501', NULL, 'stranger: no scoring');
SELECT throws_ok($$INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (1, 'opened', now())$$,
                 '42501', NULL, 'stranger: no inserts');
RESET ROLE;

-- The admin role.
CREATE SCHEMA es_tap_secret;
CREATE TABLE es_tap_secret.events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                                   conversion_value numeric);
SET LOCAL ROLE es_tap_admin;
-- A confused deputy: a superuser's refresh must not read for the admin what the admin cannot read.
SELECT throws_ok($$INSERT INTO engagement.scoring_profiles (name, events_relation)
                   VALUES ('deputy', (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = 'es_tap_secret' AND c.relname = 'events')::regclass)$$, '42501', NULL,
                 'admin: cannot point a profile at a relation it may not read');
SELECT lives_ok($$INSERT INTO engagement.scoring_profiles (name) VALUES ('deputy')$$, 'admin: adds a profile');
RESET ROLE;
GRANT USAGE ON SCHEMA es_tap_secret TO es_tap_admin;
GRANT SELECT ON es_tap_secret.events TO es_tap_admin;
SET LOCAL ROLE es_tap_admin;
SELECT lives_ok($$UPDATE engagement.scoring_profiles SET events_relation = 'es_tap_secret.events' WHERE name = 'deputy'$$,
                'admin: points a profile at a relation it may read');
SELECT lives_ok($$UPDATE engagement.scoring_profiles SET events_relation_set_by = 'postgres' WHERE name = 'deputy'$$,
                'admin: may write who chose the relation ...');
SELECT is((SELECT events_relation_set_by FROM engagement.scoring_profiles WHERE name = 'deputy'), 'es_tap_admin',
          '... but it records the admin, not the role it claimed');
RESET ROLE;
ALTER TABLE es_tap_secret.events ENABLE ROW LEVEL SECURITY;
SELECT throws_ok($$SELECT engagement.refresh_scores('deputy')$$, '42501', NULL,
                 'a superuser''s refresh does not read past row-level security the role that chose the relation is subject to');
ALTER TABLE es_tap_secret.events DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON es_tap_secret.events FROM es_tap_admin;
SELECT throws_ok($$SELECT engagement.refresh_scores('deputy')$$, '42501', NULL,
                 'a superuser''s refresh reads nothing the role that chose the relation may no longer read');
SET LOCAL ROLE es_tap_admin;
SELECT lives_ok($$UPDATE engagement.scoring_profiles SET half_life_days = 21 WHERE name = 'default'$$, 'admin: changes profiles');
SELECT is(engagement.refresh_scores(), 3::bigint, 'admin: refreshes (the profile changed: everyone)');
SELECT lives_ok($$DELETE FROM engagement.engagement_events WHERE contact_id = 3$$, 'admin: deletes events');
SELECT lives_ok($$SELECT * FROM engagement.forget_contact(2)$$, 'admin: erases a contact');
SELECT is((SELECT count(*)::int FROM engagement.engagement_scores WHERE contact_id = 2)
          + (SELECT count(*)::int FROM engagement.engagement_events WHERE contact_id = 2), 0, '... its score and events are gone');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
