-- distributed: the aggregates as distributed engines split them.
-- 1. Citus splits a global aggregate into worker partials and a coordinator combine when its state
--    type is not internal and survives a text round trip (the partial states travel as text).
--    The split is simulated here with aggregates built from the extension's own support functions:
--    partials per "worker", cast to text and back, combined, finalized.
-- 2. score_events with the profile as a document (what refresh_scores ships to postgres_fdw shards).
SET extra_float_digits = 0;   -- the states print exactly whatever this says

-- The rule, read from the catalog: every aggregate with a non-internal state has a combine
-- function that is not strict and a state type with text input and output.
SELECT a.aggfnoid::regprocedure AS aggregate, a.aggtranstype::regtype AS state,
       a.aggcombinefn <> 0 AND NOT c.proisstrict AS non_strict_combine,
       t.typinput <> 0 AND t.typoutput <> 0 AS text_io, p.proparallel AS parallel
  FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_type t ON t.oid = a.aggtranstype
  LEFT JOIN pg_proc c ON c.oid = a.aggcombinefn
 WHERE p.pronamespace = 'engagement'::regnamespace AND a.aggtranstype <> 'internal'::regtype
 ORDER BY a.aggfnoid::regprocedure::text COLLATE "C";

CREATE SCHEMA citus_sim;
-- A worker's partial: the transition function, no final function (the result is the state).
CREATE AGGREGATE citus_sim.decay_partial(float8, timestamptz, timestamptz, float8) (
    SFUNC = engagement._time_decay_transfn, STYPE = engagement.decay_state);
CREATE AGGREGATE citus_sim.fit_partial(integer, float8, float8, float8) (
    SFUNC = engagement._fit_transfn, STYPE = engagement.btyd_fit_state);
-- The coordinator: the combine function over the partial states, then the final function.
CREATE AGGREGATE citus_sim.decay_combine(engagement.decay_state) (
    SFUNC = engagement._time_decay_combinefn, STYPE = engagement.decay_state,
    FINALFUNC = engagement._time_decay_finalfn);
CREATE AGGREGATE citus_sim.mbgnbd_combine(engagement.btyd_fit_state) (
    SFUNC = engagement._fit_combinefn, STYPE = engagement.btyd_fit_state,
    FINALFUNC = engagement._fit_mbgnbd_finalfn);
CREATE AGGREGATE citus_sim.bgnbd_combine(engagement.btyd_fit_state) (
    SFUNC = engagement._fit_combinefn, STYPE = engagement.btyd_fit_state,
    FINALFUNC = engagement._fit_bgnbd_finalfn);

------------------------------------------------------------------------------------------------
-- time_decay
------------------------------------------------------------------------------------------------
SELECT engagement.time_decay(w, t, '2026-06-01 00:00+00', 14)::text AS direct,
       citus_sim.decay_partial(w, t, '2026-06-01 00:00+00', 14) AS state
  FROM (VALUES (1.0::float8, timestamptz '2026-06-01 00:00+00'), (2, '2026-05-18 00:00+00'),
               (100, '2026-06-02 00:00+00')) v(w, t);
-- Partials of four workers (contact_id % 4) as text, back, combined: the direct result, exactly,
-- for every (as_of, half-life) tried; and text -> state -> text is the identity.
CREATE TEMP TABLE decay_partials AS
SELECT h, contact_id % 4 AS worker,
       citus_sim.decay_partial(CASE event_type WHEN 'clicked' THEN 2.5 WHEN 'opted_out' THEN -10 ELSE 1 END,
                               occurred_at, '2026-06-01 12:00+00', h)::text AS state
  FROM ref.crm_events, (VALUES (0.5::float8), (14), (365)) hl(h)
 GROUP BY 1, 2;
SELECT h, count(*) AS partials FROM decay_partials GROUP BY h ORDER BY h;
-- (the partial states whose text changes in a round trip)
SELECT h, worker, state, state::engagement.decay_state::text AS round_trip
  FROM decay_partials WHERE (state::engagement.decay_state::text = state) IS NOT TRUE ORDER BY h, worker;
-- (the half-lives whose combined partials are not the direct result, with the difference: the
-- values print to 15 digits here)
SELECT h, combined, direct, combined - direct AS difference
  FROM (SELECT h, citus_sim.decay_combine(state::engagement.decay_state) AS combined,
               (SELECT engagement.time_decay(CASE event_type WHEN 'clicked' THEN 2.5 WHEN 'opted_out' THEN -10 ELSE 1 END,
                                             occurred_at, '2026-06-01 12:00+00', h) FROM ref.crm_events) AS direct
          FROM decay_partials GROUP BY h) c
 WHERE (combined = direct) IS NOT TRUE
 ORDER BY h;
