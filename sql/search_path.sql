-- search_path: an untrusted role shadows functions, operators and tables in a schema placed before
-- pg_catalog on the search_path; every extension function still behaves exactly as before.
CREATE ROLE es_untrusted;
CREATE SCHEMA evil AUTHORIZATION es_untrusted;
SET ROLE es_untrusted;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '1999-01-01' $$;
CREATE FUNCTION evil.exp(float8) RETURNS float8 LANGUAGE sql AS $$ SELECT 0::float8 $$;
CREATE FUNCTION evil.abs(float8) RETURNS float8 LANGUAGE sql AS $$ SELECT -1::float8 $$;
CREATE FUNCTION evil.isfinite(timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE FUNCTION evil.format(text, text) RETURNS text LANGUAGE sql AS $$ SELECT 'pwned' $$;
CREATE FUNCTION evil.count(anyelement) RETURNS bigint LANGUAGE sql AS $$ SELECT -1::bigint $$;
CREATE FUNCTION evil.pg_try_advisory_xact_lock(int, int) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE FUNCTION evil.texteq_evil(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq_evil);
CREATE FUNCTION evil.ts_lt_evil(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_lt_evil);
CREATE TABLE evil.scoring_profiles (name text, version int);
CREATE TABLE evil.engagement_events (contact_id bigint);
CREATE TABLE evil._es_scored (contact_id bigint);
RESET ROLE;

-- Reference results with a clean search_path.
CREATE TEMP TABLE clean AS
SELECT c, engagement.engagement_score(c, '2026-06-01 12:00+00')::text AS score,
       engagement.explain_score(c, '2026-06-01 12:00+00') AS explanation
  FROM generate_series(1, 30) c;
CREATE TEMP TABLE clean_agg AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00', 'default')::text AS s
  FROM ref.crm_events WHERE contact_id <= 30 GROUP BY contact_id;
CREATE TEMP TABLE clean_misc AS
SELECT (SELECT array_agg(f::text) FROM engagement.funnel(424242) f) AS funnel,
       engagement.score_percentile(40) AS pct,
       (SELECT array_agg(e.id) FROM engagement.contact_events(7000009, NULL, 5) e) AS page,
       engagement.time_decay(1, occurred_at, '2026-06-01', 14) AS decay
  FROM ref.crm_events WHERE contact_id <= 30;

-- The same calls with the hostile schema first (ahead of pg_catalog).  The trap is armed:
SET search_path = evil, pg_catalog, public;
SELECT now() = timestamptz '1999-01-01' AS now_shadowed, 'a' = 'b' AS equality_shadowed,
       abs(2.0::float8) AS abs_shadowed, format('%s', 'x') AS format_shadowed;
SELECT count(*) AS scores_differing
  FROM clean WHERE score IS DISTINCT FROM engagement.engagement_score(c, '2026-06-01 12:00+00')::text;
SELECT count(*) AS explanations_differing
  FROM clean WHERE explanation IS DISTINCT FROM engagement.explain_score(c, '2026-06-01 12:00+00');
SELECT count(*) AS aggregates_differing
  FROM clean_agg a
  JOIN (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00', 'default')::text AS s
          FROM ref.crm_events WHERE contact_id <= 30 GROUP BY contact_id) b USING (contact_id)
 WHERE a.s IS DISTINCT FROM b.s;
SELECT funnel = (SELECT array_agg(f::text) FROM engagement.funnel(424242) f) AS funnel_same,
       pct = engagement.score_percentile(40) AS percentile_same,
       page = (SELECT array_agg(e.id) FROM engagement.contact_events(7000009, NULL, 5) e) AS pagination_same
  FROM clean_misc;
SELECT engagement.score_trend(1, '2025-12-31', 'trend')::text AS trend;
SELECT pg_catalog.count(*) AS cached_scores FROM pg_catalog.generate_series(1, 5) c
 WHERE engagement.cached_score(c) IS NOT NULL;
-- refresh_scores still finds its lock, its tables and its operators.
SELECT engagement.refresh_scores() OPERATOR(pg_catalog.>=) 0 AS refresh_runs;
SELECT engagement.refresh_scores('default', true) OPERATOR(pg_catalog.=)
       (SELECT pg_catalog.count(*) FROM engagement.engagement_scores WHERE profile OPERATOR(pg_catalog.=) 'default') AS full_refresh_counts;
SELECT max(calculated_at) OPERATOR(pg_catalog.=) pg_catalog.now() AS refreshed_as_of_the_real_now
  FROM engagement.engagement_scores;
RESET search_path;
-- Nothing was written into the hostile schema.
SELECT (SELECT count(*) FROM evil.scoring_profiles) AS evil_profiles, (SELECT count(*) FROM evil.engagement_events) AS evil_events,
       (SELECT count(*) FROM evil._es_scored) AS evil_scored;
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DROP ROLE es_untrusted;
