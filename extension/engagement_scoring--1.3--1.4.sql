-- engagement_scoring 1.3 -> 1.4: scoring model version 2 (repeat engagement days, the Gamma-Gamma
-- value model), fits with standard errors and a penalty recorded in model_fits, holdout validation.
-- Every stored score is of model version 1: the next refresh of each profile rescores everyone.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.4'" to load this file. \quit

-- Re-grants on a new object what the roles held on another (a replaced view or function, a new
-- table beside its twin): the grant functions of 1.3 would have given them both.
CREATE FUNCTION @extschema@._upgrade_copy_grants(from_acl aclitem[], object_kind text, object_name text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(from_acl) a
              WHERE a.grantee <> (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'engagement_scoring')
    LOOP
        EXECUTE format('GRANT %s ON %s %s TO %s%s', g.privilege_type, object_kind, object_name,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.grantee::regrole::text) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END $$;

------------------------------------------------------------------------------------------------
-- Profiles: the Gamma-Gamma parameters and the fits' penalty
------------------------------------------------------------------------------------------------
ALTER TABLE @extschema@.scoring_profiles
    ADD COLUMN gg_p float8 NOT NULL DEFAULT 6.25 CHECK (gg_p > 0 AND gg_p < 'Infinity'),
    ADD COLUMN gg_q float8 NOT NULL DEFAULT 3.74 CHECK (gg_q > 1 AND gg_q < 'Infinity'),
    ADD COLUMN gg_v float8 NOT NULL DEFAULT 15.44 CHECK (gg_v > 0 AND gg_v < 'Infinity'),
    ADD COLUMN fit_penalizer float8 NOT NULL DEFAULT 0 CHECK (fit_penalizer >= 0 AND fit_penalizer < 'Infinity');
COMMENT ON COLUMN @extschema@.scoring_profiles.fit_penalizer IS
    'fit_model maximises the mean log-likelihood minus fit_penalizer * the sum of squared log-parameters (both models); raise it when a fit does not converge';

------------------------------------------------------------------------------------------------
-- Scores: the model version and the value predictions
------------------------------------------------------------------------------------------------
-- Every existing score is of version 1; new ones say their own.
ALTER TABLE @extschema@.engagement_scores
    ADD COLUMN model_version integer NOT NULL DEFAULT 1 CHECK (model_version >= 1),
    ADD COLUMN expected_conversion_value float8 CHECK (expected_conversion_value >= 0),
    ADD COLUMN expected_value_30d float8 CHECK (expected_value_30d >= 0);
ALTER TABLE @extschema@.engagement_scores ALTER COLUMN model_version DROP DEFAULT;
ALTER TABLE @extschema@.score_distributions ADD COLUMN model_version integer NOT NULL DEFAULT 1;
ALTER TABLE @extschema@.score_distributions ALTER COLUMN model_version DROP DEFAULT;

ALTER TYPE @extschema@.score ADD ATTRIBUTE expected_conversion_value float8, ADD ATTRIBUTE expected_value_30d float8;
CREATE FUNCTION @extschema@.model_version() RETURNS integer
AS 'MODULE_PATHNAME', 'es_model_version' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.model_version() IS
    'The version of the scoring model (SCORING_MODEL.md) the extension computes; stored scores of another are stale';

------------------------------------------------------------------------------------------------
-- model_fits
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.model_fits (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    profile         text NOT NULL REFERENCES @extschema@.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    model           text NOT NULL CHECK (model IN ('mbgnbd', 'gammagamma')),
    fitted_at       timestamptz NOT NULL,
    as_of           timestamptz NOT NULL,
    contacts        bigint NOT NULL CHECK (contacts >= 0),   -- the contacts the model was fitted to
    penalizer       float8 NOT NULL,
    parameters      jsonb,              -- {"r": ..., "alpha": ..., "a": ..., "b": ...} or {"p": ..., "q": ..., "v": ...}
    standard_errors jsonb,              -- the same keys; NULL when the information matrix is not positive definite
    log_likelihood  float8,
    iterations      integer,
    converged       boolean NOT NULL,
    stored          boolean NOT NULL,   -- the parameters replaced the profile's
    message         text                -- why the fit did not converge or was not stored
);
CREATE INDEX model_fits_profile_idx ON @extschema@.model_fits (profile, fitted_at);
COMMENT ON TABLE @extschema@.model_fits IS
    'Every fit fit_model ran: when, on how many contacts, the parameters with their standard errors, log-likelihood, convergence and why not';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.model_fits', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.model_fits_id_seq', '');
-- The roles of grant_application_access and grant_admin_access get what those give on it.
SELECT @extschema@._upgrade_copy_grants(c.relacl, 'TABLE', '@extschema@.model_fits')
  FROM pg_class c WHERE c.oid = '@extschema@.engagement_score_history'::regclass;
SELECT @extschema@._upgrade_copy_grants(c.relacl, 'SEQUENCE', '@extschema@.model_fits_id_seq')
  FROM pg_class c WHERE c.oid = '@extschema@.engagement_score_history_id_seq'::regclass;

------------------------------------------------------------------------------------------------
-- Reading scores: staleness knows the model version
------------------------------------------------------------------------------------------------
CREATE TEMP TABLE _es_view_acl ON COMMIT DROP AS
SELECT c.relacl FROM pg_class c WHERE c.oid = '@extschema@.contact_scores'::regclass;
DROP VIEW @extschema@.contact_scores;
CREATE VIEW @extschema@.contact_scores WITH (security_invoker = true) AS
SELECT s.*,
       (s.calculated_at < now() - p.max_score_age
        OR s.profile_version <> p.version
        OR s.model_version <> @extschema@.model_version()
        OR EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = s.profile AND pr.contact_id = s.contact_id)
        OR EXISTS (SELECT FROM @extschema@.event_changes c WHERE c.contact_id = s.contact_id)) AS is_stale
  FROM @extschema@.engagement_scores s JOIN @extschema@.scoring_profiles p ON p.name = s.profile;
COMMENT ON VIEW @extschema@.contact_scores IS
    'Stored scores with is_stale: older than the profile''s max_score_age, scored under an older profile version or model version, or events changed since';
SELECT @extschema@._upgrade_copy_grants(relacl, 'TABLE', '@extschema@.contact_scores') FROM pg_temp._es_view_acl;
DROP TABLE pg_temp._es_view_acl;
CREATE OR REPLACE FUNCTION @extschema@.cached_score(contact_id bigint, max_age interval DEFAULT '1 hour',
                                         profile text DEFAULT 'default')
RETURNS @extschema@.score
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r @extschema@.score;
BEGIN
    SELECT s.calculated_at, s.profile, s.composite, s.recency, s.frequency, s.monetary, s.time_decay, s.diversity,
           s.engagement_probability, s.conversion_probability, s.churn_risk, s.segment, s.opted_out,
           s.event_count, s.engaging_count, s.conversion_total, s.first_event_at, s.last_engaged_at,
           s.expected_engagements_30d, s.expected_conversion_value, s.expected_value_30d
      INTO r
      FROM @extschema@.contact_scores s
     WHERE s.profile = cached_score.profile AND s.contact_id = cached_score.contact_id
       AND NOT s.is_stale AND s.calculated_at >= now() - max_age;
    IF FOUND THEN
        RETURN r;
    END IF;
    RETURN @extschema@.engagement_score(contact_id, now(), profile);
END $$;

------------------------------------------------------------------------------------------------
-- Refresh: writes the new fields and the model version; another model version refreshes fully
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@._refresh_distribution(p @extschema@.scoring_profiles, refresh_at timestamptz,
                                                  full_refresh boolean) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed float8[];   -- composites leaving the distribution
    added   float8[];   -- composites entering it
BEGIN
    SELECT coalesce(array_agg(n.composite), '{}') INTO added FROM pg_temp._es_scored n;
    IF full_refresh THEN
        INSERT INTO @extschema@.score_distributions AS d (profile, sorted_composites, contacts, profile_version,
                                                          refreshed_at, oldest_score_at, model_version)
        VALUES (p.name, @extschema@._pack_sorted(added), cardinality(added), p.version, refresh_at, refresh_at,
                @extschema@.model_version())
        ON CONFLICT ON CONSTRAINT score_distributions_pkey DO UPDATE
           SET sorted_composites = excluded.sorted_composites, contacts = excluded.contacts,
               profile_version = excluded.profile_version, refreshed_at = excluded.refreshed_at,
               oldest_score_at = excluded.oldest_score_at, model_version = excluded.model_version;
    ELSE
        SELECT coalesce(array_agg(s.composite), '{}') INTO removed
          FROM @extschema@.engagement_scores s JOIN pg_temp._es_targets t USING (contact_id)
         WHERE s.profile = p.name;
        BEGIN
            UPDATE @extschema@.score_distributions d
               SET sorted_composites = @extschema@._merge_distribution(d.sorted_composites, removed, added),
                   contacts = d.contacts - cardinality(removed) + cardinality(added),
                   refreshed_at = refresh_at
             WHERE d.profile = p.name;
        EXCEPTION WHEN SQLSTATE '22000' THEN
            -- Out of step with the stored scores (a score edited by hand): rebuilt from them.
            RAISE WARNING 'the score distribution of profile "%" did not match its stored scores; rebuilt from them', p.name;
            UPDATE @extschema@.score_distributions d
               SET sorted_composites = @extschema@._pack_sorted(kept.composites || added),
                   contacts = cardinality(kept.composites) + cardinality(added), refreshed_at = refresh_at
              FROM (SELECT coalesce(array_agg(s.composite), '{}') AS composites
                      FROM @extschema@.engagement_scores s
                     WHERE s.profile = p.name
                       AND NOT EXISTS (SELECT FROM pg_temp._es_targets t WHERE t.contact_id = s.contact_id)) kept
             WHERE d.profile = p.name;
        END;
    END IF;
END $$;
CREATE OR REPLACE FUNCTION @extschema@._refresh_write_scores(p @extschema@.scoring_profiles, refresh_at timestamptz,
                                                  full_refresh boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rescored bigint;
BEGIN
    WITH prev AS (
        SELECT s.contact_id, s.composite, s.segment
          FROM @extschema@.engagement_scores s JOIN pg_temp._es_scored n USING (contact_id)
         WHERE s.profile = p.name),
    ranked AS (
        -- (the distribution is joined, not passed in a variable: a 1.6 MB constant would be
        -- copied through the planner; joined, _count_below detoasts it once for all rows)
        SELECT n.*,
               CASE WHEN full_refresh THEN 100 * percent_rank() OVER (ORDER BY n.composite)
                    WHEN d.contacts > 1 THEN 100.0 * @extschema@._count_below(d.sorted_composites, n.composite) / (d.contacts - 1)
                    ELSE 0 END AS pct
          FROM pg_temp._es_scored n
          LEFT JOIN @extschema@.score_distributions d ON d.profile = p.name),
    upd AS (
        UPDATE @extschema@.engagement_scores cur
           SET composite = n.composite, recency = n.recency, frequency = n.frequency, monetary = n.monetary,
               time_decay = n.time_decay, diversity = n.diversity, engagement_probability = n.engagement_probability,
               conversion_probability = n.conversion_probability, churn_risk = n.churn_risk, segment = n.segment,
               opted_out = n.opted_out, event_count = n.event_count, engaging_count = n.engaging_count,
               conversion_total = n.conversion_total, first_event_at = n.first_event_at,
               last_engaged_at = n.last_engaged_at, expected_engagements_30d = n.expected_engagements_30d,
               expected_conversion_value = n.expected_conversion_value, expected_value_30d = n.expected_value_30d,
               percentile_rank = n.pct, score_version = cur.score_version + 1, profile_version = p.version,
               model_version = @extschema@.model_version(), calculated_at = refresh_at
          FROM ranked n
         WHERE cur.profile = p.name AND cur.contact_id = n.contact_id
        RETURNING cur.contact_id, cur.composite, cur.segment, cur.score_version),
    ins AS (
        INSERT INTO @extschema@.engagement_scores (profile, contact_id, composite, recency, frequency, monetary,
               time_decay, diversity, engagement_probability, conversion_probability, churn_risk, segment,
               opted_out, event_count, engaging_count, conversion_total, first_event_at, last_engaged_at,
               expected_engagements_30d, expected_conversion_value, expected_value_30d, percentile_rank,
               score_version, profile_version, model_version, calculated_at)
        SELECT p.name, n.contact_id, n.composite, n.recency, n.frequency, n.monetary, n.time_decay, n.diversity,
               n.engagement_probability, n.conversion_probability, n.churn_risk, n.segment, n.opted_out,
               n.event_count, n.engaging_count, n.conversion_total, n.first_event_at, n.last_engaged_at,
               n.expected_engagements_30d, n.expected_conversion_value, n.expected_value_30d, n.pct,
               1, p.version, @extschema@.model_version(), refresh_at
          FROM ranked n
         WHERE NOT EXISTS (SELECT FROM prev WHERE prev.contact_id = n.contact_id)
        RETURNING contact_id, composite, segment, score_version),
    up AS (SELECT * FROM upd UNION ALL SELECT * FROM ins),
    hist AS (
        INSERT INTO @extschema@.engagement_score_history (profile, contact_id, composite, segment,
               previous_composite, previous_segment, score_version, recorded_at)
        SELECT p.name, up.contact_id, up.composite, up.segment, prev.composite, prev.segment, up.score_version, refresh_at
          FROM up LEFT JOIN prev USING (contact_id)
         WHERE prev.contact_id IS NULL
            OR abs(up.composite - prev.composite) >= p.history_min_delta
            OR up.segment <> prev.segment)
    SELECT count(*) INTO rescored FROM up;

    IF full_refresh THEN
        DELETE FROM @extschema@.engagement_scores s
         WHERE s.profile = p.name AND NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = s.contact_id);
    ELSE
        DELETE FROM @extschema@.engagement_scores s
         USING pg_temp._es_targets t
         WHERE s.profile = p.name AND s.contact_id = t.contact_id
           AND NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = t.contact_id);
    END IF;
    RETURN rescored;
END $$;

------------------------------------------------------------------------------------------------
-- Models
------------------------------------------------------------------------------------------------
ALTER TYPE @extschema@.model_fit ADD ATTRIBUTE se_r float8, ADD ATTRIBUTE se_alpha float8, ADD ATTRIBUTE se_a float8,
    ADD ATTRIBUTE se_b float8, ADD ATTRIBUTE message text;
COMMENT ON TYPE @extschema@.model_fit IS
    'A maximum-likelihood BTYD fit: parameters, summed log-likelihood, total weight, BFGS iterations, convergence, standard errors (observed information; NULL when it is not positive definite), why it did not converge';
CREATE TYPE @extschema@.gammagamma_fit AS (
    p float8, q float8, v float8, log_likelihood float8, n float8, iterations integer, converged boolean,
    se_p float8, se_q float8, se_v float8, message text);
COMMENT ON TYPE @extschema@.gammagamma_fit IS
    'A maximum-likelihood Gamma-Gamma fit: parameters, summed log-likelihood, total weight, iterations, convergence (q > 1 included), standard errors, why it did not converge';
COMMENT ON AGGREGATE @extschema@.btyd_summary(@extschema@.event_type, timestamptz, timestamptz) IS
    'One contact''s (x, t_x, t) in days since its first event (the birth day): engagement days after the birth day, the last of them, and as_of';
-- model_summary(event_type, occurred_at, conversion_value, as_of): btyd_summary and the
-- Gamma-Gamma summary (valued conversion days and their mean value) in one pass.
CREATE TYPE @extschema@.model_summary AS (x integer, t_x float8, t float8, value_days integer, mean_value float8);
COMMENT ON COLUMN @extschema@.model_summary.x IS 'Engagement days after the birth day';
COMMENT ON COLUMN @extschema@.model_summary.t_x IS 'Days from the birth day to the last of them (0 when x = 0)';
COMMENT ON COLUMN @extschema@.model_summary.t IS 'Days from the birth day to as_of';
COMMENT ON COLUMN @extschema@.model_summary.value_days IS 'Conversion days whose value is > 0';
COMMENT ON COLUMN @extschema@.model_summary.mean_value IS 'Their mean value (0 when there are none)';
COMMENT ON TYPE @extschema@.model_summary IS
    'A contact''s MBG/NBD summary (x, t_x, t in days) and Gamma-Gamma summary (value_days: conversion days with a value > 0, mean_value: their mean)';
CREATE FUNCTION @extschema@._model_summary_transfn(internal, @extschema@.event_type, timestamptz, numeric, timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_btyd_summary_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._model_summary_finalfn(internal)
RETURNS @extschema@.model_summary AS 'MODULE_PATHNAME', 'es_model_summary_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.model_summary(@extschema@.event_type, timestamptz, numeric, timestamptz) (
    SFUNC = @extschema@._model_summary_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._model_summary_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.model_summary(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'One contact''s summaries for both models as of a time: (x, t_x, t) for MBG/NBD, (value_days, mean_value) for Gamma-Gamma';

---- With an L2 penalty on the log-parameters (the same for every row).
CREATE FUNCTION @extschema@._fit_transfn(@extschema@.btyd_fit_state, integer, float8, float8, float8, float8)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8, weight float8, penalizer float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8, weight float8, penalizer float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8, float8) IS
    'MBG/NBD parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8, float8) IS
    'BG/NBD parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';

------------------------------------------------------------------------------------------------
-- fit_gammagamma(x, m [, weight [, penalizer]]): the Gamma-Gamma value model over customers with
-- x >= 1 valued conversion days of mean value m (rows with x = 0 are skipped).
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.gammagamma_fit_state;
CREATE FUNCTION @extschema@.gammagamma_fit_state_in(cstring) RETURNS @extschema@.gammagamma_fit_state
AS 'MODULE_PATHNAME', 'es_gammagamma_fit_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.gammagamma_fit_state_out(@extschema@.gammagamma_fit_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_gammagamma_fit_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE @extschema@.gammagamma_fit_state (
    INPUT = @extschema@.gammagamma_fit_state_in, OUTPUT = @extschema@.gammagamma_fit_state_out,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = double, STORAGE = extended);