-- Text form: (sum, compensation, as_of microseconds since 2000-01-01, half_life_days, rows).
SELECT '(1.5, -0, 833155200000000, 14, 2)'::engagement.decay_state AS parsed,
       citus_sim.decay_combine(s::engagement.decay_state) AS combined
  FROM (VALUES ('(1.5,0,833155200000000,14,2)'), ('(0.25,1e-17,833155200000000,14,1)')) v(s);
-- Extreme values survive: subnormal, huge, negative zero.
-- (the states that do not come back as they went in)
SELECT s AS state_in, s::engagement.decay_state::text AS state_out
  FROM (VALUES ('(5e-324,-0,0,1e-300,0)'), ('(1.7976931348623157e+308,-1.2345678901234566e-290,-211813488000000000,0.1,9223372036854775807)')) v(s)
 WHERE (s::engagement.decay_state::text = s) IS NOT TRUE;
-- (17 significant digits in, the shortest exact form out)
SELECT '(0.10000000000000001,0,0,14,1)'::engagement.decay_state AS shortest;
-- Bad text: 22P02, with what is wrong.
SELECT ref.sqlstate_of($$SELECT 'x'::engagement.decay_state$$) AS garbage,
       ref.sqlstate_of($$SELECT '(1,0,0,14)'::engagement.decay_state$$) AS too_few_fields,
       ref.sqlstate_of($$SELECT '(1,0,0,14,1) x'::engagement.decay_state$$) AS trailing_text,
       ref.sqlstate_of($$SELECT '(NaN,0,0,14,1)'::engagement.decay_state$$) AS nan,
       ref.sqlstate_of($$SELECT '(Infinity,0,0,14,1)'::engagement.decay_state$$) AS infinite_sum,
       ref.sqlstate_of($$SELECT '(1,0,0,0,1)'::engagement.decay_state$$) AS zero_half_life,
       ref.sqlstate_of($$SELECT '(1,0,0,14,-1)'::engagement.decay_state$$) AS negative_rows,
       ref.sqlstate_of($$SELECT '(1,0,99999999999999999999,14,1)'::engagement.decay_state$$) AS int64_overflow;
SELECT '(1,0,0,14'::engagement.decay_state;
-- A sum that would overflow stops with 22003 instead of carrying infinities into a state.
SELECT ref.sqlstate_of($$SELECT engagement.time_decay(1e308, now(), now(), 14) FROM generate_series(1, 2)$$) AS overflow;
-- Combining states of different as_of or half-lives is refused, as in one group.
SELECT ref.sqlstate_of($$SELECT citus_sim.decay_combine(s::engagement.decay_state)
                           FROM (VALUES ('(1,0,0,14,1)'), ('(1,0,0,7,1)')) v(s)$$) AS mixed_half_lives;
-- Called outside an aggregate, the support functions refuse (they update their state in place).
SELECT ref.sqlstate_of($$SELECT engagement._time_decay_combinefn('(1,0,0,14,1)', '(1,0,0,14,1)')$$) AS not_aggregate;

------------------------------------------------------------------------------------------------
-- fit_mbgnbd / fit_bgnbd: states of thousands of customer summaries
------------------------------------------------------------------------------------------------
-- 6,000 simulated customers with thousands of distinct (x, t_x, t), fractional weights included.
CREATE TEMP TABLE fit_rows AS
SELECT i AS id, x, CASE WHEN x = 0 THEN 0 ELSE t_x END AS t_x, t, w
  FROM (SELECT i, (ref.u01(i, 11) * ref.u01(i, 12) * 30)::int AS x, round((ref.u01(i, 13) * 300)::numeric, 1)::float8 AS t_x,
               300 + (i % 60)::float8 AS t, CASE WHEN i % 7 = 0 THEN 0.5 ELSE 1 END AS w
          FROM generate_series(1, 6000) i) g;
CREATE TEMP TABLE fit_partials AS
SELECT id % 3 AS worker, citus_sim.fit_partial(x, t_x, t, w)::text AS state FROM fit_rows GROUP BY 1;
SELECT count(*) AS partials, min(length(state) - length(replace(state, '(', ''))) AS fewest_entries
  FROM fit_partials;
-- (the partial states whose text changes in a round trip, or holds a NaN: their beginnings)
SELECT worker, v.problem, left(state, 60) AS state, left(state::engagement.btyd_fit_state::text, 60) AS round_trip
  FROM fit_partials, LATERAL (VALUES ('round trip', (state::engagement.btyd_fit_state::text = state) IS NOT TRUE),
                                     ('NaN', (state !~* 'nan') IS NOT TRUE)) v(problem, failed)
 WHERE v.failed
 ORDER BY worker, v.problem;
