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
CREATE FUNCTION evil.round(numeric, integer) RETURNS numeric LANGUAGE sql AS $$ SELECT -1::numeric $$;
CREATE FUNCTION evil.date_trunc(text, timestamptz) RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '1999-01-01' $$;
CREATE FUNCTION evil.int4ne_evil(integer, integer) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.<> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int4ne_evil);
CREATE FUNCTION evil.texteq_evil(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq_evil);
CREATE FUNCTION evil.ts_lt_evil(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_lt_evil);
CREATE TABLE evil.scoring_profiles (name text, version int);
CREATE TABLE evil.engagement_events (contact_id bigint);
CREATE TABLE evil._es_scored (contact_id bigint);
RESET ROLE;

-- Reference results with a clean search_path.
\set side clean
\i sql/include/search_path_calls.psql

-- The same calls with the hostile schema first (ahead of pg_catalog).  The trap is armed:
SET search_path = evil, pg_catalog, public;
SELECT now() = timestamptz '1999-01-01' AS now_shadowed, 'a' = 'b' AS equality_shadowed,
       abs(2.0::float8) AS abs_shadowed, format('%s', 'x') AS format_shadowed;
-- The same calls' results, kept to compare after RESET search_path (under this search_path `=` on
-- text is evil's, and so is IS DISTINCT FROM: a comparison here could not fail).
\set side shadowed
\i sql/include/search_path_calls.psql
SELECT engagement.score_trend(1, '2025-12-31', 'trend')::text AS trend;
SELECT pg_catalog.count(*) AS cached_scores FROM pg_catalog.generate_series(1, 5) c
 WHERE engagement.cached_score(c) IS NOT NULL;
-- refresh_scores still finds its lock, its tables and its operators (each check shows the numbers
-- if it fails; the operators are pg_catalog's explicitly).
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores() AS refreshed)
SELECT refreshed FROM r WHERE (refreshed OPERATOR(pg_catalog.>=) 0) IS NOT TRUE;
-- In one transaction, so that now() is the refresh's: a full refresh counts every score, and
-- stores them as of the real now() (not evil's 1999).
BEGIN;
WITH r AS MATERIALIZED (SELECT engagement.refresh_scores('default', true) AS rescored)
SELECT r.rescored, c.scores
  FROM r, (SELECT pg_catalog.count(*) AS scores FROM engagement.engagement_scores
            WHERE profile OPERATOR(pg_catalog.=) 'default') c
 WHERE (r.rescored OPERATOR(pg_catalog.=) c.scores) IS NOT TRUE;
SELECT max(calculated_at) AS last_calculated_at, pg_catalog.now() AS real_now
  FROM engagement.engagement_scores
HAVING (max(calculated_at) OPERATOR(pg_catalog.=) pg_catalog.now()) IS NOT TRUE;
COMMIT;
RESET search_path;
-- The results under the hostile search_path against the clean ones: the contacts and calls whose
-- results differ (or exist on one side only).
SELECT c AS contact_id, 'engagement_score' AS call, cl.score AS clean, sh.score AS shadowed
  FROM clean cl FULL JOIN shadowed sh USING (c) WHERE cl.score IS DISTINCT FROM sh.score
UNION ALL
SELECT c, 'explain_score', cl.explanation, sh.explanation
  FROM clean cl FULL JOIN shadowed sh USING (c) WHERE cl.explanation IS DISTINCT FROM sh.explanation
UNION ALL
SELECT contact_id, 'score_events', a.s, b.s
  FROM clean_agg a FULL JOIN shadowed_agg b USING (contact_id) WHERE a.s IS DISTINCT FROM b.s
 ORDER BY 2, 1;
SELECT count(*) AS contacts_compared FROM clean JOIN shadowed USING (c) JOIN clean_agg a ON a.contact_id = c;
-- funnel, score_percentile, contact_events and time_decay: the calls whose results differ.
SELECT v.call, v.clean, v.shadowed
  FROM clean_misc cl, shadowed_misc sh,
       LATERAL (VALUES ('funnel', cl.funnel::text, sh.funnel::text, cl.funnel = sh.funnel),
                       ('score_percentile', cl.pct::text, sh.pct::text, cl.pct = sh.pct),
                       ('contact_events', cl.page::text, sh.page::text, cl.page = sh.page),
                       ('time_decay', cl.decay::text, sh.decay::text, ref.close(cl.decay, sh.decay))
               ) v(call, clean, shadowed, same)
 WHERE v.same IS NOT TRUE;
-- The predictions: rows on one side only (none), and how many were compared.
(SELECT 'clean only' AS side, * FROM clean_predictions EXCEPT ALL SELECT 'clean only', * FROM shadowed_predictions)
UNION ALL
(SELECT 'shadowed only', * FROM shadowed_predictions EXCEPT ALL SELECT 'shadowed only', * FROM clean_predictions);
SELECT call, count(*) > 0 AS compared FROM clean_predictions GROUP BY call ORDER BY call;
-- Nothing was written into the hostile schema.
SELECT (SELECT count(*) FROM evil.scoring_profiles) AS evil_profiles, (SELECT count(*) FROM evil.engagement_events) AS evil_events,
       (SELECT count(*) FROM evil._es_scored) AS evil_scored;
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DROP ROLE es_untrusted;