COMMENT ON TYPE @extschema@.gammagamma_fit_state IS
    'fit_gammagamma''s partial state: {penalizer} when not 0, then the customer summaries [(x,m,weight),...]';
COMMENT ON FUNCTION @extschema@.gammagamma_fit_state_in(cstring) IS
    'Text input of gammagamma_fit_state: [(x,m,weight),...], after {penalizer} when not 0';
COMMENT ON FUNCTION @extschema@.gammagamma_fit_state_out(@extschema@.gammagamma_fit_state) IS
    'Text output of gammagamma_fit_state, its rows collapsed and sorted';
CREATE FUNCTION @extschema@._gammagamma_transfn(@extschema@.gammagamma_fit_state, integer, float8)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._gammagamma_transfn(@extschema@.gammagamma_fit_state, integer, float8, float8)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._gammagamma_transfn(@extschema@.gammagamma_fit_state, integer, float8, float8, float8)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._gammagamma_combinefn(@extschema@.gammagamma_fit_state, @extschema@.gammagamma_fit_state)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._gammagamma_finalfn(@extschema@.gammagamma_fit_state)
RETURNS @extschema@.gammagamma_fit AS 'MODULE_PATHNAME', 'es_gammagamma_fit_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.fit_gammagamma(x integer, m float8) (
    SFUNC = @extschema@._gammagamma_transfn, STYPE = @extschema@.gammagamma_fit_state,
    COMBINEFUNC = @extschema@._gammagamma_combinefn, FINALFUNC = @extschema@._gammagamma_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_gammagamma(x integer, m float8, weight float8) (
    SFUNC = @extschema@._gammagamma_transfn, STYPE = @extschema@.gammagamma_fit_state,
    COMBINEFUNC = @extschema@._gammagamma_combinefn, FINALFUNC = @extschema@._gammagamma_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_gammagamma(x integer, m float8, weight float8, penalizer float8) (
    SFUNC = @extschema@._gammagamma_transfn, STYPE = @extschema@.gammagamma_fit_state,
    COMBINEFUNC = @extschema@._gammagamma_combinefn, FINALFUNC = @extschema@._gammagamma_finalfn, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8) IS
    'Maximum-likelihood Gamma-Gamma parameters (p, q, v) of customers with x valued conversion days of mean value m';
COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8, float8) IS
    'Maximum-likelihood Gamma-Gamma parameters of weighted customer summaries (x, m)';
COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8, float8, float8) IS
    'Gamma-Gamma parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';

CREATE FUNCTION @extschema@.expected_conversion_value(x float8, m float8, p float8, q float8, v float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'es_expected_conversion_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.expected_conversion_value(float8, float8, float8, float8, float8) IS
    'Gamma-Gamma expected value of the next conversion day of a customer with x valued conversion days of mean value m: p (v + x m) / (p x + q - 1)';
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of customer summaries (x repeat events, t_x, t)';
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of weighted customer summaries (weight: how many identical customers)';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters of weighted customer summaries (weight: how many identical customers)';
COMMENT ON FUNCTION @extschema@.btyd_fit_state_in(cstring) IS
    'Text input of btyd_fit_state: [(x,t_x,t,weight),...], after {penalizer} when not 0';
COMMENT ON FUNCTION @extschema@.btyd_fit_state_out(@extschema@.btyd_fit_state) IS
    'Text output of btyd_fit_state, its rows collapsed and sorted (equal states print the same)';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters (Fader, Hardie & Lee 2005) of customer summaries (x, t_x, t)';


-- fit_model fits both models, records them and returns the records.
CREATE TEMP TABLE _es_fit_acl ON COMMIT DROP AS
SELECT p.proacl FROM pg_proc p WHERE p.oid = '@extschema@.fit_model(text, timestamptz)'::regprocedure;
DROP FUNCTION @extschema@.fit_model(text, timestamptz);
CREATE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now(),
                                      on_failure text DEFAULT 'error')
RETURNS SETOF @extschema@.model_fits
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
DECLARE
    p        @extschema@.scoring_profiles;
    res      record;
    mbg      @extschema@.model_fit;
    gg       @extschema@.gammagamma_fit;
    events   text;   -- the profile's events relation, bound (_bind_events_relation)
    failures text[] := '{}';
    mbg_row  @extschema@.model_fits;
    gg_row   @extschema@.model_fits;
BEGIN
    p := @extschema@._profile_or_error(profile);
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF on_failure NOT IN ('error', 'warning') THEN
        RAISE EXCEPTION 'on_failure must be ''error'' or ''warning'', not %', quote_literal(on_failure)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- NO KEY UPDATE: other profiles' refreshes (FOR KEY SHARE through the foreign keys) go on.
    PERFORM FROM @extschema@.scoring_profiles sp WHERE sp.name = p.name FOR NO KEY UPDATE;
    events := @extschema@._bind_events_relation(p);
    -- One scan: each contact's summaries for both models, identical summaries collapsed with
    -- their count as weight (on postgres_fdw partitions the summaries are computed in each shard).
    EXECUTE format($q$
        WITH c AS MATERIALIZED (
            SELECT @extschema@.model_summary(e.event_type, e.occurred_at, e.conversion_value, $1) AS s
              FROM %s e
             WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        b AS (SELECT (c.s).x, (c.s).t_x, (c.s).t, count(*) AS contacts FROM c GROUP BY 1, 2, 3),
        g AS (SELECT (c.s).value_days AS x, (c.s).mean_value AS m, count(*) AS contacts
                FROM c WHERE (c.s).value_days > 0 GROUP BY 1, 2)
        SELECT (SELECT @extschema@.fit_mbgnbd(b.x, b.t_x, b.t, b.contacts::float8, $2) FROM b) AS mbg,
               (SELECT @extschema@.fit_gammagamma(g.x, g.m, g.contacts::float8, $2) FROM g) AS gg,
               (SELECT count(*) FROM c) AS contacts,
               (SELECT coalesce(sum(g.contacts), 0) FROM g) AS valued$q$, events)
    INTO res USING as_of, p.fit_penalizer;
    IF events = 'pg_temp._es_events' THEN DROP VIEW pg_temp._es_events; END IF;
    mbg := res.mbg;
    gg := res.gg;

    IF mbg.n IS NULL THEN   -- (not "mbg IS NULL": a converged fit has a NULL message)
        failures := failures || format('MBG/NBD: no contact has an event at or before %s: nothing to fit', as_of);
        IF on_failure = 'error' THEN
            RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to fit', p.name, as_of
                USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT mbg.converged THEN
        failures := failures || format('%s (%s contacts)', mbg.message, res.contacts);
    END IF;
    INSERT INTO @extschema@.model_fits (profile, model, fitted_at, as_of, contacts, penalizer, parameters,
                                        standard_errors, log_likelihood, iterations, converged, stored, message)
    VALUES (p.name, 'mbgnbd', now(), as_of, res.contacts, p.fit_penalizer,
            CASE WHEN mbg.n IS NOT NULL THEN jsonb_build_object('r', mbg.r, 'alpha', mbg.alpha, 'a', mbg.a, 'b', mbg.b) END,
            CASE WHEN mbg.se_r IS NOT NULL
                 THEN jsonb_build_object('r', mbg.se_r, 'alpha', mbg.se_alpha, 'a', mbg.se_a, 'b', mbg.se_b) END,
            mbg.log_likelihood, mbg.iterations, coalesce(mbg.converged, false), coalesce(mbg.converged, false),
            CASE WHEN mbg.n IS NULL THEN 'no contact has an event at or before as_of'
                 WHEN NOT mbg.converged THEN mbg.message || '; the profile keeps its parameters' END)
    RETURNING * INTO mbg_row;

    -- Gamma-Gamma: no contact with a valued conversion is no failure (the defaults stay).
    IF gg.n IS NOT NULL AND NOT gg.converged THEN
        failures := failures || format('%s (%s contacts with valued conversions)', gg.message, res.valued);
    END IF;
    INSERT INTO @extschema@.model_fits (profile, model, fitted_at, as_of, contacts, penalizer, parameters,
                                        standard_errors, log_likelihood, iterations, converged, stored, message)
    VALUES (p.name, 'gammagamma', now(), as_of, res.valued, p.fit_penalizer,
            CASE WHEN gg.n IS NOT NULL THEN jsonb_build_object('p', gg.p, 'q', gg.q, 'v', gg.v) END,
            CASE WHEN gg.se_p IS NOT NULL THEN jsonb_build_object('p', gg.se_p, 'q', gg.se_q, 'v', gg.se_v) END,
            gg.log_likelihood, gg.iterations, coalesce(gg.converged, false), coalesce(gg.converged, false),
            CASE WHEN gg.n IS NULL THEN 'no contact has a conversion with a value: the profile keeps gg_p, gg_q, gg_v'
                 WHEN NOT gg.converged THEN gg.message || '; the profile keeps its parameters' END)
    RETURNING * INTO gg_row;

    IF cardinality(failures) > 0 THEN
        IF on_failure = 'error' THEN
            RAISE EXCEPTION 'fit_model of profile "%": %', p.name, array_to_string(failures, '; ')
                USING ERRCODE = 'data_exception',
                      HINT = 'Nothing was stored.  A positive fit_penalizer on the profile (e.g. 0.01) keeps parameters from running off; fit_model(..., on_failure => ''warning'') stores what converged.';
        END IF;
        RAISE WARNING 'fit_model of profile "%": %; the profile keeps the previous parameters of that model',
                      p.name, array_to_string(failures, '; ')
            USING HINT = 'A positive fit_penalizer on the profile (e.g. 0.01) keeps parameters from running off.';
    END IF;

    -- Storing bumps the profile's version: the next refresh rescores everyone.
    IF mbg_row.stored OR gg_row.stored THEN
        UPDATE @extschema@.scoring_profiles sp
           SET model_r = CASE WHEN mbg_row.stored THEN mbg.r ELSE sp.model_r END,
               model_alpha = CASE WHEN mbg_row.stored THEN mbg.alpha ELSE sp.model_alpha END,
               model_a = CASE WHEN mbg_row.stored THEN mbg.a ELSE sp.model_a END,
               model_b = CASE WHEN mbg_row.stored THEN mbg.b ELSE sp.model_b END,
               model_log_likelihood = CASE WHEN mbg_row.stored THEN mbg.log_likelihood ELSE sp.model_log_likelihood END,
               model_fitted_at = CASE WHEN mbg_row.stored THEN now() ELSE sp.model_fitted_at END,
               model_contacts = CASE WHEN mbg_row.stored THEN mbg.n::bigint ELSE sp.model_contacts END,
               gg_p = CASE WHEN gg_row.stored THEN gg.p ELSE sp.gg_p END,
               gg_q = CASE WHEN gg_row.stored THEN gg.q ELSE sp.gg_q END,
               gg_v = CASE WHEN gg_row.stored THEN gg.v ELSE sp.gg_v END
         WHERE sp.name = p.name;
    END IF;
    RETURN NEXT mbg_row;
    RETURN NEXT gg_row;
END $$;
COMMENT ON FUNCTION @extschema@.fit_model(text, timestamptz, text) IS
    'Fits the profile''s MBG/NBD (engagement days) and Gamma-Gamma (conversion value) models to its events as of a time, records both fits in model_fits, stores those that converged and returns the two records; on_failure ''error'' (by hand) or ''warning'' (scheduled)';
REVOKE EXECUTE ON FUNCTION @extschema@.fit_model(text, timestamptz, text) FROM PUBLIC;
SELECT @extschema@._upgrade_copy_grants(proacl, 'FUNCTION', '@extschema@.fit_model(text, timestamptz, text)')
  FROM pg_temp._es_fit_acl;
DROP TABLE pg_temp._es_fit_acl;

------------------------------------------------------------------------------------------------
-- Model validation (SCORING_MODEL.md "Model validation"): calibration up to calibration_end,
-- holdout to holdout_end.  _validation fills pg_temp._es_validation with every calibration
-- contact's summary, predicted and actual repeat engagement days, and returns the parameters used.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._validation(calibration_end timestamptz, holdout_end timestamptz, profile text,
                                        fit boolean) RETURNS @extschema@.model_fit
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
DECLARE
    p       @extschema@.scoring_profiles;
    events  text;
    params  @extschema@.model_fit;
    cal_day bigint;
    hold_day bigint;