-- One state with every row: (x, t_x, t, weight) entries, collapsed, sorted.
SELECT (length(s) - length(replace(s, '(', ''))) AS entries, left(s, 60) AS starts
  FROM (SELECT citus_sim.fit_partial(x, t_x, t, w)::text AS s FROM fit_rows) a;
-- Fits from CDNOW's 2,357 customers split over three workers, combined from text, equal the
-- direct fits to the bit.
CREATE TEMP TABLE cdnow (id integer PRIMARY KEY, x integer, t_x float8, t float8);
\copy cdnow FROM 'test/data/cdnow/cdnow_customers_summary.csv' CSV HEADER
CREATE TEMP TABLE cdnow_partials AS
SELECT id % 3 AS worker, citus_sim.fit_partial(x, t_x, t, 1)::text AS state FROM cdnow GROUP BY 1;
SELECT (SELECT round((citus_sim.bgnbd_combine(state::engagement.btyd_fit_state)).r::numeric, 4) FROM cdnow_partials) AS bgnbd_r;
-- (the models whose combined fit differs from the direct one; the floats print to 15 digits here)
SELECT v.model, v.combined, v.direct
  FROM (VALUES ('mbgnbd', (SELECT citus_sim.mbgnbd_combine(state::engagement.btyd_fit_state) FROM cdnow_partials),
                (SELECT engagement.fit_mbgnbd(x, t_x, t) FROM cdnow)),
               ('bgnbd', (SELECT citus_sim.bgnbd_combine(state::engagement.btyd_fit_state) FROM cdnow_partials),
                (SELECT engagement.fit_bgnbd(x, t_x, t) FROM cdnow))) v(model, combined, direct)
 WHERE (v.combined = v.direct) IS NOT TRUE;
SELECT '[]'::engagement.btyd_fit_state AS empty,
       '[ (2, 1.5, 10, 1) , (0,0,4,3) ]'::engagement.btyd_fit_state AS spaced_and_unsorted,
       '[(1,1,5,1),(1,1,5,2)]'::engagement.btyd_fit_state AS duplicates_collapse,
       (SELECT citus_sim.mbgnbd_combine('[]') FROM generate_series(1, 2)) AS empty_fit;
SELECT ref.sqlstate_of($$SELECT '[(1,1,5)]'::engagement.btyd_fit_state$$) AS three_fields,
       ref.sqlstate_of($$SELECT '[(1,1,5,1)'::engagement.btyd_fit_state$$) AS unclosed,
       ref.sqlstate_of($$SELECT '[(1,NaN,5,1)]'::engagement.btyd_fit_state$$) AS nan,
       ref.sqlstate_of($$SELECT '[(1,6,5,1)]'::engagement.btyd_fit_state$$) AS t_x_after_t,
       ref.sqlstate_of($$SELECT '[(1,1,5,0)]'::engagement.btyd_fit_state$$) AS zero_weight,
       ref.sqlstate_of($$SELECT '[(1.5,1,5,1)]'::engagement.btyd_fit_state$$) AS fractional_x;
SELECT '[(1,6,5,1)]'::engagement.btyd_fit_state;

-- Under PostgreSQL's own parallel aggregation the states pass between processes as they are:
-- partial aggregates under Gather, and the serial results.
CREATE TABLE citus_sim.summaries AS SELECT x, t_x, t, (1 + g % 2)::float8 AS w FROM cdnow, generate_series(1, 40) g;
ANALYZE citus_sim.summaries;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT engagement.fit_bgnbd(x, t_x, t, w) FROM citus_sim.summaries;
CREATE TEMP TABLE fit_par AS SELECT engagement.fit_bgnbd(x, t_x, t, w) AS f FROM citus_sim.summaries;
SET max_parallel_workers_per_gather = 0;
SELECT (f).n AS n, (f).converged FROM fit_par;
-- (both fits, if the parallel one is not the serial one)
SELECT fit_par.f AS parallel, s.f AS serial
  FROM fit_par, (SELECT engagement.fit_bgnbd(x, t_x, t, w) AS f FROM citus_sim.summaries) s
 WHERE (fit_par.f = s.f) IS NOT TRUE;
RESET ALL;
SET extra_float_digits = 0;

