-- source_access: a profile's source is read only as the role that set it may read it, whoever runs
-- the refresh or the fit (a superuser's pg_cron job, say); what that reading cannot do completely it
-- refuses, never storing part of it; a source that is gone, or is written wrong, gets the right
-- SQLSTATE.  Each check shows what a role could see, or the SQLSTATE it expects.
SET client_min_messages = warning;
CREATE ROLE regress_es_adm;
CREATE ROLE regress_es_other;
SELECT engagement.grant_admin_access('regress_es_adm'), engagement.grant_admin_access('regress_es_other');
GRANT USAGE ON SCHEMA ref TO regress_es_adm, regress_es_other;   -- (the tests' sqlstate_of)
CREATE SCHEMA es_sec;
CREATE SCHEMA es_crm;
GRANT USAGE, CREATE ON SCHEMA es_crm TO regress_es_adm;
CREATE TABLE es_sec.secret (contact_id bigint, value numeric);
INSERT INTO es_sec.secret VALUES (1, 777777.77), (2, 1000);
CREATE TABLE es_crm.events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                            conversion_value numeric);
INSERT INTO es_crm.events VALUES (1, 'converted', '2026-05-01', 10), (2, 'converted', '2026-05-02', 20);
GRANT SELECT ON es_crm.events TO regress_es_adm;
RESET client_min_messages;

-- What the admin may read, and may not.
SET ROLE regress_es_adm;
SELECT count(*) AS adm_reads_events FROM es_crm.events;
SELECT ref.sqlstate_of('SELECT count(*) FROM es_sec.secret') AS adm_reads_secret;
RESET ROLE;

-- 1. security_invoker spelled another way (t, tru, YE): the view reads with the reader's rights, and
--    a superuser's refresh reads it as the admin that set it, so it reads nothing the admin may not.
CREATE VIEW es_crm.invoker WITH (security_invoker = t) AS
SELECT s.contact_id, 'converted'::engagement.event_type AS event_type, timestamptz '2026-05-03' AS occurred_at,
       s.value AS conversion_value FROM es_sec.secret s;
GRANT SELECT ON es_crm.invoker TO regress_es_adm;
SET ROLE regress_es_adm;
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('sec_invoker', 'es_crm.invoker');
SELECT ref.sqlstate_of($$SELECT count(*) FROM es_crm.invoker$$) AS adm_reads_the_view;
RESET ROLE;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('sec_invoker')$$) AS superuser_refresh;
SELECT ref.sqlstate_of($$SELECT * FROM engagement.fit_model('sec_invoker')$$) AS superuser_fit;
SELECT ref.sqlstate_of($$SELECT * FROM engagement.validate_model('2026-05-02', '2026-06-01', 'sec_invoker')$$) AS superuser_validate;
SELECT count(*) AS stored_scores FROM engagement.engagement_scores WHERE profile = 'sec_invoker';
-- A scheduled refresh records the refusal, and its caller's role is its own again.
SELECT engagement.refresh_scores('sec_invoker', on_error => 'record') IS NULL AS failed, current_user AS role_after_refresh;
SELECT error FROM engagement.refresh_runs WHERE profile = 'sec_invoker' ORDER BY id DESC LIMIT 1;