BEGIN
    p := @extschema@._profile_or_error(profile);
    IF NOT (isfinite(calibration_end) AND isfinite(holdout_end)) THEN
        RAISE EXCEPTION 'calibration_end and holdout_end must be finite timestamps' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cal_day := floor(extract(epoch FROM calibration_end) / 86400);
    hold_day := floor(extract(epoch FROM holdout_end) / 86400);
    IF hold_day <= cal_day THEN
        RAISE EXCEPTION 'holdout_end (%) must fall on a later day than calibration_end (%)', holdout_end, calibration_end
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    events := @extschema@._bind_events_relation(p);
    IF to_regclass('pg_temp._es_validation') IS NOT NULL THEN   -- left by an earlier call in this transaction
        DROP TABLE pg_temp._es_validation;
    END IF;
    -- actual: the distinct days d with day(C) < d <= day(H) holding an engaging event
    EXECUTE format($q$
        CREATE TEMP TABLE _es_validation ON COMMIT DROP AS
        WITH cal AS (
            SELECT e.contact_id, @extschema@.btyd_summary(e.event_type, e.occurred_at, $1) AS s
              FROM %1$s e WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        hold AS (
            SELECT e.contact_id, count(DISTINCT floor(extract(epoch FROM e.occurred_at) / 86400)) AS days
              FROM %1$s e
             WHERE e.event_type IN ('opened', 'clicked', 'responded', 'converted')
               AND e.occurred_at >= to_timestamp(($2 + 1) * 86400.0) AND e.occurred_at < to_timestamp(($3 + 1) * 86400.0)
             GROUP BY e.contact_id)
        SELECT cal.contact_id, (cal.s).x, (cal.s).t_x, (cal.s).t, coalesce(hold.days, 0)::float8 AS actual,
               NULL::float8 AS predicted
          FROM cal LEFT JOIN hold USING (contact_id)$q$, events)
    USING calibration_end, cal_day, hold_day;
    IF events = 'pg_temp._es_events' THEN DROP VIEW pg_temp._es_events; END IF;
    IF NOT EXISTS (SELECT FROM pg_temp._es_validation) THEN
        RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to validate', p.name, calibration_end
            USING ERRCODE = 'no_data_found';
    END IF;
    IF fit THEN
        params := (SELECT @extschema@.fit_mbgnbd(v.x, v.t_x, v.t, v.n::float8, p.fit_penalizer)
                     FROM (SELECT x, t_x, t, count(*) AS n FROM pg_temp._es_validation GROUP BY 1, 2, 3) v);
        IF NOT params.converged THEN
            RAISE EXCEPTION 'the calibration fit of profile "%" did not converge: %', p.name, params.message
                USING ERRCODE = 'data_exception',
                      HINT = 'Validate with the profile''s parameters (fit => false), or set a positive fit_penalizer.';
        END IF;
    ELSE
        params := ROW(p.model_r, p.model_alpha, p.model_a, p.model_b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    END IF;
    -- one prediction per distinct summary
    UPDATE pg_temp._es_validation v SET predicted = d.predicted
      FROM (SELECT x, t_x, t, @extschema@.expected_engagements('mbgnbd', (hold_day - cal_day)::float8, x, t_x, t,
                                                                params.r, params.alpha, params.a, params.b) AS predicted
              FROM (SELECT DISTINCT x, t_x, t FROM pg_temp._es_validation) u) d
     WHERE v.x = d.x AND v.t_x = d.t_x AND v.t = d.t;
    RETURN params;
END $$;

CREATE FUNCTION @extschema@.validate_model(calibration_end timestamptz, holdout_end timestamptz,
                                           profile text DEFAULT 'default', fit boolean DEFAULT true)
RETURNS TABLE (x_bucket text, contacts bigint, predicted float8, actual float8)
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    RETURN QUERY
    SELECT CASE WHEN v.x >= 7 THEN '7+' ELSE v.x::text END, count(*), avg(v.predicted), avg(v.actual)
      FROM pg_temp._es_validation v
     GROUP BY 1 ORDER BY min(v.x);
    DROP TABLE pg_temp._es_validation;
END $$;
COMMENT ON FUNCTION @extschema@.validate_model(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout check: per calibration x (0..6, 7+), contacts and mean predicted vs actual repeat engagement days in the holdout (MBG/NBD fitted to the calibration period when fit, else the profile''s parameters)';

CREATE FUNCTION @extschema@.validate_model_summary(calibration_end timestamptz, holdout_end timestamptz,
                                                   profile text DEFAULT 'default', fit boolean DEFAULT true,
                                                   OUT contacts bigint, OUT predicted_total float8,
                                                   OUT actual_total float8, OUT mean_absolute_error float8,
                                                   OUT correlation float8, OUT horizon_days integer,
                                                   OUT parameters @extschema@.model_fit)
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    parameters := @extschema@._validation(calibration_end, holdout_end, profile, fit);
    horizon_days := floor(extract(epoch FROM holdout_end) / 86400) - floor(extract(epoch FROM calibration_end) / 86400);
    SELECT count(*), sum(v.predicted), sum(v.actual), avg(abs(v.predicted - v.actual)), corr(v.predicted, v.actual)
      INTO contacts, predicted_total, actual_total, mean_absolute_error, correlation
      FROM pg_temp._es_validation v;
    DROP TABLE pg_temp._es_validation;
END $$;
COMMENT ON FUNCTION @extschema@.validate_model_summary(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout totals: contacts, predicted and actual repeat engagement days, mean absolute error and correlation per contact, and the parameters used';

------------------------------------------------------------------------------------------------
-- Event sources: the CRM's own tables and views, kind maps, the refresh log (issue 13)
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.event_sources (
    relation        regclass PRIMARY KEY,
    contact_column  name NOT NULL DEFAULT 'contact_id',
    kind_column     name NOT NULL DEFAULT 'event_type',
    time_column     name NOT NULL DEFAULT 'occurred_at',
    value_column    name DEFAULT 'conversion_value',   -- NULL: the source has no conversion values
    kind_match      text NOT NULL DEFAULT 'exact' CHECK (kind_match IN ('exact', 'trim_lower')),
    on_unmapped     text NOT NULL DEFAULT 'count' CHECK (on_unmapped IN ('count', 'reject')),
    -- the tracked relations whose changes make scores of this source stale (besides the relation
    -- itself when it is a table): for a view, the tables under it
    changes_from    regclass[] NOT NULL DEFAULT '{}',
    set_by          text,   -- the role that defined the source (set by a trigger)
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.event_sources IS
    'How to read a CRM''s own events relation: its contact, kind, time and value columns, how its kinds are matched (exact, or trim_lower: trimmed and lower-cased on both sides) and what happens to rows of an unmapped kind (count: skipped, counted and warned about; reject: an error naming the kind)';

CREATE TABLE @extschema@.event_kind_map (
    relation   regclass NOT NULL REFERENCES @extschema@.event_sources (relation) ON DELETE CASCADE,
    kind       text NOT NULL,
    event_type @extschema@.event_type NOT NULL,
    PRIMARY KEY (relation, kind)
);
COMMENT ON TABLE @extschema@.event_kind_map IS
    'A source''s kinds and the event type each stands for; a kind not listed is unmapped (see event_sources.on_unmapped)';

------------------------------------------------------------------------------------------------
-- Every refresh, manual or scheduled: what it did (kept for each profile's refresh_log_retention)
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.refresh_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    profile           text NOT NULL REFERENCES @extschema@.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    mode              text NOT NULL CHECK (mode IN ('full', 'incremental')),
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    contacts_rescored bigint CHECK (contacts_rescored >= 0),
    unmapped_rows     bigint CHECK (unmapped_rows >= 0),   -- rows read but not scored: no mapping, or no contact or time
    unmapped_kinds    text[],                              -- the first few of those kinds
    skipped           boolean NOT NULL DEFAULT false,      -- another refresh of the profile held its lock
    error             text,                                -- SQLSTATE and message of a refresh that failed
    CHECK (finished_at >= started_at)
);
CREATE INDEX refresh_runs_profile_idx ON @extschema@.refresh_runs (profile, started_at);
COMMENT ON TABLE @extschema@.refresh_runs IS
    'Every refresh_scores: profile, mode, when, contacts rescored, rows it could not score, skipped (another refresh held the lock) or failed (with the error)';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_sources', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_kind_map', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refresh_runs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refresh_runs_id_seq', '');
SELECT @extschema@._upgrade_copy_grants(c.relacl, 'TABLE', t)
  FROM pg_class c, unnest(ARRAY['@extschema@.event_sources', '@extschema@.event_kind_map', '@extschema@.refresh_runs']) t
 WHERE c.oid = '@extschema@.engagement_score_history'::regclass;
SELECT @extschema@._upgrade_copy_grants(c.relacl, 'SEQUENCE', '@extschema@.refresh_runs_id_seq')
  FROM pg_class c WHERE c.oid = '@extschema@.engagement_score_history_id_seq'::regclass;

ALTER TABLE @extschema@.scoring_profiles
    ADD COLUMN refresh_log_retention interval NOT NULL DEFAULT '14 days' CHECK (refresh_log_retention >= interval '0');
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation IS
    'The events the profile scores: engagement_events, or a table or view of the CRM''s own, read as its row of event_sources says (without one: columns contact_id, event_type, occurred_at, conversion_value); changing it rescores everyone';
COMMENT ON COLUMN @extschema@.scoring_profiles.refresh_log_retention IS
    'How long refresh_runs keeps the profile''s refreshes (each refresh removes older ones)';

-- The change log knows the relation of each change.  The changes logged before the update (of
-- engagement_events or of a tracked relation, 1.3 did not say which) go to every profile's
-- pending set: nothing is lost.
ALTER TABLE @extschema@.event_changes ADD COLUMN relation regclass;
INSERT INTO @extschema@.pending_rescore (profile, contact_id)
SELECT sp.name, c.contact_id FROM (SELECT DISTINCT contact_id FROM @extschema@.event_changes) c
 CROSS JOIN @extschema@.scoring_profiles sp;
DELETE FROM @extschema@.event_changes;
ALTER TABLE @extschema@.event_changes ALTER COLUMN relation SET NOT NULL;
COMMENT ON TABLE @extschema@.event_changes IS
    'Contacts whose events changed since the last refresh, and in which tracked relation (appended by the tracking triggers, drained by refresh_scores into the pending sets of the profiles reading that relation)';
-- Whether a role (that exists) may read a relation: SELECT on it and USAGE on its schema.
CREATE FUNCTION @extschema@._role_may_read(role_name text, rel regclass) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role_name)
                    AND has_schema_privilege(role_name, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = rel), 'USAGE')
                    AND has_table_privilege(role_name, rel, 'SELECT'), false)
$$;

-- The source of a relation: its row of event_sources, or the defaults (engagement_events' columns).
CREATE FUNCTION @extschema@._source_of(events regclass) RETURNS @extschema@.event_sources
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src @extschema@.event_sources;
BEGIN
    SELECT * INTO src FROM @extschema@.event_sources s WHERE s.relation = events;
    IF NOT FOUND THEN
        src.relation := events;
        src.contact_column := 'contact_id';
        src.kind_column := 'event_type';
        src.time_column := 'occurred_at';
        src.value_column := 'conversion_value';
        src.kind_match := 'exact';
        src.on_unmapped := 'count';
        src.changes_from := '{}';
    END IF;
    RETURN src;
END $$;

-- The relations whose tracked changes make a source's scores stale: the relation itself (a
-- partitioned one stands for its partitions) unless it is a view, and its changes_from.
CREATE FUNCTION @extschema@._source_feeds(events regclass) RETURNS regclass[]
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN c.relkind = 'v' THEN s.changes_from ELSE events || s.changes_from END
      FROM pg_class c, @extschema@._source_of(events) s
     WHERE c.oid = events
$$;

-- The column of a relation, or NULL.
CREATE FUNCTION @extschema@._column_type(rel regclass, col name) RETURNS regtype
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.atttypid::regtype FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0
       AND NOT a.attisdropped
$$;

-- A source checked against its relation: the columns exist with types the model can read
-- without running anything of the relation owner's (built-in integer, timestamptz and numeric
-- types; the kind as engagement.event_type or through the kind map).  Raises 42703 or 42804.
CREATE FUNCTION @extschema@._source_check(src @extschema@.event_sources) RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col record;
    typ regtype;
BEGIN
    FOR col IN SELECT * FROM (VALUES ('contact', src.contact_column, ARRAY['smallint', 'integer', 'bigint']::regtype[]),
                                     ('time', src.time_column, ARRAY['timestamp with time zone']::regtype[]),
                                     ('value', src.value_column, ARRAY['numeric', 'smallint', 'integer', 'bigint', 'real', 'double precision']::regtype[]),
                                     ('kind', src.kind_column, ARRAY['@extschema@.event_type', 'text', 'character varying',
                                                                     'character', 'name']::regtype[])) v(what, name, types)
                WHERE v.name IS NOT NULL
    LOOP
        typ := @extschema@._column_type(src.relation, col.name);
        IF typ IS NULL THEN
            RAISE EXCEPTION 'events relation % has no column % (its % column)', src.relation, quote_ident(col.name), col.what
                USING ERRCODE = 'undefined_column',
                      HINT = 'Name its columns in engagement.event_sources (define_event_source).';
        END IF;
        IF col.types IS NOT NULL AND NOT typ = ANY (col.types) THEN
            RAISE EXCEPTION 'the % column % of events relation % is %, not one of %', col.what, quote_ident(col.name),
                            src.relation, typ, col.types
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
END $$;

-- The kind column as an event type: the column itself when it is engagement.event_type, else a
-- CASE over the source's kind map (constants only; trim_lower compares trimmed, lower-cased kinds),
-- NULL for a kind the map lacks.
CREATE FUNCTION @extschema@._source_kind_expr(src @extschema@.event_sources) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text := 'e.' || quote_ident(src.kind_column);
    arms text;
BEGIN
    IF @extschema@._column_type(src.relation, src.kind_column) = '@extschema@.event_type'::regtype THEN
        RETURN kind;
    END IF;
    kind := kind || '::text';
    IF src.kind_match = 'trim_lower' THEN
        kind := format('lower(btrim(%s))', kind);
    END IF;
    SELECT string_agg(format('WHEN %L THEN %L::@extschema@.event_type',
                             CASE src.kind_match WHEN 'trim_lower' THEN lower(btrim(m.kind)) ELSE m.kind END, m.event_type),
                      ' ' ORDER BY m.kind)
      INTO arms
      FROM @extschema@.event_kind_map m WHERE m.relation = src.relation;
    RETURN CASE WHEN arms IS NULL THEN 'NULL::@extschema@.event_type' ELSE format('CASE %s %s END', kind, arms) END;
END $$;

-- The rows of a source as the model reads them, from rel (the relation's name, or a name bound to
-- it): SELECT contact_id, event_type (NULL: unmapped), occurred_at, conversion_value, kind (the
-- CRM's own, as text; NULL when the kind column is engagement.event_type already) FROM ...  No cast
-- a relation's own types do not need: the whole query stays shippable to a postgres_fdw shard
-- (which cannot ship a text cast of an enum).
CREATE FUNCTION @extschema@._source_select(src @extschema@.event_sources, rel text) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    typed_kind boolean := @extschema@._column_type(src.relation, src.kind_column) = '@extschema@.event_type'::regtype;
    own        boolean := src.relation = '@extschema@.engagement_events'::regclass;
    value_expr text := CASE WHEN src.value_column IS NULL THEN 'NULL::numeric'
                            WHEN @extschema@._column_type(src.relation, src.value_column) = 'numeric'::regtype
                            THEN format('e.%I', src.value_column)
                            ELSE format('e.%I::numeric', src.value_column) END;
BEGIN
    -- A row of a CRM's own relation the model cannot read (an infinite time, a negative, NaN or
    -- infinite value: engagement_events' checks refuse them) is, like an unmapped kind, not scored
    -- and counted, instead of stopping every refresh of the profile.
    RETURN format('SELECT e.%I AS contact_id, %s AS event_type, e.%I AS occurred_at, %s AS conversion_value, %s AS kind FROM %s e',
                  src.contact_column,
                  CASE WHEN own THEN @extschema@._source_kind_expr(src)
                       ELSE format('CASE WHEN isfinite(e.%I) AND (%s IS NULL OR (%s >= 0 AND %s < ''Infinity'' AND %s <> ''NaN'')) THEN %s END',
                                   src.time_column, value_expr, value_expr, value_expr, value_expr,
                                   @extschema@._source_kind_expr(src)) END,
                  src.time_column, value_expr,
                  CASE WHEN typed_kind THEN 'NULL::text' ELSE format('e.%I::text', src.kind_column) END,
                  rel);
END $$;

CREATE OR REPLACE FUNCTION @extschema@._events_relation_or_error(events regclass) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad text;
BEGIN
    IF events = '@extschema@.engagement_events'::regclass THEN
        RETURN events::text;
    END IF;
    -- the relation and, when partitioned, every partition (pg_partition_tree lists only those)
    SELECT c.oid::regclass::text INTO bad
      FROM (SELECT events AS relid UNION SELECT t.relid FROM pg_partition_tree(events) t) t
      JOIN pg_class c ON c.oid = t.relid
     WHERE c.relkind NOT IN ('r', 'p', 'f', 'v') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % must be a table (plain, partitioned or foreign) or a view', bad
            USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT c.oid::regclass::text INTO bad
      FROM (SELECT events AS relid UNION SELECT t.relid FROM pg_partition_tree(events) t) t
      JOIN pg_class c ON c.oid = t.relid JOIN pg_roles r ON r.oid = c.relowner
     WHERE NOT r.rolsuper AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % is owned by another role that is not a superuser', bad
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Refresh as its owner, or give the relation to a superuser.';
    END IF;
    PERFORM @extschema@._source_check(@extschema@._source_of(events));
    RETURN events::text;
END $$;
CREATE FUNCTION @extschema@._live_events_or_error(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad text;
BEGIN
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN p.events_relation::text;
    END IF;
    SELECT c.oid::regclass::text INTO bad
      FROM (SELECT p.events_relation AS relid UNION SELECT t.relid FROM pg_partition_tree(p.events_relation) t) t
      JOIN pg_class c ON c.oid = t.relid JOIN pg_roles r ON r.oid = c.relowner
     WHERE (c.relkind = 'v' OR c.relrowsecurity) AND NOT r.rolsuper
       AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" is a view or has row-level security, owned by another role that is not a superuser: its code would run as you',
                        bad, p.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Read it as its owner or a superuser (stored scores: engagement_scores).';
    END IF;
    RETURN p.events_relation::text;
END $$;
-- A source is checked when it is written, by the role that writes it: it may read the relation,
-- the columns are there with types the model reads (pg_restore, a superuser, brings rows as they
-- were).  A changed source, or kind map, makes every profile reading the relation rescore.
CREATE FUNCTION @extschema@._source_check_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.relation = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is read as it is: it has no source to define' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.set_by IS NOT NULL AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN NEW;
    END IF;
    -- (only the tables feeding it changed, e.g. by untrack_event_changes: the relation is as it was checked)
    IF TG_OP = 'UPDATE' AND (NEW.relation, NEW.contact_column, NEW.kind_column, NEW.time_column, NEW.value_column,
                             NEW.kind_match, NEW.on_unmapped, NEW.set_by)
                            IS NOT DISTINCT FROM (OLD.relation, OLD.contact_column, OLD.kind_column, OLD.time_column,
                                                  OLD.value_column, OLD.kind_match, OLD.on_unmapped, OLD.set_by)
       AND NOT EXISTS (SELECT FROM unnest(NEW.changes_from) f(rel) WHERE NOT f.rel = ANY (OLD.changes_from)) THEN
        RETURN NEW;
    END IF;
    IF NOT @extschema@._role_may_read(current_user, NEW.relation) THEN
        RAISE EXCEPTION 'role "%" may not read %', current_user, NEW.relation USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = NEW.relation) NOT IN ('r', 'p', 'f', 'v') THEN
        RAISE EXCEPTION 'an event source must be a table (plain, partitioned or foreign) or a view, not %', NEW.relation
            USING ERRCODE = 'wrong_object_type';
    END IF;
    PERFORM @extschema@._source_check(NEW);
    IF NEW.kind_match = 'trim_lower' THEN
        PERFORM @extschema@._kind_map_unambiguous_or_error(NEW.relation);
    END IF;
    -- 4: the tracking triggers read the contact column they were made with
    IF TG_OP = 'UPDATE' AND NEW.contact_column <> OLD.contact_column AND EXISTS (
           SELECT FROM pg_trigger t WHERE t.tgrelid = NEW.relation AND t.tgname LIKE 'engagement\_track\_%') THEN
        RAISE EXCEPTION 'the change-tracking triggers of % read column %', NEW.relation, quote_ident(OLD.contact_column)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run engagement.untrack_event_changes on it first, then engagement.track_event_changes again.';
    END IF;
    IF EXISTS (SELECT FROM unnest(NEW.changes_from) f(rel) JOIN pg_class c ON c.oid = f.rel WHERE c.relkind NOT IN ('r', 'p', 'f')) THEN
        RAISE EXCEPTION 'changes_from lists tables whose changes are tracked, not views' USING ERRCODE = 'wrong_object_type';
    END IF;
    NEW.set_by := current_user;
    RETURN NEW;
END $$;
CREATE TRIGGER event_sources_check BEFORE INSERT OR UPDATE ON @extschema@.event_sources
    FOR EACH ROW EXECUTE FUNCTION @extschema@._source_check_row();

-- With kind_match trim_lower, two kinds of a map that are one once trimmed and lower-cased would be
-- ambiguous (the first would win): refused when the map is written, and when a source switches to
-- trim_lower (_source_check_row).
CREATE FUNCTION @extschema@._kind_map_unambiguous_or_error(rel regclass) RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kinds text;
BEGIN
    SELECT string_agg(quote_literal(m.kind), ' and ' ORDER BY m.kind) INTO kinds
      FROM @extschema@.event_kind_map m WHERE m.relation = rel
     GROUP BY lower(btrim(m.kind)) HAVING count(*) > 1
     ORDER BY 1 LIMIT 1;
    IF kinds IS NOT NULL THEN
        RAISE EXCEPTION 'kinds % of % are one kind once trimmed and lower-cased: kind_match trim_lower would be ambiguous',
                        kinds, rel
            USING ERRCODE = 'unique_violation';
    END IF;
END $$;

CREATE FUNCTION @extschema@._kind_map_check_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT s.kind_match FROM @extschema@.event_sources s WHERE s.relation = NEW.relation) = 'trim_lower' THEN
        PERFORM @extschema@._kind_map_unambiguous_or_error(NEW.relation);
    END IF;
    RETURN NULL;
END $$;
-- (after the row is written, so that the check sees the map as it now is)
CREATE TRIGGER event_kind_map_check AFTER INSERT OR UPDATE ON @extschema@.event_kind_map
    FOR EACH ROW EXECUTE FUNCTION @extschema@._kind_map_check_row();

CREATE FUNCTION @extschema@._source_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- (touching updated_at bumps the version: the profiles' next refreshes are full ones; each
    -- statement reads only the transition tables its event has)
    IF TG_OP = 'INSERT' THEN
        UPDATE @extschema@.scoring_profiles sp SET updated_at = clock_timestamp()
         WHERE sp.events_relation IN (SELECT n.relation FROM new_rows n);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE @extschema@.scoring_profiles sp SET updated_at = clock_timestamp()
         WHERE sp.events_relation IN (SELECT o.relation FROM old_rows o);
    ELSE
        UPDATE @extschema@.scoring_profiles sp SET updated_at = clock_timestamp()
         WHERE sp.events_relation IN (SELECT n.relation FROM new_rows n UNION SELECT o.relation FROM old_rows o);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER event_sources_changed_insert AFTER INSERT ON @extschema@.event_sources
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_sources_changed_update AFTER UPDATE ON @extschema@.event_sources
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_sources_changed_delete AFTER DELETE ON @extschema@.event_sources
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_kind_map_changed_insert AFTER INSERT ON @extschema@.event_kind_map
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_kind_map_changed_update AFTER UPDATE ON @extschema@.event_kind_map
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_kind_map_changed_delete AFTER DELETE ON @extschema@.event_kind_map
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();

-- define_event_source: a source in one call (its row of event_sources and its kind map, replaced).
CREATE FUNCTION @extschema@.define_event_source(relation regclass, kinds jsonb DEFAULT NULL,
                                                contact_column name DEFAULT 'contact_id',
                                                kind_column name DEFAULT 'event_type',
                                                time_column name DEFAULT 'occurred_at',
                                                value_column name DEFAULT 'conversion_value',
                                                kind_match text DEFAULT 'exact',
                                                on_unmapped text DEFAULT 'count',
                                                changes_from regclass[] DEFAULT '{}')
RETURNS regclass
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad text;
BEGIN
    IF relation IS NULL OR contact_column IS NULL OR kind_column IS NULL OR time_column IS NULL
       OR kind_match IS NULL OR on_unmapped IS NULL OR changes_from IS NULL THEN
        RAISE EXCEPTION 'define_event_source: only kinds and value_column may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kinds IS NOT NULL AND jsonb_typeof(kinds) <> 'object' THEN
        RAISE EXCEPTION 'kinds must be a JSON object of the CRM''s kinds and their event types, e.g. {"open": "opened"}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(format('%s: %s', k.key, k.value), ', ') INTO bad
      FROM jsonb_each(coalesce(kinds, '{}')) k
     WHERE jsonb_typeof(k.value) <> 'string'
        OR NOT (k.value #>> '{}') = ANY (enum_range(NULL::@extschema@.event_type)::text[]);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'kinds maps to what is not an event type: %', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The event types: ' || array_to_string(enum_range(NULL::@extschema@.event_type)::text[], ', ') || '.';
    END IF;
    INSERT INTO @extschema@.event_sources AS s (relation, contact_column, kind_column, time_column, value_column,
                                                kind_match, on_unmapped, changes_from)
    VALUES (relation, contact_column, kind_column, time_column, value_column, kind_match, on_unmapped, changes_from)
    ON CONFLICT ON CONSTRAINT event_sources_pkey DO UPDATE
       SET contact_column = excluded.contact_column, kind_column = excluded.kind_column,
           time_column = excluded.time_column, value_column = excluded.value_column,
           kind_match = excluded.kind_match, on_unmapped = excluded.on_unmapped, changes_from = excluded.changes_from;
    DELETE FROM @extschema@.event_kind_map m WHERE m.relation = define_event_source.relation;
    INSERT INTO @extschema@.event_kind_map (relation, kind, event_type)
    SELECT define_event_source.relation, k.key, (k.value #>> '{}')::@extschema@.event_type
      FROM jsonb_each(coalesce(kinds, '{}')) k;
    RETURN relation;
END $$;
COMMENT ON FUNCTION @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[]) IS
    'Defines (or replaces) how a CRM''s own events relation is read: its columns, its kinds mapped to event types ({"open": "opened", ...}), kind_match exact or trim_lower, on_unmapped count or reject, and for a view the tables whose tracked changes feed it';
REVOKE EXECUTE ON FUNCTION @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@._profile_events_or_error(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p.events_relation <> '@extschema@.engagement_events'::regclass
       AND NOT @extschema@._role_may_read(p.events_relation_set_by, p.events_relation) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" was set by %, which may not read it',
                        p.events_relation, p.name,
                        coalesce('role ' || quote_ident(nullif(p.events_relation_set_by, '')), 'a role not recorded (before 1.3)')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('As a role that may read it: UPDATE engagement.scoring_profiles SET events_relation_set_by = current_user WHERE name = %L;',
                                p.name);
    END IF;
    -- A security_invoker view reads its tables with the reader's rights: a refreshing superuser would
    -- read for that role what it may not read itself.
    IF EXISTS (SELECT FROM pg_class c, unnest(c.reloptions) o
                WHERE c.oid = p.events_relation AND o ~* '^security_invoker=(true|on|yes|1)$')
       AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = p.events_relation_set_by AND r.rolsuper) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" is a security_invoker view, which a refresh would read with its own rights, not those of role %',
                        p.events_relation, p.name, quote_ident(p.events_relation_set_by)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Score a view without security_invoker (its tables are read with its owner''s rights), or have a superuser set events_relation.';
    END IF;
    -- With row-level security, that role may read fewer rows than a refreshing superuser sees.
    IF p.events_relation <> '@extschema@.engagement_events'::regclass
       AND EXISTS (SELECT FROM pg_class c
                    WHERE c.relrowsecurity
                      AND c.oid IN (SELECT p.events_relation UNION SELECT t.relid FROM pg_partition_tree(p.events_relation) t))
       AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = p.events_relation_set_by AND (r.rolsuper OR r.rolbypassrls)) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" has row-level security, which role % does not bypass',
                        p.events_relation, p.name, quote_ident(p.events_relation_set_by)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A refresh would score rows that role cannot read: score a relation without row-level security, or have a role that bypasses it set events_relation.';
    END IF;
    RETURN @extschema@._events_relation_or_error(p.events_relation);
END $$;
CREATE OR REPLACE FUNCTION @extschema@._bind_events_relation(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    events text := @extschema@._profile_events_or_error(p);
    src @extschema@.event_sources := @extschema@._source_of(p.events_relation);
BEGIN
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN '(' || @extschema@._source_select(src, events) || ')';   -- in the extension's own schema
    END IF;
    EXECUTE 'CREATE TEMP VIEW _es_events AS ' || @extschema@._source_select(src, events);
    IF (SELECT array_agg(DISTINCT d.refobjid)
          FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE r.ev_class = 'pg_temp._es_events'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid <> r.ev_class) IS DISTINCT FROM ARRAY[p.events_relation::oid] THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" changed name while it was checked', p.events_relation, p.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN 'pg_temp._es_events';
END $$;
CREATE OR REPLACE FUNCTION @extschema@._profile_check_events_relation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.events_relation = OLD.events_relation
       AND NEW.events_relation_set_by IS NOT DISTINCT FROM OLD.events_relation_set_by THEN
        RETURN NEW;
    END IF;
    IF NEW.events_relation = '@extschema@.engagement_events'::regclass THEN
        NEW.events_relation_set_by := NULL;
        RETURN NEW;
    END IF;
    -- pg_restore (a superuser) brings the role that chose it along, or '' (unknown) from 1.2
    IF TG_OP = 'INSERT' AND NEW.events_relation_set_by IS NOT NULL
       AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN NEW;
    END IF;
    IF NOT @extschema@._role_may_read(current_user, NEW.events_relation) THEN
        RAISE EXCEPTION 'role "%" may not read events_relation %', current_user, NEW.events_relation
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A profile reads only a relation the role that sets it may read (SELECT, and USAGE on its schema).';
    END IF;
    -- readable as a source (the columns, or its row of event_sources): said now, not at the first refresh
    PERFORM @extschema@._events_relation_or_error(NEW.events_relation);
    NEW.events_relation_set_by := current_user;
    RETURN NEW;
END $$;
CREATE FUNCTION @extschema@._tracked_relation_check(rel oid, trigger_name name, transition_tables boolean,
                                                    contact_column name)
RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute a
                    WHERE a.attrelid = rel AND a.attname = contact_column AND NOT a.attisdropped
                      AND a.atttypid IN ('pg_catalog.int8'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int2'::regtype)) THEN
        RAISE EXCEPTION 'change tracking of % needs a contact column % of type bigint, integer or smallint',
                        rel::regclass, quote_ident(contact_column)
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF transition_tables AND NOT EXISTS (
           SELECT FROM pg_trigger t
            WHERE t.tgrelid = rel AND t.tgname = trigger_name
              AND ((t.tgtype & 4) = 0 OR t.tgnewtable = 'new_events')      -- INSERT
              AND ((t.tgtype & 16) = 0 OR (t.tgnewtable = 'new_events' AND t.tgoldtable = 'old_events'))   -- UPDATE
              AND ((t.tgtype & 8) = 0 OR t.tgoldtable = 'old_events')) THEN   -- DELETE
        RAISE EXCEPTION 'change-tracking trigger % on % must name its transition tables new_events and old_events',
                        trigger_name, rel::regclass
            USING ERRCODE = 'invalid_object_definition',
                  HINT = 'Let track_event_changes create the triggers.';
    END IF;
END $$;
CREATE OR REPLACE FUNCTION @extschema@._track_event_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact name := coalesce(TG_ARGV[0], 'contact_id');
BEGIN
    IF TG_RELID <> '@extschema@.engagement_events'::regclass THEN
        PERFORM @extschema@._tracked_relation_check(TG_RELID, TG_NAME, TG_OP <> 'TRUNCATE', contact);
    END IF;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO @extschema@.event_changes (contact_id, relation)
                        SELECT DISTINCT %I, $1 FROM new_events WHERE %I IS NOT NULL', contact, contact) USING TG_RELID;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('INSERT INTO @extschema@.event_changes (contact_id, relation)
                        SELECT DISTINCT %I, $1 FROM old_events WHERE %I IS NOT NULL', contact, contact) USING TG_RELID;
    ELSIF TG_OP = 'UPDATE' AND TG_RELID <> '@extschema@.engagement_events'::regclass THEN
        EXECUTE format('INSERT INTO @extschema@.event_changes (contact_id, relation)
                        SELECT c, $1 FROM (SELECT %I FROM old_events UNION SELECT %I FROM new_events) u(c)
                         WHERE c IS NOT NULL', contact, contact) USING TG_RELID;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only updates of what the model reads make a contact's score stale.  EXECUTE plans the
        -- join for this statement's transition tables: a plan kept from a one-row UPDATE would
        -- join thousands of rows by nested loops.
        EXECUTE $q$
        INSERT INTO @extschema@.event_changes (contact_id, relation)
        SELECT c, '@extschema@.engagement_events'::regclass
          FROM (SELECT o.contact_id, n.contact_id
                  FROM old_events o JOIN new_events n USING (id)
                 WHERE (o.contact_id, o.event_type, o.occurred_at, o.conversion_value)
                       IS DISTINCT FROM (n.contact_id, n.event_type, n.occurred_at, n.conversion_value)) ch(a, b),
               LATERAL (VALUES (ch.a), (ch.b)) v(c)
         GROUP BY c$q$;
    ELSE  -- TRUNCATE: every scored contact may have lost its events
        INSERT INTO @extschema@.event_changes (contact_id, relation)
        SELECT DISTINCT s.contact_id, TG_RELID::regclass FROM @extschema@.engagement_scores s;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION @extschema@._track_event_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact name := coalesce(TG_ARGV[0], 'contact_id');
    rel regclass := coalesce(TG_ARGV[1]::oid, TG_RELID);   -- the tracked relation, not the partition that fired
    old_contact bigint;
    new_contact bigint;
BEGIN
    IF TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION '_track_event_change is a row-level trigger function' USING ERRCODE = 'invalid_object_definition';
    END IF;
    PERFORM @extschema@._tracked_relation_check(TG_RELID, TG_NAME, false, contact);
    -- (the one column read, of a built-in integer type: nothing else of the row is evaluated)
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        EXECUTE format('SELECT ($1).%I', contact) INTO old_contact USING OLD;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        EXECUTE format('SELECT ($1).%I', contact) INTO new_contact USING NEW;
    END IF;
    IF old_contact IS NOT NULL THEN
        INSERT INTO @extschema@.event_changes (contact_id, relation) VALUES (old_contact, rel);
    END IF;
    IF new_contact IS NOT NULL AND new_contact IS DISTINCT FROM old_contact THEN
        INSERT INTO @extschema@.event_changes (contact_id, relation) VALUES (new_contact, rel);
    END IF;
    RETURN NULL;
END $$;
DROP FUNCTION @extschema@._tracked_relation_check(oid, name, boolean);
CREATE FUNCTION @extschema@._drop_tracking_triggers(events regclass) RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    made name;
    dropped integer := 0;
BEGIN
    FOR made IN SELECT t.tgname FROM pg_trigger t
                 WHERE t.tgrelid = events AND NOT t.tgisinternal
                   AND t.tgname IN ('engagement_track_change', 'engagement_track_insert', 'engagement_track_update',
                                    'engagement_track_delete', 'engagement_track_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', made, events);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;
CREATE TEMP TABLE _es_track_acl ON COMMIT DROP AS
SELECT p.proacl FROM pg_proc p WHERE p.oid = '@extschema@.track_event_changes(regclass)'::regprocedure;
DROP FUNCTION @extschema@.track_event_changes(regclass);
CREATE FUNCTION @extschema@.track_event_changes(events regclass, for_source regclass DEFAULT NULL,
                                                contact_column name DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact name;
BEGIN
    IF events IS NULL THEN
        RAISE EXCEPTION 'track_event_changes: events must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF events = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is always tracked' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = events) NOT IN ('r', 'p', 'f') THEN
        RAISE EXCEPTION '% is not a table: track the tables under it, naming the view as for_source', events
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('SELECT engagement.track_event_changes(''<table>'', for_source => %L);', events::text);
    END IF;
    IF for_source IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.event_sources s WHERE s.relation = for_source) THEN
        RAISE EXCEPTION '% has no event source to feed', for_source
            USING ERRCODE = 'undefined_object', HINT = 'Define it first: engagement.define_event_source.';
    END IF;
    -- the table's own contact column: given, or its own source's, or (a table under a view source)
    -- the view's
    contact := coalesce(contact_column,
                        (SELECT s.contact_column FROM @extschema@.event_sources s WHERE s.relation = events),
                        (@extschema@._source_of(coalesce(for_source, events))).contact_column);
    PERFORM @extschema@._tracked_relation_check(events, '', false, contact);
    -- the relation must be one a refresh may read (owner, columns) unless it only feeds another source
    IF for_source IS NULL THEN
        PERFORM @extschema@._events_relation_or_error(events);
    ELSE
        UPDATE @extschema@.event_sources s SET changes_from = s.changes_from || events
         WHERE s.relation = for_source AND NOT events = ANY (s.changes_from);
    END IF;
    PERFORM @extschema@._drop_tracking_triggers(events);   -- run again, it replaces the triggers it made
    -- the relation itself or any partition (pg_partition_tree lists only partitioned tables' trees)
    IF EXISTS (SELECT FROM pg_class c
                WHERE c.relkind = 'f' AND c.oid IN (SELECT events UNION SELECT t.relid FROM pg_partition_tree(events) t)) THEN
        EXECUTE format('CREATE TRIGGER engagement_track_change AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION @extschema@._track_event_change(%L, %L)', events, contact, events::oid);
    ELSE
        EXECUTE format('CREATE TRIGGER engagement_track_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes(%L)', events, contact);
        EXECUTE format('CREATE TRIGGER engagement_track_update AFTER UPDATE ON %s '
                       'REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes(%L)', events, contact);
        EXECUTE format('CREATE TRIGGER engagement_track_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes(%L)', events, contact);
    END IF;
    EXECUTE format('CREATE TRIGGER engagement_track_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes(%L)', events, contact);
END $$;
COMMENT ON FUNCTION @extschema@.track_event_changes(regclass, regclass, name) IS
    'Adds (or replaces) change-tracking triggers on a table of the CRM''s own (run it again after attaching partitions), so incremental refreshes of the profiles reading it (or for_source, a view over it) see the changes written through this server';
REVOKE EXECUTE ON FUNCTION @extschema@.track_event_changes(regclass, regclass, name) FROM PUBLIC;
CREATE FUNCTION @extschema@.untrack_event_changes(events regclass) RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped integer;
BEGIN
    IF events = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is always tracked' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    dropped := @extschema@._drop_tracking_triggers(events);
    UPDATE @extschema@.event_sources s SET changes_from = array_remove(s.changes_from, events)
     WHERE events = ANY (s.changes_from);
    RETURN dropped;
END $$;
COMMENT ON FUNCTION @extschema@.untrack_event_changes(regclass) IS
    'Removes the change-tracking triggers track_event_changes made on a table (then DROP EXTENSION no longer depends on them); returns how many';
REVOKE EXECUTE ON FUNCTION @extschema@.untrack_event_changes(regclass) FROM PUBLIC;
-- The roles that could track relations (grant_admin_access) may now define sources and untrack.
SELECT @extschema@._upgrade_copy_grants(proacl, 'FUNCTION', f)
  FROM pg_temp._es_track_acl,
       unnest(ARRAY['@extschema@.track_event_changes(regclass, regclass, name)', '@extschema@.untrack_event_changes(regclass)',
                    '@extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[])']) f;
DROP TABLE pg_temp._es_track_acl;

-- The refresh: changes drained per relation, unmapped rows counted, every run recorded.
CREATE OR REPLACE FUNCTION @extschema@._refresh_drain_changes(p @extschema@.scoring_profiles) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    feeds regclass[] := @extschema@._source_feeds(p.events_relation);
BEGIN
    CREATE TEMP TABLE _es_drained ON COMMIT DROP AS
    WITH moved AS (DELETE FROM @extschema@.event_changes RETURNING contact_id, relation)
    SELECT DISTINCT contact_id, relation FROM moved;
    CREATE TEMP TABLE _es_changed (contact_id bigint) ON COMMIT DROP;
    INSERT INTO pg_temp._es_changed
    SELECT DISTINCT d.contact_id FROM pg_temp._es_drained d WHERE d.relation = ANY (feeds);
    -- A contact already pending is not listed again, unless its row is locked: being consumed by
    -- that profile's refresh, it may be gone when this one commits.  (Each profile's feeds are
    -- computed once, not per change.)
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT DISTINCT sp.name, d.contact_id
      FROM @extschema@.scoring_profiles sp
     CROSS JOIN LATERAL unnest(@extschema@._source_feeds(sp.events_relation)) f(relation)
      JOIN pg_temp._es_drained d ON d.relation = f.relation
     WHERE sp.name <> p.name
       AND NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr
                        WHERE pr.profile = sp.name AND pr.contact_id = d.contact_id
                          FOR KEY SHARE SKIP LOCKED);
    DROP TABLE pg_temp._es_drained;
END $$;
DROP FUNCTION @extschema@._refresh_score_contacts(@extschema@.scoring_profiles, text, timestamptz, boolean, boolean);
CREATE FUNCTION @extschema@._refresh_score_contacts(p @extschema@.scoring_profiles, events text,
                                                    refresh_at timestamptz, full_refresh boolean,
                                                    few_targets boolean, OUT unmapped bigint,
                                                    OUT unmapped_kinds text[])
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src        @extschema@.event_sources := @extschema@._source_of(p.events_relation);
    typed_kind boolean := @extschema@._column_type(p.events_relation, src.kind_column) = '@extschema@.event_type'::regtype;
    -- A source whose kind is an event_type and whose contact and time are NOT NULL (engagement_events)
    -- has no row it could not score: nothing to count, and the scoring statement stays as lean as 1.3's.
    counted    boolean := NOT (typed_kind AND coalesce((SELECT bool_and(a.attnotnull) FROM pg_attribute a
                                                         WHERE a.attrelid = p.events_relation
                                                           AND a.attname IN (src.contact_column, src.time_column)), false));
BEGIN
    EXECUTE format(CASE WHEN few_targets AND NOT full_refresh THEN $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT t.contact_id, (c.s).*, c.unmapped, c.unmapped_kind
          FROM pg_temp._es_targets t,
               LATERAL (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s,
                               %5$s AS unmapped, %4$s AS unmapped_kind
                          FROM %1$s e
                         WHERE e.contact_id = t.contact_id AND e.occurred_at <= $1) c
        $q$ ELSE $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT q.contact_id, (q.s).*, q.unmapped, q.unmapped_kind
          FROM (SELECT e.contact_id,
                       @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s,
                       %6$s AS unmapped, %4$s AS unmapped_kind
                  FROM %1$s e
                 WHERE %3$s
                 GROUP BY e.contact_id) q
        $q$ END,
        events,
        CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$2' ELSE '$3' END,
        CASE WHEN NOT full_refresh THEN 'e.occurred_at <= $1 AND e.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t)'
             WHEN counted THEN '(e.occurred_at <= $1 OR e.occurred_at IS NULL)'
             ELSE 'e.occurred_at <= $1' END,
        -- (a kind column of type event_type has no kinds to name; and an aggregate of the constant
        -- NULL::text would keep postgres_fdw from shipping the query: its collation is not a column's)
        CASE WHEN typed_kind THEN 'NULL::text' ELSE 'min(e.kind) FILTER (WHERE e.event_type IS NULL)' END,
        CASE WHEN counted THEN 'count(*) FILTER (WHERE e.event_type IS NULL)' ELSE '0::bigint' END,
        CASE WHEN counted THEN 'count(*) FILTER (WHERE e.contact_id IS NULL OR e.event_type IS NULL OR e.occurred_at IS NULL)'
             ELSE '0::bigint' END)
    USING refresh_at, p.name, to_jsonb(p);
    unmapped := 0;
    IF counted THEN
        SELECT coalesce(sum(s.unmapped), 0),
               (SELECT array_agg(k ORDER BY k) FROM (SELECT DISTINCT s2.unmapped_kind AS k FROM pg_temp._es_scored s2
                                                      WHERE s2.unmapped_kind IS NOT NULL ORDER BY 1 LIMIT 5) ks)
          INTO unmapped, unmapped_kinds
          FROM pg_temp._es_scored s WHERE s.unmapped > 0;
    END IF;
    -- (contacts whose every row was unmapped, rows without a contact, and targets without events
    -- have no score)
    IF counted OR (few_targets AND NOT full_refresh) THEN
        DELETE FROM pg_temp._es_scored s WHERE s.contact_id IS NULL OR s.event_count IS NULL;
    END IF;
    ALTER TABLE pg_temp._es_scored DROP COLUMN unmapped, DROP COLUMN unmapped_kind;
    -- Indexed, so that no join with it can go quadratic when the statistics of engagement_scores
    -- know nothing of this profile yet (a new profile's rows estimated at one).
    CREATE UNIQUE INDEX ON pg_temp._es_scored (contact_id);
    ANALYZE pg_temp._es_scored;
END $$;
CREATE FUNCTION @extschema@._refresh(profile text, "full" boolean, OUT rescored bigint, OUT full_refresh boolean,
                                     OUT unmapped bigint, OUT unmapped_kinds text[])
LANGUAGE plpgsql VOLATILE STRICT
-- synchronize_seqscans off: two refreshes draining the change log scan it in the same order,
-- so one waits for the other instead of deadlocking on rows each already locked.
-- enable_partitionwise_aggregate: events hash-partitioned by contact_id are scored partition by
-- partition, and on postgres_fdw partitions inside each shard (the aggregate in the Remote SQL).
-- extra_float_digits: the profile document (to_jsonb) carries every parameter exactly.
SET search_path = pg_catalog, pg_temp SET synchronize_seqscans = off SET enable_partitionwise_aggregate = on
SET extra_float_digits = 3 AS $$
DECLARE
    p          @extschema@.scoring_profiles;
    src        @extschema@.event_sources;
    refresh_at timestamptz := now();   -- as of now(): the transaction's start
    events     text;                   -- the profile's events, bound (_bind_events_relation)
    last       record;                 -- the distribution of the last refresh
    aged       boolean;
    targets    bigint;
    saved_lock_timeout text;
BEGIN
    full_refresh := "full";
    -- Every statement sees what committed before it: what a refresh consumes and re-queues
    -- relies on it (under a snapshot taken once, a change drained meanwhile could be lost).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'refresh_scores runs at the READ COMMITTED isolation level, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- Read the profile under a lock that keeps it as it is until this refresh commits.
    SELECT * INTO p FROM @extschema@.scoring_profiles sp WHERE sp.name = _refresh.profile FOR SHARE;
    IF NOT FOUND THEN
        PERFORM @extschema@._profile_or_error(profile);   -- raises 42704
    END IF;
    -- One refresh per profile at a time: a second one returns NULL at once.  The lock is the
    -- profile's distribution row (the first refresh creates it), which only roles that may write
    -- score_distributions can lock: no other role can hold refreshes off.
    IF NOT EXISTS (SELECT FROM @extschema@.score_distributions d WHERE d.profile = p.name) THEN
        -- Another first refresh's uncommitted row would make this insert wait for it: don't.
        saved_lock_timeout := current_setting('lock_timeout');
        BEGIN
            PERFORM set_config('lock_timeout', '1ms', true);
            INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version,
                                                         refreshed_at, model_version)
            VALUES (p.name, '', 0, 0, refresh_at, 0) ON CONFLICT DO NOTHING;
            PERFORM set_config('lock_timeout', saved_lock_timeout, true);
        EXCEPTION WHEN lock_not_available THEN
            NULL;   -- the row is another refresh's: the lock below is not free either
        END;
    END IF;
    PERFORM FROM @extschema@.score_distributions d WHERE d.profile = p.name FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RAISE NOTICE 'a refresh of scoring profile "%" is already running; this one does nothing', p.name;
        RETURN;
    END IF;
    events := @extschema@._bind_events_relation(p);

    PERFORM @extschema@._refresh_drain_changes(p);

    -- A profile changed since the last refresh (or never refreshed), or scores of another version
    -- of the model, rescore everyone.
    SELECT d.profile_version, d.model_version, d.oldest_score_at, d.contacts INTO last
      FROM @extschema@.score_distributions d WHERE d.profile = p.name;
    full_refresh := full_refresh OR last.profile_version IS DISTINCT FROM p.version
                    OR last.model_version IS DISTINCT FROM @extschema@.model_version();
    aged := last.oldest_score_at < refresh_at - p.max_score_age;

    targets := @extschema@._refresh_choose_targets(p, refresh_at, full_refresh, aged);
    SELECT c.unmapped, c.unmapped_kinds INTO unmapped, unmapped_kinds
      FROM @extschema@._refresh_score_contacts(p, events, refresh_at, full_refresh,
                                               coalesce(targets * 10 <= last.contacts, false)) c;
    -- Rows not scored: an error naming their kinds, or a WARNING with the count (and the count in
    -- refresh_runs).  For an SMS CRM an opt-out is a compliance matter: never lost silently.
    IF unmapped > 0 THEN
        src := @extschema@._source_of(p.events_relation);
        IF src.on_unmapped = 'reject' THEN
            RAISE EXCEPTION 'profile "%": % rows of % have a kind its source does not map (or no contact, no time, an invalid value): %', p.name, unmapped,
                            p.events_relation, coalesce(array_to_string(unmapped_kinds, ', '), '(no time or contact)')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Map them in engagement.event_kind_map (define_event_source), or set on_unmapped = ''count''.';
        END IF;
        RAISE WARNING 'profile "%": % rows of % were not scored: kinds not mapped (%), or no contact, no time or an invalid value',
                      p.name, unmapped, p.events_relation, coalesce(array_to_string(unmapped_kinds, ', '), 'none')
            USING HINT = 'Map the kinds in engagement.event_kind_map (define_event_source).';
    END IF;
    PERFORM @extschema@._refresh_distribution(p, refresh_at, full_refresh);
    rescored := @extschema@._refresh_write_scores(p, refresh_at, full_refresh);
    PERFORM @extschema@._refresh_keep_pending(p, events, refresh_at);

    -- oldest_score_at stays a lower bound of calculated_at (scores only get newer); after the
    -- age check rescored the old ones, it is recomputed.
    IF aged AND NOT full_refresh THEN
        UPDATE @extschema@.score_distributions d
           SET oldest_score_at = coalesce((SELECT min(s.calculated_at) FROM @extschema@.engagement_scores s
                                            WHERE s.profile = p.name), refresh_at)
         WHERE d.profile = p.name;
    END IF;

    -- Leave nothing behind for the rest of the transaction (another role may refresh in it).
    DROP TABLE pg_temp._es_scored, pg_temp._es_changed, pg_temp._es_targets;
    IF events = 'pg_temp._es_events' THEN DROP VIEW pg_temp._es_events; END IF;
END $$;
CREATE TEMP TABLE _es_refresh_acl ON COMMIT DROP AS
SELECT p.proacl FROM pg_proc p WHERE p.oid = '@extschema@.refresh_scores(text, boolean)'::regprocedure;
DROP FUNCTION @extschema@.refresh_scores(text, boolean);
CREATE FUNCTION @extschema@.refresh_scores(profile text DEFAULT 'default', "full" boolean DEFAULT false,
                                           on_error text DEFAULT 'raise')
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    started timestamptz := clock_timestamp();
    r       record;
    state   text;
    message text;
BEGIN
    IF on_error NOT IN ('raise', 'record') THEN
        RAISE EXCEPTION 'on_error must be ''raise'' or ''record'', not %', quote_literal(on_error)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        SELECT * INTO r FROM @extschema@._refresh(profile, "full");
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        IF on_error = 'raise' OR NOT EXISTS (SELECT FROM @extschema@.scoring_profiles sp WHERE sp.name = profile) THEN
            RAISE;
        END IF;
        INSERT INTO @extschema@.refresh_runs (profile, mode, started_at, finished_at, error)
        VALUES (profile, CASE WHEN "full" THEN 'full' ELSE 'incremental' END, started, clock_timestamp(),
                state || ': ' || message);
        RAISE WARNING 'the refresh of profile "%" failed and did nothing: %: %', profile, state, message;
        RETURN NULL;
    END;
    INSERT INTO @extschema@.refresh_runs (profile, mode, started_at, finished_at, contacts_rescored, unmapped_rows,
                                          unmapped_kinds, skipped)
    VALUES (profile, CASE WHEN r.full_refresh THEN 'full' ELSE 'incremental' END, started, clock_timestamp(),
            r.rescored, r.unmapped, r.unmapped_kinds, r.rescored IS NULL);
    DELETE FROM @extschema@.refresh_runs rr
     WHERE rr.profile = refresh_scores.profile
       AND rr.started_at < started - (SELECT sp.refresh_log_retention FROM @extschema@.scoring_profiles sp
                                       WHERE sp.name = refresh_scores.profile);
    RETURN r.rescored;
END $$;
COMMENT ON FUNCTION @extschema@.refresh_scores(text, boolean, text) IS
    'Rescores a profile''s contacts (from its events_relation) as of now(): all of them (full, or after a profile change), else those whose events changed or whose score is older than max_score_age; records the run in refresh_runs; returns how many, or NULL when another refresh of the profile is running (or, with on_error => ''record'', when it failed: recorded, with a WARNING)';
REVOKE EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean, text) FROM PUBLIC;
SELECT @extschema@._upgrade_copy_grants(proacl, 'FUNCTION', '@extschema@.refresh_scores(text, boolean, text)')
  FROM pg_temp._es_refresh_acl;
DROP TABLE pg_temp._es_refresh_acl;

-- The per-contact functions read the profile's source.
CREATE FUNCTION @extschema@._source_contact_query(p @extschema@.scoring_profiles, aggregate text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('SELECT @extschema@.%s(e.event_type, e.occurred_at, e.conversion_value, $2, $3) AS result,
                          count(*) FILTER (WHERE e.event_type IS NULL) AS unmapped,
                          min(e.kind) FILTER (WHERE e.event_type IS NULL) AS kind
                     FROM (%s) e WHERE e.contact_id = $1 AND e.occurred_at <= $2',
                  aggregate, @extschema@._source_select(@extschema@._source_of(p.events_relation),
                                                        @extschema@._live_events_or_error(p)))
$$;
CREATE FUNCTION @extschema@._report_unmapped(p @extschema@.scoring_profiles, contact_id bigint, unmapped bigint,
                                             kind text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(unmapped, 0) = 0 THEN
        RETURN;
    END IF;
    IF (@extschema@._source_of(p.events_relation)).on_unmapped = 'reject' THEN
        RAISE EXCEPTION 'contact %: % rows of % have a kind its source does not map, e.g. %', contact_id, unmapped,
                        p.events_relation, quote_literal(kind)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map it in engagement.event_kind_map (define_event_source).';
    END IF;
    RAISE WARNING 'contact %: % rows of % not scored: a kind the source does not map, e.g. %', contact_id, unmapped,
                  p.events_relation, quote_literal(kind)
        USING HINT = 'Map it in engagement.event_kind_map (define_event_source).';
END $$;
CREATE OR REPLACE FUNCTION @extschema@.engagement_score(contact_id bigint, as_of timestamptz DEFAULT now(),
                                             profile text DEFAULT 'default')
RETURNS @extschema@.score
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
    r record;
BEGIN
    PERFORM @extschema@._check_scoring_args(as_of, profile);
    p := @extschema@._profile_or_error(profile);
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value,
                                                engagement_score.as_of, engagement_score.profile)
                  FROM @extschema@.engagement_events e
                 WHERE e.contact_id = engagement_score.contact_id
                   AND e.occurred_at <= engagement_score.as_of);
    END IF;
    EXECUTE @extschema@._source_contact_query(p, 'score_events') INTO r USING contact_id, as_of, p.name;
    PERFORM @extschema@._report_unmapped(p, contact_id, r.unmapped, r.kind);
    RETURN r.result;
END $$;
COMMENT ON FUNCTION @extschema@.engagement_score(bigint, timestamptz, text) IS
    'The live score of one contact from the profile''s events (engagement_events or its events_relation), NULL when it has no event at or before as_of';
CREATE OR REPLACE FUNCTION @extschema@.explain_score(contact_id bigint, as_of timestamptz DEFAULT now(),
                                          profile text DEFAULT 'default')
RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p        @extschema@.scoring_profiles;
    body     text;
    r        record;
    unmapped bigint := 0;
    kind     text;
BEGIN
    PERFORM @extschema@._check_scoring_args(as_of, profile);
    p := @extschema@._profile_or_error(profile);
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        SELECT @extschema@.explain_events(e.event_type, e.occurred_at, e.conversion_value,
                                          explain_score.as_of, explain_score.profile)
          INTO body
          FROM @extschema@.engagement_events e
         WHERE e.contact_id = explain_score.contact_id
           AND e.occurred_at <= explain_score.as_of;
    ELSE
        EXECUTE @extschema@._source_contact_query(p, 'explain_events') INTO r USING contact_id, as_of, p.name;
        PERFORM @extschema@._report_unmapped(p, contact_id, r.unmapped, r.kind);
        body := r.result;
        unmapped := r.unmapped;
        kind := r.kind;
    END IF;
    IF body IS NULL THEN
        RETURN format('Contact %s has no events at or before %s: no score.', contact_id, as_of);
    END IF;
    RETURN format('Contact %s, profile %s, as of %s: %s%s', contact_id, profile, as_of, body,
                  CASE WHEN unmapped > 0 THEN format(E'\n  %s rows of %s not scored: a kind the source does not map, e.g. %L',
                                                     unmapped, p.events_relation, kind) ELSE '' END);
END $$;
CREATE FUNCTION @extschema@.profile_events(contact_id bigint, profile text DEFAULT 'default',
                                           before timestamptz DEFAULT 'infinity', page_size integer DEFAULT 50)
RETURNS TABLE (occurred_at timestamptz, event_type @extschema@.event_type, kind text, conversion_value numeric)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles := @extschema@._profile_or_error(profile);
BEGIN
    IF page_size < 1 OR page_size > 10000 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 10000, not %', page_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format('SELECT e.occurred_at, e.event_type, e.kind, e.conversion_value FROM (%s) e
                                  WHERE e.contact_id = $1 AND e.occurred_at < $2
                                  ORDER BY e.occurred_at DESC LIMIT $3',
                                @extschema@._source_select(@extschema@._source_of(p.events_relation),
                                                           @extschema@._live_events_or_error(p)))
      USING contact_id, before, page_size;
END $$;
COMMENT ON FUNCTION @extschema@.profile_events(bigint, text, timestamptz, integer) IS
    'One contact''s events as the profile reads them (its events_relation through its source), newest first, before a time (pass the oldest occurred_at of a page for the next), with the CRM''s own kind and the event type it maps to (NULL: unmapped)';
DROP FUNCTION @extschema@.refresh_jobs();
CREATE FUNCTION @extschema@.refresh_jobs()
RETURNS TABLE (job_name text, profile text, kind text, jobid bigint, schedule text, command text, active boolean,
               last_status text, last_start timestamptz, last_end timestamptz, last_message text,
               last_refresh_at timestamptz, last_refresh_rescored bigint, last_refresh_skipped boolean,
               last_refresh_unmapped bigint, last_refresh_error text)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require_pg_cron();
    RETURN QUERY EXECUTE $q$
        SELECT j.jobname::text, split_part(j.jobname, '/', 2), split_part(j.jobname, '/', 3), j.jobid::bigint,
               j.schedule::text, j.command::text, j.active, d.status::text, d.start_time, d.end_time,
               d.return_message::text, rr.started_at, rr.contacts_rescored, rr.skipped, rr.unmapped_rows, rr.error
          FROM cron.job j
          LEFT JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                               FROM cron.job_run_details r WHERE r.jobid = j.jobid
                              ORDER BY r.start_time DESC NULLS LAST LIMIT 1) d ON true
          -- (an incremental refresh may turn into a full one: the incremental job shows either)
          LEFT JOIN LATERAL (SELECT r.* FROM @extschema@.refresh_runs r
                              WHERE r.profile = split_part(j.jobname, '/', 2)
                                AND split_part(j.jobname, '/', 3) IN ('incremental', 'full')
                                AND (split_part(j.jobname, '/', 3) = 'incremental' OR r.mode = 'full')
                              ORDER BY r.started_at DESC LIMIT 1) rr ON true
         WHERE j.jobname LIKE 'engagement\_scoring/%'
         ORDER BY j.jobname $q$;