------------------------------------------------------------------------------------------------
-- score_events(..., profile jsonb): the profile's values travel with the query
------------------------------------------------------------------------------------------------
INSERT INTO engagement.scoring_profiles (name, recency_tau_days, half_life_days, model_r)
VALUES ('distributed', 9, 5, 0.7);
CREATE TEMP TABLE by_name AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00', 'distributed') AS s
  FROM ref.crm_events GROUP BY contact_id;
CREATE TEMP TABLE by_document AS
SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00',
                                           (SELECT to_jsonb(p) FROM engagement.scoring_profiles p WHERE name = 'distributed')) AS s
  FROM ref.crm_events GROUP BY contact_id;
SELECT count(*) AS contacts, count(*) FILTER (WHERE n.s IS NULL) AS only_later_events
  FROM by_name n JOIN by_document d USING (contact_id);
-- Scored with the document, identical to scored by name (as text): the contacts and fields that differ.
SELECT contact_id, m.field, m.got AS by_document, m.expected AS by_name
  FROM by_name n JOIN by_document d USING (contact_id), LATERAL ref.score_mismatches(d.s, n.s, 'text') m
 ORDER BY contact_id, m.field;
-- The same in parallel (the document's values ride along in the serialized partial states).
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET enable_sort = off;
CREATE TEMP TABLE doc AS SELECT to_jsonb(p) AS d FROM engagement.scoring_profiles p WHERE name = 'distributed';
CREATE TEMP TABLE one_contact_parallel AS
SELECT engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, '2026-06-01 12:00+00', doc.d) AS s
  FROM ref.crm_events e, doc WHERE e.contact_id = 7 GROUP BY doc.d;
-- (its fields that differ from the score by name; the parallel score missing differs in all)
SELECT m.field, m.got AS parallel_by_document, m.expected AS by_name
  FROM ref.score_mismatches((SELECT s FROM one_contact_parallel), (SELECT s FROM by_name WHERE contact_id = 7), 'text') m
 ORDER BY m.field;
EXPLAIN (COSTS OFF)
SELECT e.contact_id, engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, '2026-06-01 12:00+00',
                                             '{"name": "x"}'::jsonb)
  FROM ref.crm_events e GROUP BY e.contact_id;
CREATE TEMP TABLE by_document_parallel AS
SELECT e.contact_id, engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, '2026-06-01 12:00+00',
                                             (SELECT d FROM doc)) AS s
  FROM ref.crm_events e GROUP BY e.contact_id;
RESET ALL;
SELECT count(*) AS contacts, count(*) FILTER (WHERE n.s IS NULL) AS only_later_events
  FROM by_name n JOIN by_document_parallel d USING (contact_id);
-- (the contacts and fields that differ from the scores by name, as text)
SELECT contact_id, m.field, m.got AS by_document_parallel, m.expected AS by_name
  FROM by_name n JOIN by_document_parallel d USING (contact_id), LATERAL ref.score_mismatches(d.s, n.s, 'text') m
 ORDER BY contact_id, m.field;
-- Its name is the document's; a profile need not exist here to be scored with.
SELECT (engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00',
                                jsonb_set(d, '{name}', '"elsewhere"'))).profile
  FROM ref.crm_events, doc WHERE contact_id = 7 GROUP BY d;
-- Bad documents: 22023.
SELECT ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), '[1]'::jsonb)$$) AS not_an_object,
       ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), '{"name": "a"}'::jsonb)$$) AS parameters_missing,
       ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), d - 'name') FROM doc$$) AS name_missing,
       ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), jsonb_set(d, '{weight_recency}', '0.9')) FROM doc$$) AS weights_off,
       ref.sqlstate_of($$SELECT engagement.score_events('opened', now(), NULL, now(), CASE WHEN i = 1 THEN d ELSE jsonb_set(d, '{lookback_days}', '30') END)
                          FROM doc, generate_series(1, 2) i$$) AS two_versions_in_a_group;
SELECT engagement.score_events('opened', now(), NULL, now(), '{"name": "a"}'::jsonb);
-- Rows alternating between two documents (a cross join of profiles): each document is read once,
-- and the scores are those of the named profiles.
INSERT INTO engagement.scoring_profiles (name, recency_tau_days) VALUES ('distributed_2', 60);
CREATE TEMP TABLE alternating AS
SELECT e.contact_id, p.name,
       engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, '2026-06-01 12:00+00', to_jsonb(p)) AS s
  FROM ref.crm_events e CROSS JOIN engagement.scoring_profiles p
 WHERE p.name IN ('distributed', 'distributed_2') AND e.contact_id <= 50
 GROUP BY 1, 2;