-- 2. "May read" is a read, not a privilege check: a view the admin may read whose value comes
--    from a function that reads what the admin may not (SQL or PL/pgSQL, a superuser's): read as
--    the admin, the function runs as the admin and is refused.
CREATE FUNCTION es_sec.lookup(c bigint) RETURNS numeric LANGUAGE sql STABLE
AS $$ SELECT value FROM es_sec.secret WHERE contact_id = c $$;
CREATE FUNCTION es_sec.lookup_plpgsql(c bigint) RETURNS numeric LANGUAGE plpgsql STABLE
AS $$ BEGIN RETURN (SELECT 5 * value FROM es_sec.secret WHERE contact_id = c); END $$;
CREATE VIEW es_crm.through_sql AS
SELECT e.contact_id, e.event_type, e.occurred_at, es_sec.lookup(e.contact_id) AS conversion_value FROM es_crm.events e;
CREATE VIEW es_crm.through_plpgsql AS
SELECT e.contact_id, e.event_type, e.occurred_at, es_sec.lookup_plpgsql(e.contact_id) AS conversion_value FROM es_crm.events e;
GRANT SELECT ON es_crm.through_sql, es_crm.through_plpgsql TO regress_es_adm;
SET ROLE regress_es_adm;
INSERT INTO engagement.scoring_profiles (name, events_relation)
VALUES ('sec_sql', 'es_crm.through_sql'), ('sec_plpgsql', 'es_crm.through_plpgsql');
SELECT ref.sqlstate_of($$SELECT count(*) FROM es_crm.through_sql$$) AS adm_reads_through_sql,
       ref.sqlstate_of($$SELECT count(*) FROM es_crm.through_plpgsql$$) AS adm_reads_through_plpgsql;
RESET ROLE;
SELECT p AS profile, ref.sqlstate_of(format('SELECT engagement.refresh_scores(%L)', p)) AS superuser_refresh,
       ref.sqlstate_of(format('SELECT * FROM engagement.fit_model(%L)', p)) AS superuser_fit
  FROM unnest(ARRAY['sec_sql', 'sec_plpgsql']) p;
SELECT count(*) AS stored_scores FROM engagement.engagement_scores WHERE profile IN ('sec_sql', 'sec_plpgsql');
-- Once the admin may read the secret, the same refresh stores what it reads.
GRANT USAGE ON SCHEMA es_sec TO regress_es_adm;
GRANT SELECT ON es_sec.secret TO regress_es_adm;
SELECT engagement.refresh_scores('sec_plpgsql') AS rescored;
SELECT contact_id, conversion_total FROM engagement.engagement_scores WHERE profile = 'sec_plpgsql' ORDER BY 1;
REVOKE SELECT ON es_sec.secret FROM regress_es_adm;
REVOKE USAGE ON SCHEMA es_sec FROM regress_es_adm;

-- Another admin, which cannot act as the one that set the source, is refused; a member of it
-- reads as it.
SET ROLE regress_es_other;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('sec_plpgsql', true)$$) AS other_admin_refresh;
RESET ROLE;
GRANT regress_es_adm TO regress_es_other;
SET ROLE regress_es_other;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('sec_plpgsql', true)$$) AS member_refresh;
RESET ROLE;
-- A plain table of the admin's: a superuser's refresh and fit score it as the admin reads it (all of
-- it), a member of the admin too, and the caller's role is its own again afterwards.
SET ROLE regress_es_adm;
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('sec_plain', 'es_crm.events');
RESET ROLE;
SELECT engagement.refresh_scores('sec_plain') AS rescored, current_user AS role_after_refresh;
SET client_min_messages = error;   -- (two contacts fit nothing: the warning says so, in numbers no test should pin)
SELECT (engagement.fit_model('sec_plain', '2026-06-01', 'warning')).model, current_user AS role_after_fit;
RESET client_min_messages;
SET ROLE regress_es_other;
SELECT engagement.refresh_scores('sec_plain', true) AS member_rescored, current_user AS role_after_refresh;
RESET ROLE;
REVOKE regress_es_adm FROM regress_es_other;