END $$;
COMMENT ON FUNCTION @extschema@.refresh_jobs() IS
    'The pg_cron jobs of engagement_scoring with pg_cron''s status of their last run and, for refreshes, the last refresh_runs record of that kind (when, rescored, skipped, unmapped rows, error)';

------------------------------------------------------------------------------------------------
-- Scheduling and access
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.schedule_refresh(profile text DEFAULT 'default',
                                             incremental_schedule text DEFAULT '*/5 * * * *',
                                             full_schedule text DEFAULT '17 3 * * *',
                                             refit_schedule text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
    job record;
BEGIN
    IF profile IS NULL THEN
        RAISE EXCEPTION 'profile must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    p := @extschema@._profile_or_error(profile);
    PERFORM @extschema@._require_pg_cron();
    FOR job IN
        SELECT * FROM (VALUES
            -- a refresh that fails is recorded in refresh_runs (and warns); the job goes on
            ('incremental', incremental_schedule, format('SELECT @extschema@.refresh_scores(%L, on_error => %L)', p.name, 'record')),
            ('full', full_schedule, format('SELECT @extschema@.refresh_scores(%L, true, %L)', p.name, 'record')),
            -- a refit that does not converge warns and keeps the previous parameters: the job goes on
            ('refit', refit_schedule, format('SELECT @extschema@.fit_model(%L, on_failure => %L)', p.name, 'warning'))) v(kind, schedule, command)
    LOOP
        IF job.schedule IS NULL THEN
            -- No schedule: no job of that kind.
            IF EXISTS (SELECT FROM @extschema@.refresh_jobs() r WHERE r.job_name = @extschema@._job_name(p.name, job.kind)) THEN
                EXECUTE 'SELECT cron.unschedule($1)' USING @extschema@._job_name(p.name, job.kind);
            END IF;
        ELSE
            -- cron.schedule with a job name replaces that job: calling this twice leaves one job.
            RETURN QUERY EXECUTE 'SELECT cron.schedule($1, $2, $3)'
                USING @extschema@._job_name(p.name, job.kind), job.schedule, job.command;
        END IF;
    END LOOP;
END $$;
CREATE OR REPLACE FUNCTION @extschema@.grant_application_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._role_or_error(role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    -- INSERT of every column but id: OVERRIDING SYSTEM VALUE would take identity values that other
    -- writers then collide with.  (The REVOKE turns a table-wide grant of an older version into it.)
    EXECUTE format('REVOKE INSERT ON @extschema@.engagement_events FROM %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT (contact_id, campaign_id, event_type, occurred_at, conversion_value, channel,
                    device_type, parent_event_id, metadata, created_at) ON @extschema@.engagement_events TO %s', role_name);
    -- contact_scores reads the change log; only the change-tracking triggers write it
    EXECUTE format('REVOKE INSERT ON @extschema@.event_changes FROM %s', role_name);
    EXECUTE format('GRANT SELECT ON @extschema@.event_changes TO %s', role_name);
    EXECUTE format('GRANT SELECT ON @extschema@.scoring_profiles, @extschema@.engagement_scores,
                    @extschema@.engagement_score_history, @extschema@.pending_rescore,
                    @extschema@.score_distributions, @extschema@.contact_scores, @extschema@.model_fits,
                    @extschema@.event_sources, @extschema@.event_kind_map, @extschema@.refresh_runs TO %s', role_name);
END $$;
CREATE OR REPLACE FUNCTION @extschema@.grant_admin_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._role_or_error(role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA @extschema@ TO %s', role_name);
    -- refresh_scores works in temporary tables
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %s', current_database(), role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean, text), @extschema@.fit_model(text, timestamptz, text),
                    @extschema@.schedule_refresh(text, text, text, text), @extschema@.unschedule_refresh(text),
                    @extschema@.track_event_changes(regclass, regclass, name), @extschema@.untrack_event_changes(regclass),
                    @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[]),
                    @extschema@._track_event_changes(),
                    @extschema@._track_event_change() TO %s', role_name);
END $$;

-- Scheduled jobs of 1.3 run as schedule_refresh now schedules them: a refit that does not
-- converge warns and goes on; a refresh that fails is recorded in refresh_runs and warns.
DO $$
DECLARE
    j record;
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        FOR j IN EXECUTE $q$SELECT jobid, split_part(jobname, '/', 2) AS profile, split_part(jobname, '/', 3) AS kind
                              FROM cron.job WHERE jobname LIKE 'engagement\_scoring/%'$q$
        LOOP
            EXECUTE 'SELECT cron.alter_job($1, command => $2)'
                USING j.jobid, CASE j.kind
                    WHEN 'refit' THEN format('SELECT @extschema@.fit_model(%L, on_failure => %L)', j.profile, 'warning')
                    WHEN 'incremental' THEN format('SELECT @extschema@.refresh_scores(%L, on_error => %L)', j.profile, 'record')
                    WHEN 'full' THEN format('SELECT @extschema@.refresh_scores(%L, true, %L)', j.profile, 'record') END;
        END LOOP;
    END IF;
END $$;

-- presentation.sql: reads for people.  Scores rounded for psql (the raw float8 columns stay for
-- programs), a text histogram of the scores, and a campaign's funnel as a marketer reads it:
-- stages nested per contact and campaign, so no rate exceeds 1 (the independent per-stage counts
-- stay available as funnel_independent).

------------------------------------------------------------------------------------------------
-- Rounded scores
------------------------------------------------------------------------------------------------
-- One place for the rounding: components and composite to 0.1 point, probabilities to 0.001,
-- expected engagement days and money to 0.01, times to the second.
CREATE FUNCTION @extschema@.readable_score(s @extschema@.score,
    OUT as_of timestamptz, OUT profile text, OUT composite numeric, OUT segment text,
    OUT recency numeric, OUT frequency numeric, OUT monetary numeric, OUT time_decay numeric,
    OUT diversity numeric, OUT engagement_probability numeric, OUT conversion_probability numeric,
    OUT churn_risk numeric, OUT expected_engagements_30d numeric, OUT expected_conversion_value numeric,
    OUT expected_value_30d numeric, OUT opted_out boolean, OUT event_count bigint, OUT engaging_count bigint,
    OUT conversion_total numeric, OUT first_event_at timestamptz, OUT last_engaged_at timestamptz)
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT date_trunc('second', s.as_of), s.profile, round(s.composite::numeric, 1), s.segment,
       round(s.recency::numeric, 1), round(s.frequency::numeric, 1), round(s.monetary::numeric, 1),
       round(s.time_decay::numeric, 1), round(s.diversity::numeric, 1),
       round(s.engagement_probability::numeric, 3), round(s.conversion_probability::numeric, 3),
       round(s.churn_risk::numeric, 3), round(s.expected_engagements_30d::numeric, 2),
       round(s.expected_conversion_value::numeric, 2), round(s.expected_value_30d::numeric, 2),
       s.opted_out, s.event_count, s.engaging_count, s.conversion_total,
       date_trunc('second', s.first_event_at), date_trunc('second', s.last_engaged_at)
$$;
COMMENT ON FUNCTION @extschema@.readable_score(@extschema@.score) IS
    'A score rounded for people: composite and components to 0.1, probabilities to 0.001, expected days and values to 0.01, times to the second; e.g. SELECT * FROM engagement.readable_score(engagement.engagement_score(42))';

CREATE FUNCTION @extschema@.readable_scores(profile text DEFAULT 'default')
RETURNS TABLE (contact_id bigint, composite numeric, percentile_rank numeric, segment text, recency numeric,
               frequency numeric, monetary numeric, time_decay numeric, diversity numeric,
               engagement_probability numeric, conversion_probability numeric, churn_risk numeric,
               expected_engagements_30d numeric, expected_conversion_value numeric, expected_value_30d numeric,
               opted_out boolean, event_count bigint, conversion_total numeric, last_engaged_at timestamptz,
               calculated_at timestamptz, is_stale boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._profile_or_error(profile);
    RETURN QUERY
    SELECT s.contact_id, r.composite, round(s.percentile_rank::numeric, 1), r.segment, r.recency, r.frequency,
           r.monetary, r.time_decay, r.diversity, r.engagement_probability, r.conversion_probability,
           r.churn_risk, r.expected_engagements_30d, r.expected_conversion_value, r.expected_value_30d,
           r.opted_out, r.event_count, r.conversion_total, r.last_engaged_at, r.as_of, s.is_stale
      FROM @extschema@.contact_scores s,
           LATERAL @extschema@.readable_score(ROW(s.calculated_at, s.profile, s.composite, s.recency, s.frequency,
               s.monetary, s.time_decay, s.diversity, s.engagement_probability, s.conversion_probability,
               s.churn_risk, s.segment, s.opted_out, s.event_count, s.engaging_count, s.conversion_total,
               s.first_event_at, s.last_engaged_at, s.expected_engagements_30d, s.expected_conversion_value,
               s.expected_value_30d)::@extschema@.score) r
     WHERE s.profile = readable_scores.profile
     ORDER BY s.composite DESC, s.contact_id;
END $$;
COMMENT ON FUNCTION @extschema@.readable_scores(text) IS
    'The profile''s stored scores rounded as readable_score rounds them, with the percentile (0.1) and is_stale, best first; the raw values are in engagement_scores';

CREATE FUNCTION @extschema@.readable_segments(profile text DEFAULT 'default')
RETURNS TABLE (segment text, contacts bigint, share_pct numeric, mean_score numeric)
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT m.segment, m.contacts, round((100 * m.share)::numeric, 1), round(m.mean_score::numeric, 1)
  FROM @extschema@.segment_summary(profile) m
$$;
COMMENT ON FUNCTION @extschema@.readable_segments(text) IS
    'segment_summary for people: the share in percent and the mean score, both to 0.1';

------------------------------------------------------------------------------------------------
-- A text histogram of the scores
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@.score_histogram(profile text DEFAULT 'default', buckets integer DEFAULT 10)
RETURNS TABLE (score_range text, contacts bigint, share_pct numeric, bar text)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF buckets < 1 OR buckets > 100 THEN
        RAISE EXCEPTION 'buckets must be between 1 and 100, not %', buckets USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._profile_or_error(profile);
    -- Bucket i is [100 (i-1) / n, 100 i / n), the last one closed; a composite a rounding error
    -- above 100 falls in the last.  The longest bar is 40 characters; a bucket with contacts has at
    -- least one.
    RETURN QUERY
    WITH counts AS (
        SELECT least(width_bucket(s.composite, 0, 100, buckets), buckets) AS i, count(*) AS n
          FROM @extschema@.engagement_scores s
         WHERE s.profile = score_histogram.profile
         GROUP BY 1),
    filled AS (
        SELECT b.i, coalesce(c.n, 0) AS n FROM generate_series(1, buckets) b(i) LEFT JOIN counts c USING (i))
    SELECT format('[%s, %s%s', trim_scale(round(100.0 * (f.i - 1) / buckets, 1)),
                  trim_scale(round(100.0 * f.i / buckets, 1)), CASE WHEN f.i = buckets THEN ']' ELSE ')' END),
           f.n,
           round(100.0 * f.n / nullif(sum(f.n) OVER (), 0), 1),
           repeat('#', CASE WHEN f.n = 0 THEN 0
                            ELSE greatest(1, round(40.0 * f.n / max(f.n) OVER ())::integer) END)
      FROM filled f
     ORDER BY f.i;
END $$;
COMMENT ON FUNCTION @extschema@.score_histogram(text, integer) IS
    'A text histogram of the profile''s stored composites in psql: buckets (1..100) equal ranges of 0..100, each with its contacts, share in percent and a bar of # (40 for the largest)';

------------------------------------------------------------------------------------------------
-- Funnels
------------------------------------------------------------------------------------------------
-- The marketer's funnel.  A (contact, campaign) pair reaches a stage of the chain delivered ->
-- opened -> clicked -> responded -> converted when it has events of that stage and of every earlier
-- one in the window (in any order of time); a contact counts at a stage when one of its campaigns
-- took it there.  So each stage's contacts are among the previous stage's, and no rate exceeds 1.
-- opted_out: contacts delivered and opting out in the same campaign; bounced: contacts with a
-- bounce (a message that was not delivered: no rate).  Events without a campaign are in no funnel.
CREATE OR REPLACE FUNCTION @extschema@.funnel(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
                                   until timestamptz DEFAULT 'infinity')
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL OR until IS NULL THEN
        RAISE EXCEPTION 'since and until must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- EXECUTE plans with the actual values: without a campaign the filter folds away, with one
    -- the campaign index is used.
    RETURN QUERY EXECUTE $q$
    WITH stages(stage, ord, in_chain) AS (
        VALUES ('delivered', 1, true), ('opened', 2, true), ('clicked', 3, true), ('responded', 4, true),
               ('converted', 5, true), ('opted_out', 6, false), ('bounced', 7, false)),
    pairs AS (   -- per (contact, campaign): the events of each stage, in the order of stages
        SELECT e.contact_id,
               ARRAY[count(*) FILTER (WHERE e.event_type = 'delivered'), count(*) FILTER (WHERE e.event_type = 'opened'),
                     count(*) FILTER (WHERE e.event_type = 'clicked'), count(*) FILTER (WHERE e.event_type = 'responded'),
                     count(*) FILTER (WHERE e.event_type = 'converted'), count(*) FILTER (WHERE e.event_type = 'opted_out'),
                     count(*) FILTER (WHERE e.event_type = 'bounced')] AS n
          FROM @extschema@.engagement_events e
         WHERE e.campaign_id IS NOT NULL AND ($1 IS NULL OR e.campaign_id = $1)
           AND e.occurred_at >= $2 AND e.occurred_at < $3
         GROUP BY e.contact_id, e.campaign_id),
    depths AS (  -- how many stages of the chain, from delivered on, the pair reached
        SELECT p.contact_id, p.n,
               CASE WHEN p.n[1] = 0 THEN 0 WHEN p.n[2] = 0 THEN 1 WHEN p.n[3] = 0 THEN 2
                    WHEN p.n[4] = 0 THEN 3 WHEN p.n[5] = 0 THEN 4 ELSE 5 END AS depth
          FROM pairs p),
    counted AS (
        SELECT st.stage, st.ord, st.in_chain, count(DISTINCT d.contact_id) AS contacts,
               coalesce(sum(d.n[st.ord]), 0)::bigint AS events
          FROM stages st
          LEFT JOIN depths d ON d.n[st.ord] > 0
                            AND CASE st.stage WHEN 'opted_out' THEN d.depth >= 1 WHEN 'bounced' THEN true
                                              ELSE d.depth >= st.ord END
         GROUP BY st.stage, st.ord, st.in_chain)
    SELECT c.stage, c.contacts, c.events,
           CASE WHEN c.in_chain AND c.ord > 1
                THEN c.contacts::float8 / nullif(lag(c.contacts) OVER (PARTITION BY c.in_chain ORDER BY c.ord), 0) END,
           CASE WHEN c.stage <> 'bounced'
                THEN c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.stage = 'delivered'), 0) END
      FROM counted c ORDER BY c.ord
    $q$ USING campaign_id, since, until;
END $$;
COMMENT ON FUNCTION @extschema@.funnel(bigint, timestamptz, timestamptz) IS
    'The funnel delivered > opened > clicked > responded > converted of a campaign (or of every campaign), nested: a contact counts at a stage when, in one campaign, it has events of that stage and every earlier one in [since, until), so rates never exceed 1; then opted_out (of the delivered) and bounced (no rate). Independent per-stage counts: funnel_independent';

-- The per-stage counts of 1.1 to 1.3's funnel, each stage counted on its own.
CREATE FUNCTION @extschema@.funnel_independent(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
                                               until timestamptz DEFAULT 'infinity')
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL OR until IS NULL THEN
        RAISE EXCEPTION 'since and until must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN QUERY EXECUTE $q$
    WITH counts AS (
        SELECT e.event_type::text AS stage, count(DISTINCT e.contact_id) AS contacts, count(*) AS events
          FROM @extschema@.engagement_events e
         WHERE ($1 IS NULL OR e.campaign_id = $1) AND e.occurred_at >= $2 AND e.occurred_at < $3
         GROUP BY e.event_type),
    stages(stage, ord, in_funnel) AS (
        VALUES ('delivered', 1, true), ('opened', 2, true), ('clicked', 3, true), ('responded', 4, true),
               ('converted', 5, true), ('opted_out', 6, false), ('bounced', 7, false)),
    counted AS (
        SELECT st.stage, st.ord, st.in_funnel, coalesce(c.contacts, 0) AS contacts, coalesce(c.events, 0) AS events
          FROM stages st LEFT JOIN counts c USING (stage))
    SELECT c.stage, c.contacts, c.events,
           CASE WHEN c.in_funnel AND c.ord > 1
                THEN c.contacts::float8 / nullif(lag(c.contacts) OVER (PARTITION BY c.in_funnel ORDER BY c.ord), 0) END,
           c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.stage = 'delivered'), 0)
      FROM counted c ORDER BY c.ord
    $q$ USING campaign_id, since, until;