SELECT count(*) AS scores FROM alternating;
-- (the contacts, profiles and fields that differ from the score by the profile's name, as text)
SELECT d.contact_id, d.name, m.field, m.got AS by_document, m.expected AS by_name
  FROM alternating d,
       LATERAL ref.score_mismatches(d.s, (SELECT engagement.score_events(e.event_type, e.occurred_at, e.conversion_value,
                                                                         '2026-06-01 12:00+00', d.name)
                                            FROM ref.crm_events e WHERE e.contact_id = d.contact_id), 'text') m
 ORDER BY d.contact_id, d.name, m.field;
-- The document is read with pg_catalog's types, whatever the caller's pg_temp holds.
CREATE DOMAIN pg_temp.text AS int4;
CREATE DOMAIN pg_temp.float8 AS int4;
-- (both composites, if they differ; no casts here: they would find the domains)
SELECT with_domains, by_name
  FROM (SELECT (SELECT (engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00', d)).composite
                  FROM ref.crm_events, doc WHERE contact_id = 7 GROUP BY d) AS with_domains,
               (SELECT (s).composite FROM by_name WHERE contact_id = 7) AS by_name) c
 WHERE (with_domains = by_name) IS NOT TRUE;
DROP DOMAIN pg_temp.text;
DROP DOMAIN pg_temp.float8;

-- events_relation: a table or a view with the columns the model reads (or, 1.4, the columns its
-- event_sources row names), owned by the caller or a superuser: checked when the profile is
-- written, and again when a refresh or a fit reads it.
CREATE TABLE dist_events AS SELECT contact_id::bigint, event_type, occurred_at, conversion_value FROM ref.crm_events;
CREATE VIEW dist_events_view AS SELECT * FROM dist_events;
CREATE TABLE dist_events_narrow AS SELECT contact_id::bigint, event_type, occurred_at FROM ref.crm_events;
UPDATE engagement.scoring_profiles SET events_relation = 'dist_events_view' WHERE name = 'distributed';
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('distributed')$$) AS a_view;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET events_relation = 'dist_events_narrow' WHERE name = 'distributed'$$) AS missing_column;
-- (a source without conversion values says so)
SELECT engagement.define_event_source('dist_events_narrow', value_column => NULL);
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET events_relation = 'dist_events_narrow' WHERE name = 'distributed'$$) AS narrow_with_its_source;
DELETE FROM engagement.event_sources WHERE relation = 'dist_events_narrow'::regclass;
CREATE ROLE es_dist_owner;
ALTER TABLE dist_events OWNER TO es_dist_owner;
SELECT ref.sqlstate_of($$UPDATE engagement.scoring_profiles SET events_relation = 'dist_events' WHERE name = 'distributed'$$) AS owned_by_another_role;
ALTER TABLE dist_events OWNER TO CURRENT_USER;
UPDATE engagement.scoring_profiles SET events_relation = 'dist_events' WHERE name = 'distributed';
ALTER TABLE dist_events OWNER TO es_dist_owner;
SELECT ref.sqlstate_of($$SELECT engagement.refresh_scores('distributed')$$) AS owned_by_another_role_at_refresh;
ALTER TABLE dist_events OWNER TO CURRENT_USER;
DROP ROLE es_dist_owner;
-- A plain table of the caller's is scored, and with track_event_changes (statement triggers: no
-- foreign partitions) incremental refreshes see its changes.
SELECT engagement.refresh_scores('distributed') AS rescored;
SELECT ref.sqlstate_of($$SELECT engagement.track_event_changes('dist_events_narrow')$$) AS track_narrow;
SELECT engagement.track_event_changes('dist_events');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'dist_events'::regclass ORDER BY 1;
TRUNCATE engagement.event_changes;
INSERT INTO dist_events VALUES (7, 'clicked', '2026-06-01 08:00+00', NULL);
UPDATE dist_events SET occurred_at = occurred_at + interval '1 minute' WHERE contact_id = 8;
SELECT array_agg(DISTINCT contact_id ORDER BY contact_id) AS changed FROM engagement.event_changes;
SELECT engagement.refresh_scores('distributed') AS rescored_incrementally;
DROP TRIGGER engagement_track_insert ON dist_events;
DROP TRIGGER engagement_track_update ON dist_events;
DROP TRIGGER engagement_track_delete ON dist_events;
DROP TRIGGER engagement_track_truncate ON dist_events;
DELETE FROM engagement.engagement_scores WHERE profile IN ('distributed', 'distributed_2');
DELETE FROM engagement.scoring_profiles WHERE name IN ('distributed', 'distributed_2');
DROP VIEW dist_events_view;
DROP TABLE dist_events, dist_events_narrow;
DROP SCHEMA citus_sim CASCADE;