-- 3. Row-level security on engagement_events: a refresh that would see only some rows refuses
--    (a full refresh would delete the scores of the rows it cannot see), and stores nothing.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT c, 'opened', '2026-05-01' FROM generate_series(970001, 970050) c;
SELECT engagement.refresh_scores('default', true) > 0 AS full_refresh;
ALTER TABLE engagement.engagement_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY regress_es_some ON engagement.engagement_events FOR SELECT TO regress_es_adm USING (contact_id <= 970010);
SET ROLE regress_es_adm;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('default', true)$$) AS rls_full_refresh;
RESET ROLE;
-- (changed by a role that sees them: ten contacts the admin cannot see are pending)
UPDATE engagement.engagement_events SET occurred_at = occurred_at - interval '1 hour' WHERE contact_id BETWEEN 970041 AND 970050;
SET ROLE regress_es_adm;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('default')$$) AS rls_incremental_refresh;
SELECT ref.sqlstate_of($$SELECT * FROM engagement.fit_model('default')$$) AS rls_fit;
RESET ROLE;
SELECT count(*) AS scores_kept FROM engagement.engagement_scores WHERE profile = 'default' AND contact_id BETWEEN 970001 AND 970050;
DROP POLICY regress_es_some ON engagement.engagement_events;
ALTER TABLE engagement.engagement_events DISABLE ROW LEVEL SECURITY;
SELECT engagement.refresh_scores('default') AS rescored_without_rls;
DELETE FROM engagement.engagement_events WHERE contact_id BETWEEN 970001 AND 970050;
SELECT engagement.refresh_scores('default', true) >= 0 AS cleaned_up;

-- 4. A dropped events relation: 42P01 naming the profile, not a syntax error or a privilege.
CREATE TABLE es_crm.gone (LIKE es_crm.events);
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('sec_gone', 'es_crm.gone');
DROP TABLE es_crm.gone;
SELECT c AS call, regexp_replace(ref.sqlstate_of(c), 'OID \d+', 'OID n') AS result
  FROM unnest(ARRAY[$$SELECT engagement.engagement_score(1, now(), 'sec_gone')$$,
                    $$SELECT engagement.explain_score(1, now(), 'sec_gone')$$,
                    $$SELECT * FROM engagement.profile_events(1, 'sec_gone')$$,
                    $$SELECT engagement.refresh_scores('sec_gone')$$,
                    $$SELECT * FROM engagement.fit_model('sec_gone')$$]) c;

-- 8. A source switched to trim_lower is checked against its new kind map, not the old one.
CREATE TABLE es_crm.kinds (contact_id bigint, kind text, occurred_at timestamptz);
INSERT INTO es_crm.kinds VALUES (1, ' Open ', '2026-05-01'), (1, 'CLICK', '2026-05-02'), (2, 'open', '2026-05-03');
SELECT engagement.define_event_source('es_crm.kinds', '{"Open": "opened", "open": "clicked"}', kind_column => 'kind',
                                      value_column => NULL);
SELECT engagement.define_event_source('es_crm.kinds', '{"open": "opened", "click": "clicked"}', kind_column => 'kind',
                                      value_column => NULL, kind_match => 'trim_lower');
SELECT kind, event_type FROM engagement.event_kind_map WHERE relation = 'es_crm.kinds'::regclass ORDER BY 1;
-- and a new map ambiguous under trim_lower is refused, naming its own kinds
SELECT ref.sqlstate_of($$SELECT engagement.define_event_source('es_crm.kinds', '{"OPEN": "opened", "open ": "clicked"}',
                                                               kind_column => 'kind', value_column => NULL,
                                                               kind_match => 'trim_lower')$$) AS ambiguous;

-- 7. A map of 10,000 kinds: one lookup per row, whatever the size of the map (not one arm per kind).
SELECT engagement.define_event_source('es_crm.kinds',
         (SELECT jsonb_object_agg('kind' || k, (enum_range(NULL::engagement.event_type))[1 + k % 7]) FROM generate_series(1, 9998) k)
         || '{"open": "opened", "click": "clicked"}', kind_column => 'kind', value_column => NULL, kind_match => 'trim_lower');
SELECT count(*) AS kinds_mapped FROM engagement.event_kind_map WHERE relation = 'es_crm.kinds'::regclass;
SELECT (engagement._source_kind_expr(s)).event_type LIKE 'engagement._map_kind(lower(btrim(e.kind::text)), %' AS one_lookup,
       length((engagement._source_kind_expr(s)).event_type) > 100000 AS map_given_as_constants
  FROM engagement.event_sources s WHERE s.relation = 'es_crm.kinds'::regclass;
INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('kinds_profile', 'es_crm.kinds');
SELECT kind, event_type FROM engagement.profile_events(1, 'kinds_profile') ORDER BY occurred_at;
SELECT engagement._map_kind(k, ARRAY['b', 'a', 'c'], ARRAY['opened', 'clicked', 'converted']::engagement.event_type[]) AS mapped
  FROM unnest(ARRAY['a', 'b', 'c', 'd', '', 'A']) k;
SELECT ref.sqlstate_of($$SELECT engagement._map_kind('a', ARRAY['a', 'a'], ARRAY['opened', 'clicked']::engagement.event_type[])$$) AS twice,
       ref.sqlstate_of($$SELECT engagement._map_kind('a', ARRAY['a', NULL], ARRAY['opened', 'clicked']::engagement.event_type[])$$) AS null_kind,
       ref.sqlstate_of($$SELECT engagement._map_kind('a', ARRAY['a'], ARRAY['opened', 'clicked']::engagement.event_type[])$$) AS lengths_differ;

-- 9. Wrong SQLSTATEs and silent results.  A NULL events_relation is 23502 (not a privilege);
--    the functions that act refuse NULL arguments (22004) instead of doing nothing.
SELECT ref.sqlstate_of($$INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('sec_null', NULL)$$) AS null_relation;
SELECT c AS call, ref.sqlstate_of(c) AS result
  FROM unnest(ARRAY[$$SELECT * FROM engagement.fit_model('default', now(), NULL)$$,
                    $$SELECT * FROM engagement.fit_model(NULL)$$,
                    $$SELECT engagement.refresh_scores(NULL)$$,
                    $$SELECT engagement.refresh_scores('default', NULL)$$,
                    $$SELECT * FROM engagement.validate_model(NULL, now())$$,
                    $$SELECT * FROM engagement.validate_model_summary(now() - interval '9 days', now(), 'default', NULL)$$,
                    $$SELECT engagement.grant_admin_access(NULL)$$,
                    $$SELECT engagement.grant_application_access(NULL)$$,
                    $$SELECT engagement.untrack_event_changes(NULL)$$,
                    $$SELECT engagement.citus_distribute(NULL)$$]) c;
-- A kind of 100,000 characters is shown and stored truncated, with its length.
INSERT INTO es_crm.kinds VALUES (3, repeat('x', 100000), '2026-05-04');
SELECT engagement.refresh_scores('kinds_profile') IS NOT NULL AS refreshed;
SELECT unmapped_rows, unmapped_kinds FROM engagement.refresh_runs WHERE profile = 'kinds_profile' ORDER BY id DESC LIMIT 1;
SELECT ref.sqlstate_of($$SELECT engagement.engagement_score(3, now(), 'kinds_profile')$$) AS live_score_warns;

-- Clean up.
SET client_min_messages = warning;
DELETE FROM engagement.scoring_profiles WHERE name LIKE 'sec\_%' OR name = 'kinds_profile';
DELETE FROM engagement.event_sources WHERE relation = 'es_crm.kinds'::regclass;
DROP SCHEMA es_crm, es_sec CASCADE;
REVOKE ALL ON ALL TABLES IN SCHEMA engagement FROM regress_es_adm, regress_es_other;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA engagement FROM regress_es_adm, regress_es_other;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA engagement FROM regress_es_adm, regress_es_other;
REVOKE ALL ON SCHEMA engagement, ref FROM regress_es_adm, regress_es_other;
DO $$ BEGIN EXECUTE format('REVOKE ALL ON DATABASE %I FROM regress_es_adm, regress_es_other', current_database()); END $$;
DROP ROLE regress_es_adm, regress_es_other;
RESET client_min_messages;