END $$;
COMMENT ON FUNCTION @extschema@.funnel_independent(bigint, timestamptz, timestamptz) IS
    'Per stage, counted independently of the others: distinct contacts and events in [since, until) (of the campaign, or all events, those without a campaign included) and the contact rate from the previous stage and from delivered, which can exceed 1 (contacts converting without responding, say); the nested funnel is funnel';

------------------------------------------------------------------------------------------------
-- What \d+ says: every comment as a fresh install has it
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._score_field_comments() RETURNS TABLE (field name, description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('as_of', 'The time the score is computed as of (events after it are ignored)'),
           ('profile', 'The scoring profile that computed it'),
           ('contact_id', 'The contact'),
           ('composite', 'The score, 0..100: the weighted components, times (1 - opt_out_penalty) when opted out'),
           ('recency', 'Recency component, 0..100: 100 exp(-days since the last engagement / recency_tau_days)'),
           ('frequency', 'Frequency component, 0..100: from engaging events per day in the window (observed at least frequency_min_days)'),
           ('monetary', 'Monetary component, 0..100: log of the conversion value in the window against monetary_ref_value'),
           ('time_decay', 'Time-decay component, 0..100: event weights halved every half_life_days'),
           ('diversity', 'Diversity component, 0..100: entropy of the four engaging types'),
           ('engagement_probability', 'Probability of at least one engagement day in the next horizon_days (MBG/NBD), 0..1'),
           ('conversion_probability', 'engagement_probability times the contact''s smoothed share of conversion days, 0..1'),
           ('churn_risk', 'Probability the contact has dropped out: 1 - P(alive) (MBG/NBD), 0..1'),
           ('segment', 'RFM segment: opted_out, champions, loyal, potential_loyalist, new, promising, need_attention, at_risk, cannot_lose, about_to_sleep, hibernating or lost'),
           ('opted_out', 'Whether the contact has an opted_out event at or before as_of (it never expires)'),
           ('event_count', 'Events at or before as_of, any type'),
           ('engaging_count', 'Engaging events (opened, clicked, responded, converted) at or before as_of'),
           ('conversion_total', 'Sum of conversion values at or before as_of (exact cents)'),
           ('first_event_at', 'The contact''s first event: its birth day starts the MBG/NBD summary'),
           ('last_engaged_at', 'The last engaging event (NULL: never engaged)'),
           ('expected_engagements_30d', 'Expected engagement days in the next horizon_days (MBG/NBD), opt-out penalised'),
           ('expected_conversion_value', 'Expected value of the next conversion day (Gamma-Gamma)'),
           ('expected_value_30d', 'Expected conversion value in the next horizon_days: expected engagement days x conversion share x expected conversion value, opt-out penalised'),
           ('percentile_rank', 'The composite''s percentile among the profile''s scored contacts at the refresh, 0..100'),
           ('score_version', 'How many times the contact has been rescored under the profile'),
           ('profile_version', 'The profile''s version the score was computed with (another: stale)'),
           ('calculated_at', 'When the refresh computed it (its as_of)'),
           ('model_version', 'The version of the scoring model that computed it (another than model_version(): stale)')
$$;
CREATE FUNCTION @extschema@._comment_score_columns(rel regclass) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT f.field, f.description FROM @extschema@._score_field_comments() f
              WHERE EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = f.field AND NOT a.attisdropped)
    LOOP
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', rel, c.field, c.description);
    END LOOP;
END $$;
SELECT @extschema@._comment_score_columns('@extschema@.engagement_scores');
SELECT @extschema@._comment_score_columns('@extschema@.score');
SELECT @extschema@._comment_score_columns('@extschema@.contact_scores');
COMMENT ON TYPE @extschema@.event_type IS
    'SMS CRM engagement event types; opened, clicked, responded and converted are the engaging ones';
COMMENT ON TABLE @extschema@.engagement_events IS 'Engagement events of CRM contacts, the input of every score';
COMMENT ON TABLE @extschema@.scoring_profiles IS
    'Named scoring profiles: every parameter of the scoring model; version is bumped on every change';
COMMENT ON COLUMN @extschema@.scoring_profiles.max_score_age IS
    'An incremental refresh rescores contacts whose score is older than this (scores decay with time)';
COMMENT ON COLUMN @extschema@.scoring_profiles.history_min_delta IS
    'A rescore is written to engagement_score_history when the composite moves by at least this, or the segment changes';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_fitted_at IS
    'When fit_model last replaced model_r, model_alpha, model_a and model_b (NULL: the defaults)';
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation IS
    'The events the profile scores: engagement_events, or a table or view of the CRM''s own, read as its row of event_sources says (without one: columns contact_id, event_type, occurred_at, conversion_value); changing it rescores everyone';
COMMENT ON COLUMN @extschema@.scoring_profiles.refresh_log_retention IS
    'How long refresh_runs keeps the profile''s refreshes (each refresh removes older ones)';
COMMENT ON COLUMN @extschema@.scoring_profiles.fit_penalizer IS
    'fit_model maximises the mean log-likelihood minus fit_penalizer * the sum of squared log-parameters (both models); raise it when a fit does not converge';
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation_set_by IS
    'The role that set events_relation (NULL for engagement_events,  when set before 1.3): a refresh reads the relation only while that role may';
COMMENT ON TABLE @extschema@.engagement_scores IS 'The latest score of each contact under each profile';
COMMENT ON TABLE @extschema@.engagement_score_history IS
    'Score changes worth keeping: composite moved by history_min_delta or segment changed';
COMMENT ON TABLE @extschema@.event_changes IS
    'Contacts whose events changed since the last refresh, and in which tracked relation (appended by the tracking triggers, drained by refresh_scores into the pending sets of the profiles reading that relation)';
COMMENT ON TABLE @extschema@.pending_rescore IS
    'Contacts a profile''s next refresh must rescore because their events changed';
COMMENT ON TABLE @extschema@.score_distributions IS
    'Per profile, the sorted composites as of the last refresh (for score_percentile)';
COMMENT ON TABLE @extschema@.model_fits IS
    'Every fit fit_model ran: when, on how many contacts, the parameters with their standard errors, log-likelihood, convergence and why not';
COMMENT ON TABLE @extschema@.event_sources IS
    'How to read a CRM''s own events relation: its contact, kind, time and value columns, how its kinds are matched (exact, or trim_lower: trimmed and lower-cased on both sides) and what happens to rows of an unmapped kind (count: skipped, counted and warned about; reject: an error naming the kind)';
COMMENT ON TABLE @extschema@.event_kind_map IS
    'A source''s kinds and the event type each stands for; a kind not listed is unmapped (see event_sources.on_unmapped)';
COMMENT ON TABLE @extschema@.refresh_runs IS
    'Every refresh_scores: profile, mode, when, contacts rescored, rows it could not score, skipped (another refresh held the lock) or failed (with the error)';
COMMENT ON FUNCTION @extschema@._score_field_comments() IS
    'The description of each field of a score, given to every relation that carries them';
COMMENT ON FUNCTION @extschema@._comment_score_columns(regclass) IS
    'Comments the score fields of a relation (install and update scripts)';
COMMENT ON COLUMN @extschema@.engagement_events.id IS 'The event''s identity (generated: the application role cannot set it)';
COMMENT ON COLUMN @extschema@.engagement_events.contact_id IS 'The contact';
COMMENT ON COLUMN @extschema@.engagement_events.campaign_id IS 'The campaign the message belonged to (funnel)';
COMMENT ON COLUMN @extschema@.engagement_events.event_type IS 'What happened: delivered, opened, clicked, responded, converted, opted_out or bounced';
COMMENT ON COLUMN @extschema@.engagement_events.occurred_at IS 'When it happened (finite)';
COMMENT ON COLUMN @extschema@.engagement_events.conversion_value IS 'The value of a converted event (>= 0; NULL counts as 0; only on converted)';
COMMENT ON COLUMN @extschema@.engagement_events.channel IS 'sms, mms, email, voice, web or app';
COMMENT ON COLUMN @extschema@.engagement_events.device_type IS 'The device, as the CRM records it';
COMMENT ON COLUMN @extschema@.engagement_events.parent_event_id IS 'The event this one follows (a click''s delivery); SET NULL when that one is deleted';
COMMENT ON COLUMN @extschema@.engagement_events.metadata IS 'Anything else the CRM keeps (a JSON object)';
COMMENT ON COLUMN @extschema@.engagement_events.created_at IS 'When the row was written';
COMMENT ON COLUMN @extschema@.scoring_profiles.name IS 'The profile''s name (default exists after CREATE EXTENSION)';
COMMENT ON COLUMN @extschema@.scoring_profiles.description IS 'What the profile is for';
COMMENT ON COLUMN @extschema@.scoring_profiles.lookback_days IS 'The window of the five components, in days (365)';
COMMENT ON COLUMN @extschema@.scoring_profiles.recency_tau_days IS 'Recency: R = 100 exp(-days / recency_tau_days) (30)';
COMMENT ON COLUMN @extschema@.scoring_profiles.frequency_min_days IS 'Frequency: the shortest observation, so a new contact''s rate is not inflated (7)';
COMMENT ON COLUMN @extschema@.scoring_profiles.frequency_ref_rate IS 'Frequency: the engaging events per day that score 63 (0.1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.monetary_ref_value IS 'Monetary: the conversion value in the window that scores 100 (1000)';
COMMENT ON COLUMN @extschema@.scoring_profiles.half_life_days IS 'Time decay: an event''s weight halves every this many days (14)';
COMMENT ON COLUMN @extschema@.scoring_profiles.time_decay_ref IS 'Time decay: the decayed weight sum that scores 63 (5)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_delivered IS 'Time-decay weight of a delivery (0)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_opened IS 'Time-decay weight of an open (1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_clicked IS 'Time-decay weight of a click (2)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_responded IS 'Time-decay weight of a reply (3)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_converted IS 'Time-decay weight of a conversion (10)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_opted_out IS 'Time-decay weight of an opt-out (-10)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_bounced IS 'Time-decay weight of a bounce (-1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_recency IS 'Weight of recency in the composite (0.30; the five weights sum to 1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_frequency IS 'Weight of frequency in the composite (0.25)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_monetary IS 'Weight of monetary in the composite (0.20)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_time_decay IS 'Weight of time decay in the composite (0.15)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_diversity IS 'Weight of diversity in the composite (0.10)';
COMMENT ON COLUMN @extschema@.scoring_profiles.opt_out_penalty IS 'An opted-out contact''s composite and predictions are multiplied by 1 - this (0.9)';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_r IS 'MBG/NBD: Gamma shape of the engagement rate (0.25 until fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_alpha IS 'MBG/NBD: Gamma scale of the engagement rate, in days (10 until fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_a IS 'MBG/NBD: Beta a of the dropout probability (0.5 until fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_b IS 'MBG/NBD: Beta b of the dropout probability (2.5 until fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.horizon_days IS 'The horizon of the predictions, in days (30)';
COMMENT ON COLUMN @extschema@.scoring_profiles.conv_prior_a IS 'Conversion share: Beta prior a (1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.conv_prior_b IS 'Conversion share: Beta prior b (9)';
COMMENT ON COLUMN @extschema@.scoring_profiles.version IS 'Bumped by every change of the profile: scores of an older version are stale';
COMMENT ON COLUMN @extschema@.scoring_profiles.created_at IS 'When the profile was made';
COMMENT ON COLUMN @extschema@.scoring_profiles.updated_at IS 'When it last changed';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_log_likelihood IS 'The log-likelihood of the last MBG/NBD fit stored (fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.model_contacts IS 'How many contacts the last MBG/NBD fit stored was fitted to';
COMMENT ON COLUMN @extschema@.scoring_profiles.gg_p IS 'Gamma-Gamma: shape of a conversion day''s value (6.25 until fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.gg_q IS 'Gamma-Gamma: shape of the contacts'' mean values, > 1 (3.74 until fit_model)';
COMMENT ON COLUMN @extschema@.scoring_profiles.gg_v IS 'Gamma-Gamma: scale, in the currency of conversion_value (15.44 until fit_model)';
COMMENT ON COLUMN @extschema@.engagement_score_history.id IS 'The change''s identity';
COMMENT ON COLUMN @extschema@.engagement_score_history.profile IS 'The profile';
COMMENT ON COLUMN @extschema@.engagement_score_history.contact_id IS 'The contact';
COMMENT ON COLUMN @extschema@.engagement_score_history.composite IS 'The new composite';
COMMENT ON COLUMN @extschema@.engagement_score_history.segment IS 'The new segment';
COMMENT ON COLUMN @extschema@.engagement_score_history.previous_composite IS 'The composite before (NULL: the first score)';
COMMENT ON COLUMN @extschema@.engagement_score_history.previous_segment IS 'The segment before (NULL: the first score)';
COMMENT ON COLUMN @extschema@.engagement_score_history.score_version IS 'The score''s score_version after the change';
COMMENT ON COLUMN @extschema@.engagement_score_history.recorded_at IS 'The refresh''s time';
COMMENT ON COLUMN @extschema@.event_changes.contact_id IS 'A contact whose events changed';
COMMENT ON COLUMN @extschema@.event_changes.relation IS 'The tracked relation the change was made in';
COMMENT ON COLUMN @extschema@.pending_rescore.profile IS 'The profile whose next refresh must rescore the contact';
COMMENT ON COLUMN @extschema@.pending_rescore.contact_id IS 'The contact';
COMMENT ON COLUMN @extschema@.score_distributions.profile IS 'The profile (its row is also the lock of its refreshes)';
COMMENT ON COLUMN @extschema@.score_distributions.sorted_composites IS 'Every scored contact''s composite, ascending, as packed float8s';
COMMENT ON COLUMN @extschema@.score_distributions.contacts IS 'How many composites';
COMMENT ON COLUMN @extschema@.score_distributions.profile_version IS 'The profile version of the last refresh (another: the next refresh is full)';
COMMENT ON COLUMN @extschema@.score_distributions.refreshed_at IS 'When the last refresh ran';
COMMENT ON COLUMN @extschema@.score_distributions.oldest_score_at IS 'A lower bound of the scores'' calculated_at: when one can next be older than max_score_age';
COMMENT ON COLUMN @extschema@.score_distributions.model_version IS 'The model version of the last refresh (another: the next refresh is full)';
COMMENT ON COLUMN @extschema@.model_fits.id IS 'The fit''s identity';
COMMENT ON COLUMN @extschema@.model_fits.profile IS 'The profile fitted';
COMMENT ON COLUMN @extschema@.model_fits.model IS 'mbgnbd (engagement days) or gammagamma (conversion value)';
COMMENT ON COLUMN @extschema@.model_fits.fitted_at IS 'When fit_model ran';
COMMENT ON COLUMN @extschema@.model_fits.as_of IS 'The time the contacts were summarised as of';
COMMENT ON COLUMN @extschema@.model_fits.contacts IS 'How many contacts the model was fitted to';
COMMENT ON COLUMN @extschema@.model_fits.penalizer IS 'The L2 penalty on the log-parameters used (the profile''s fit_penalizer)';
COMMENT ON COLUMN @extschema@.model_fits.parameters IS 'The estimates: {r, alpha, a, b} or {p, q, v}';
COMMENT ON COLUMN @extschema@.model_fits.standard_errors IS 'Their standard errors (NULL: not converged, or the information is not positive definite)';
COMMENT ON COLUMN @extschema@.model_fits.log_likelihood IS 'The log-likelihood at the estimate, without the penalty';
COMMENT ON COLUMN @extschema@.model_fits.iterations IS 'Optimiser iterations';
COMMENT ON COLUMN @extschema@.model_fits.converged IS 'Whether the fit found an interior maximum';
COMMENT ON COLUMN @extschema@.model_fits.stored IS 'Whether the parameters replaced the profile''s';
COMMENT ON COLUMN @extschema@.model_fits.message IS 'Why it did not converge or was not stored';
COMMENT ON COLUMN @extschema@.event_sources.relation IS 'The CRM''s events relation (table, partitioned, foreign or view)';
COMMENT ON COLUMN @extschema@.event_sources.contact_column IS 'Its contact column (smallint, integer or bigint)';
COMMENT ON COLUMN @extschema@.event_sources.kind_column IS 'Its kind column: engagement.event_type, or anything read as text through event_kind_map';
COMMENT ON COLUMN @extschema@.event_sources.time_column IS 'Its time column (timestamptz)';
COMMENT ON COLUMN @extschema@.event_sources.value_column IS 'Its conversion value column (a number; NULL: none)';
COMMENT ON COLUMN @extschema@.event_sources.kind_match IS 'exact, or trim_lower: kinds compared trimmed and lower-cased';
COMMENT ON COLUMN @extschema@.event_sources.on_unmapped IS 'count: unmapped rows are skipped, counted and warned about; reject: an error naming the kind';
COMMENT ON COLUMN @extschema@.event_sources.changes_from IS 'Tracked tables whose changes make the source''s scores stale (for a view, the tables under it)';
COMMENT ON COLUMN @extschema@.event_sources.set_by IS 'The role that defined the source';
COMMENT ON COLUMN @extschema@.event_sources.created_at IS 'When it was defined';
COMMENT ON COLUMN @extschema@.event_kind_map.relation IS 'The source';
COMMENT ON COLUMN @extschema@.event_kind_map.kind IS 'A kind of the CRM''s';
COMMENT ON COLUMN @extschema@.event_kind_map.event_type IS 'The event type it stands for';
COMMENT ON COLUMN @extschema@.refresh_runs.id IS 'The run''s identity';
COMMENT ON COLUMN @extschema@.refresh_runs.profile IS 'The profile refreshed';
COMMENT ON COLUMN @extschema@.refresh_runs.mode IS 'full or incremental (an incremental call after a profile change runs full)';
COMMENT ON COLUMN @extschema@.refresh_runs.started_at IS 'When it started';
COMMENT ON COLUMN @extschema@.refresh_runs.finished_at IS 'When it finished';
COMMENT ON COLUMN @extschema@.refresh_runs.contacts_rescored IS 'Contacts rescored (NULL: skipped or failed)';
COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_rows IS 'Rows read but not scored: a kind the source does not map, or no contact or time';
COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_kinds IS 'The first few of those kinds';
COMMENT ON COLUMN @extschema@.refresh_runs.skipped IS 'Another refresh of the profile held its lock: this one did nothing';
COMMENT ON COLUMN @extschema@.refresh_runs.error IS 'SQLSTATE and message of a refresh that failed (on_error => ''record'')';
COMMENT ON TYPE @extschema@.score IS
    'One contact''s engagement score: composite and components 0..100, predictions 0..1, segment and facts';
COMMENT ON FUNCTION @extschema@.model_version() IS
    'The version of the scoring model (SCORING_MODEL.md) the extension computes; stored scores of another are stale';
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Scores one contact''s events (the rows of a group) as of a time under a named profile';
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'Scores one contact''s events (the rows of a group) as of a time under the default profile';
COMMENT ON AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Explains, in words, the score of one contact''s events (the rows of a group)';
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) IS
    'Scores one contact''s events (the rows of a group) as of a time under a profile given as to_jsonb(profile row)';
COMMENT ON AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) IS
    'Explains the score of one contact''s events under a profile given as to_jsonb(profile row)';
COMMENT ON FUNCTION @extschema@.decay_state_in(cstring) IS
    'Text input of decay_state: (sum,compensation,as_of,half_life_days,rows)';
COMMENT ON FUNCTION @extschema@.decay_state_out(@extschema@.decay_state) IS
    'Text output of decay_state, every double in its shortest exact form';
COMMENT ON TYPE @extschema@.decay_state IS
    'time_decay''s partial state: (sum, compensation, as_of in microseconds since 2000-01-01, half_life_days, rows)';
COMMENT ON AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8) IS
    'Sum of weight * 2^(-age_days / half_life_days) over the rows at or before as_of';
COMMENT ON FUNCTION @extschema@.engagement_score(bigint, timestamptz, text) IS
    'The live score of one contact from the profile''s events (engagement_events or its events_relation), NULL when it has no event at or before as_of';
COMMENT ON FUNCTION @extschema@.explain_score(bigint, timestamptz, text) IS
    'Explains one contact''s score: each component with its value, weight and contribution, the facts and predictions';
COMMENT ON FUNCTION @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[]) IS
    'Defines (or replaces) how a CRM''s own events relation is read: its columns, its kinds mapped to event types ({"open": "opened", ...}), kind_match exact or trim_lower, on_unmapped count or reject, and for a view the tables whose tracked changes feed it';
COMMENT ON FUNCTION @extschema@.track_event_changes(regclass, regclass, name) IS
    'Adds (or replaces) change-tracking triggers on a table of the CRM''s own (run it again after attaching partitions), so incremental refreshes of the profiles reading it (or for_source, a view over it) see the changes written through this server';
COMMENT ON FUNCTION @extschema@.untrack_event_changes(regclass) IS
    'Removes the change-tracking triggers track_event_changes made on a table (then DROP EXTENSION no longer depends on them); returns how many';
COMMENT ON FUNCTION @extschema@.refresh_scores(text, boolean, text) IS
    'Rescores a profile''s contacts (from its events_relation) as of now(): all of them (full, or after a profile change), else those whose events changed or whose score is older than max_score_age; records the run in refresh_runs; returns how many, or NULL when another refresh of the profile is running (or, with on_error => ''record'', when it failed: recorded, with a WARNING)';
COMMENT ON FUNCTION @extschema@.score_percentile(float8, text) IS
    'The percentile (0..100) of a score among the profile''s scored contacts as of the last refresh: 100 * percent_rank(score) WITHIN GROUP (ORDER BY composite)';
COMMENT ON VIEW @extschema@.contact_scores IS
    'Stored scores with is_stale: older than the profile''s max_score_age, scored under an older profile version or model version, or events changed since';
COMMENT ON COLUMN @extschema@.contact_scores.is_stale IS
    'Older than max_score_age, of another profile or model version, or the contact''s events changed since';
COMMENT ON FUNCTION @extschema@.cached_score(bigint, interval, text) IS
    'The stored score when it is fresh (not stale, and computed within max_age), else a live one';
COMMENT ON FUNCTION @extschema@.segment_summary(text) IS
    'Per segment of the profile''s stored scores: contacts, their share of all scored contacts (0..1) and the mean composite, best segments first';
COMMENT ON FUNCTION @extschema@.score_trend(bigint, timestamptz, text) IS
    'From the score history since a time: least-squares slope in points per day, the change (last - first), and rising/falling/flat';
COMMENT ON FUNCTION @extschema@.contact_events(bigint, bigint, integer) IS
    'One contact''s events, newest first, a page at a time: pass the last id of a page as before_id for the next';
COMMENT ON FUNCTION @extschema@.profile_events(bigint, text, timestamptz, integer) IS
    'One contact''s events as the profile reads them (its events_relation through its source), newest first, before a time (pass the oldest occurred_at of a page for the next), with the CRM''s own kind and the event type it maps to (NULL: unmapped)';
COMMENT ON FUNCTION @extschema@.readable_score(@extschema@.score) IS
    'A score rounded for people: composite and components to 0.1, probabilities to 0.001, expected days and values to 0.01, times to the second; e.g. SELECT * FROM engagement.readable_score(engagement.engagement_score(42))';
COMMENT ON FUNCTION @extschema@.readable_scores(text) IS
    'The profile''s stored scores rounded as readable_score rounds them, with the percentile (0.1) and is_stale, best first; the raw values are in engagement_scores';
COMMENT ON FUNCTION @extschema@.readable_segments(text) IS
    'segment_summary for people: the share in percent and the mean score, both to 0.1';
COMMENT ON FUNCTION @extschema@.score_histogram(text, integer) IS
    'A text histogram of the profile''s stored composites in psql: buckets (1..100) equal ranges of 0..100, each with its contacts, share in percent and a bar of # (40 for the largest)';
COMMENT ON FUNCTION @extschema@.funnel(bigint, timestamptz, timestamptz) IS
    'The funnel delivered > opened > clicked > responded > converted of a campaign (or of every campaign), nested: a contact counts at a stage when, in one campaign, it has events of that stage and every earlier one in [since, until), so rates never exceed 1; then opted_out (of the delivered) and bounced (no rate). Independent per-stage counts: funnel_independent';
COMMENT ON FUNCTION @extschema@.funnel_independent(bigint, timestamptz, timestamptz) IS
    'Per stage, counted independently of the others: distinct contacts and events in [since, until) (of the campaign, or all events, those without a campaign included) and the contact rate from the previous stage and from delivered, which can exceed 1 (contacts converting without responding, say); the nested funnel is funnel';
COMMENT ON TYPE @extschema@.model_fit IS
    'A maximum-likelihood BTYD fit: parameters, summed log-likelihood, total weight, BFGS iterations, convergence, standard errors (observed information; NULL when it is not positive definite), why it did not converge';
COMMENT ON COLUMN @extschema@.model_fit.r IS 'Gamma shape of the event rate';
COMMENT ON COLUMN @extschema@.model_fit.alpha IS 'Gamma scale of the event rate, in the summaries'' time unit';
COMMENT ON COLUMN @extschema@.model_fit.a IS 'Beta a of the dropout probability';
COMMENT ON COLUMN @extschema@.model_fit.b IS 'Beta b of the dropout probability';
COMMENT ON COLUMN @extschema@.model_fit.log_likelihood IS 'Summed log-likelihood at the estimate (weighted; without the penalty)';
COMMENT ON COLUMN @extschema@.model_fit.n IS 'Total weight: the customers fitted';
COMMENT ON COLUMN @extschema@.model_fit.iterations IS 'Optimiser iterations';
COMMENT ON COLUMN @extschema@.model_fit.converged IS 'Whether an interior maximum was found';
COMMENT ON COLUMN @extschema@.model_fit.se_r IS 'Standard error of r (NULL: not converged, or no positive definite information)';
COMMENT ON COLUMN @extschema@.model_fit.se_alpha IS 'Standard error of alpha';
COMMENT ON COLUMN @extschema@.model_fit.se_a IS 'Standard error of a';
COMMENT ON COLUMN @extschema@.model_fit.se_b IS 'Standard error of b';
COMMENT ON COLUMN @extschema@.model_fit.message IS 'Why the fit did not converge (NULL when it did)';
COMMENT ON TYPE @extschema@.gammagamma_fit IS
    'A maximum-likelihood Gamma-Gamma fit: parameters, summed log-likelihood, total weight, iterations, convergence (q > 1 included), standard errors, why it did not converge';
COMMENT ON TYPE @extschema@.btyd_summary IS
    'A contact''s engagement days (x), last engagement day (t_x) and today (t), in days since its first event';
COMMENT ON COLUMN @extschema@.gammagamma_fit.p IS 'Gamma shape of a conversion day''s value';
COMMENT ON COLUMN @extschema@.gammagamma_fit.q IS 'Gamma shape of the customers'' mean values (> 1 for a finite mean)';
COMMENT ON COLUMN @extschema@.gammagamma_fit.v IS 'Gamma scale, in the values'' currency';
COMMENT ON COLUMN @extschema@.gammagamma_fit.log_likelihood IS 'Summed log-likelihood at the estimate (weighted; without the penalty)';
COMMENT ON COLUMN @extschema@.gammagamma_fit.n IS 'Total weight: the customers fitted';
COMMENT ON COLUMN @extschema@.gammagamma_fit.iterations IS 'Optimiser iterations';
COMMENT ON COLUMN @extschema@.gammagamma_fit.converged IS 'Whether an interior maximum with q > 1 was found';
COMMENT ON COLUMN @extschema@.gammagamma_fit.se_p IS 'Standard error of p (NULL: no positive definite information)';
COMMENT ON COLUMN @extschema@.gammagamma_fit.se_q IS 'Standard error of q';
COMMENT ON COLUMN @extschema@.gammagamma_fit.se_v IS 'Standard error of v';
COMMENT ON COLUMN @extschema@.gammagamma_fit.message IS 'Why the fit did not converge (NULL when it did)';
COMMENT ON COLUMN @extschema@.btyd_summary.x IS 'Engagement days after the birth day (the first event''s day)';
COMMENT ON COLUMN @extschema@.btyd_summary.t_x IS 'Days from the birth day to the last of them (0 when x = 0)';
COMMENT ON COLUMN @extschema@.btyd_summary.t IS 'Days from the birth day to as_of';
COMMENT ON AGGREGATE @extschema@.btyd_summary(@extschema@.event_type, timestamptz, timestamptz) IS
    'One contact''s (x, t_x, t) in days since its first event (the birth day): engagement days after the birth day, the last of them, and as_of';
COMMENT ON COLUMN @extschema@.model_summary.x IS 'Engagement days after the birth day';
COMMENT ON COLUMN @extschema@.model_summary.t_x IS 'Days from the birth day to the last of them (0 when x = 0)';
COMMENT ON COLUMN @extschema@.model_summary.t IS 'Days from the birth day to as_of';
COMMENT ON COLUMN @extschema@.model_summary.value_days IS 'Conversion days whose value is > 0';
COMMENT ON COLUMN @extschema@.model_summary.mean_value IS 'Their mean value (0 when there are none)';
COMMENT ON TYPE @extschema@.model_summary IS
    'A contact''s MBG/NBD summary (x, t_x, t in days) and Gamma-Gamma summary (value_days: conversion days with a value > 0, mean_value: their mean)';
COMMENT ON AGGREGATE @extschema@.model_summary(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'One contact''s summaries for both models as of a time: (x, t_x, t) for MBG/NBD, (value_days, mean_value) for Gamma-Gamma';
COMMENT ON TYPE @extschema@.btyd_fit_state IS
    'fit_mbgnbd''s and fit_bgnbd''s partial state: the customer summaries, [(x,t_x,t,weight),...]';
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8, float8) IS
    'MBG/NBD parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8, float8) IS
    'BG/NBD parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';
COMMENT ON TYPE @extschema@.gammagamma_fit_state IS
    'fit_gammagamma''s partial state: {penalizer} when not 0, then the customer summaries [(x,m,weight),...]';
COMMENT ON FUNCTION @extschema@.gammagamma_fit_state_in(cstring) IS
    'Text input of gammagamma_fit_state: [(x,m,weight),...], after {penalizer} when not 0';
COMMENT ON FUNCTION @extschema@.gammagamma_fit_state_out(@extschema@.gammagamma_fit_state) IS
    'Text output of gammagamma_fit_state, its rows collapsed and sorted';
COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8) IS
    'Maximum-likelihood Gamma-Gamma parameters (p, q, v) of customers with x valued conversion days of mean value m';
COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8, float8) IS
    'Maximum-likelihood Gamma-Gamma parameters of weighted customer summaries (x, m)';
COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8, float8, float8) IS
    'Gamma-Gamma parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';
COMMENT ON FUNCTION @extschema@.expected_conversion_value(float8, float8, float8, float8, float8) IS
    'Gamma-Gamma expected value of the next conversion day of a customer with x valued conversion days of mean value m: p (v + x m) / (p x + q - 1)';
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of customer summaries (x repeat events, t_x, t)';
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of weighted customer summaries (weight: how many identical customers)';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters of weighted customer summaries (weight: how many identical customers)';
COMMENT ON FUNCTION @extschema@.btyd_fit_state_in(cstring) IS
    'Text input of btyd_fit_state: [(x,t_x,t,weight),...], after {penalizer} when not 0';
COMMENT ON FUNCTION @extschema@.btyd_fit_state_out(@extschema@.btyd_fit_state) IS
    'Text output of btyd_fit_state, its rows collapsed and sorted (equal states print the same)';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters (Fader, Hardie & Lee 2005) of customer summaries (x, t_x, t)';
COMMENT ON FUNCTION @extschema@.p_alive(text, float8, float8, float8, float8, float8, float8, float8) IS
    'P(alive at t | x, t_x, t) under mbgnbd or bgnbd';
COMMENT ON FUNCTION @extschema@.expected_engagements(text, float8, float8, float8, float8, float8, float8, float8, float8) IS
    'Expected number of events in (t, t + horizon] given (x, t_x, t), under mbgnbd or bgnbd';
COMMENT ON FUNCTION @extschema@.prob_no_engagement(text, float8, float8, float8, float8, float8, float8, float8, float8) IS
    'Probability of no event in (t, t + horizon] given (x, t_x, t), under mbgnbd or bgnbd';
COMMENT ON FUNCTION @extschema@.fit_model(text, timestamptz, text) IS
    'Fits the profile''s MBG/NBD (engagement days) and Gamma-Gamma (conversion value) models to its events as of a time, records both fits in model_fits, stores those that converged and returns the two records; on_failure ''error'' (by hand) or ''warning'' (scheduled)';
COMMENT ON FUNCTION @extschema@.validate_model(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout check: per calibration x (0..6, 7+), contacts and mean predicted vs actual repeat engagement days in the holdout (MBG/NBD fitted to the calibration period when fit, else the profile''s parameters)';
COMMENT ON FUNCTION @extschema@.validate_model_summary(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout totals: contacts, predicted and actual repeat engagement days, mean absolute error and correlation per contact, and the parameters used';
COMMENT ON FUNCTION @extschema@.refresh_jobs() IS
    'The pg_cron jobs of engagement_scoring with pg_cron''s status of their last run and, for refreshes, the last refresh_runs record of that kind (when, rescored, skipped, unmapped rows, error)';
COMMENT ON FUNCTION @extschema@.unschedule_refresh(text) IS 'Removes the pg_cron jobs of a profile; returns how many';
COMMENT ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) IS
    'Creates or updates the pg_cron jobs of a profile: incremental and full refreshes, and optionally a model refit (NULL: no job); returns their job ids';
COMMENT ON FUNCTION @extschema@.grant_application_access(regrole) IS
    'Lets a role insert and read events, read scores, history and profiles, and call the scoring and query functions';
COMMENT ON FUNCTION @extschema@.grant_admin_access(regrole) IS
    'Lets a role do everything: events, profiles, scores, refresh_scores, fitting and scheduling';

DROP FUNCTION @extschema@._upgrade_copy_grants(aclitem[], text, text);
