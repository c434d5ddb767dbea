-- models.sql: BG/NBD-family models fitted in the database (src/btyd_kernel.cpp): per-contact
-- summaries, the fitting aggregates and their state, the scalar predictions and fit_model.

CREATE TYPE @extschema@.model_fit AS (
    r float8, alpha float8, a float8, b float8, log_likelihood float8, n float8, iterations integer,
    converged boolean);
COMMENT ON TYPE @extschema@.model_fit IS
    'A maximum-likelihood fit: parameters, summed log-likelihood, total weight, BFGS iterations, convergence';
CREATE TYPE @extschema@.btyd_summary AS (x integer, t_x float8, t float8);
COMMENT ON TYPE @extschema@.btyd_summary IS
    'A contact''s engagement days (x), last engagement day (t_x) and today (t), in days since its first event';

-- btyd_summary(event_type, occurred_at, as_of): the contact's (x, t_x, t) as SCORING_MODEL.md
-- defines them.  It shares score_events' state, combine and (de)serialize functions.
CREATE FUNCTION @extschema@._btyd_summary_transfn(internal, @extschema@.event_type, timestamptz, timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_btyd_summary_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._btyd_summary_finalfn(internal)
RETURNS @extschema@.btyd_summary AS 'MODULE_PATHNAME', 'es_btyd_summary_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.btyd_summary(@extschema@.event_type, timestamptz, timestamptz) (
    SFUNC = @extschema@._btyd_summary_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._btyd_summary_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.btyd_summary(@extschema@.event_type, timestamptz, timestamptz) IS
    'One contact''s (x, t_x, t) in days: distinct engagement days, the last one and as_of, since the first event';

------------------------------------------------------------------------------------------------
-- fit_mbgnbd / fit_bgnbd(x, t_x, t [, weight]): maximum likelihood over the rows (any time unit).
-- Their state is a type with a text form, so Citus can split the aggregates.
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.btyd_fit_state;
CREATE FUNCTION @extschema@.btyd_fit_state_in(cstring) RETURNS @extschema@.btyd_fit_state
AS 'MODULE_PATHNAME', 'es_btyd_fit_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.btyd_fit_state_out(@extschema@.btyd_fit_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_btyd_fit_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE @extschema@.btyd_fit_state (
    INPUT = @extschema@.btyd_fit_state_in, OUTPUT = @extschema@.btyd_fit_state_out,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = double, STORAGE = extended);
COMMENT ON TYPE @extschema@.btyd_fit_state IS
    'fit_mbgnbd''s and fit_bgnbd''s partial state: the customer summaries, [(x,t_x,t,weight),...]';

CREATE FUNCTION @extschema@._fit_transfn(@extschema@.btyd_fit_state, integer, float8, float8)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_transfn(@extschema@.btyd_fit_state, integer, float8, float8, float8)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_combinefn(@extschema@.btyd_fit_state, @extschema@.btyd_fit_state)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_mbgnbd_finalfn(@extschema@.btyd_fit_state)
RETURNS @extschema@.model_fit AS 'MODULE_PATHNAME', 'es_btyd_fit_mbgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_bgnbd_finalfn(@extschema@.btyd_fit_state)
RETURNS @extschema@.model_fit AS 'MODULE_PATHNAME', 'es_btyd_fit_bgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8, weight float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8, weight float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of customer summaries (x repeat events, t_x, t)';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters (Fader, Hardie & Lee 2005) of customer summaries (x, t_x, t)';

------------------------------------------------------------------------------------------------
-- score_events / explain_events with the profile as a document (to_jsonb of a profile row):
-- its values travel with the query, so a postgres_fdw shard scores with exactly the
-- coordinator's profile and needs no copy of the profiles table.

CREATE FUNCTION @extschema@.p_alive(model text, x float8, t_x float8, t float8, r float8, alpha float8,
                                    a float8, b float8) RETURNS float8
AS 'MODULE_PATHNAME', 'es_p_alive' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.expected_engagements(model text, horizon float8, x float8, t_x float8, t float8,
                                                 r float8, alpha float8, a float8, b float8) RETURNS float8
AS 'MODULE_PATHNAME', 'es_expected_engagements' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.prob_no_engagement(model text, horizon float8, x float8, t_x float8, t float8,
                                               r float8, alpha float8, a float8, b float8) RETURNS float8
AS 'MODULE_PATHNAME', 'es_prob_no_engagement' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.p_alive(text, float8, float8, float8, float8, float8, float8, float8) IS
    'P(alive at t | x, t_x, t) under mbgnbd or bgnbd';
COMMENT ON FUNCTION @extschema@.expected_engagements(text, float8, float8, float8, float8, float8, float8, float8, float8) IS
    'Expected number of events in (t, t + horizon] given (x, t_x, t), under mbgnbd or bgnbd';
COMMENT ON FUNCTION @extschema@.prob_no_engagement(text, float8, float8, float8, float8, float8, float8, float8, float8) IS
    'Probability of no event in (t, t + horizon] given (x, t_x, t), under mbgnbd or bgnbd';

CREATE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now())
RETURNS @extschema@.model_fit
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
DECLARE
    p   @extschema@.scoring_profiles;
    fit @extschema@.model_fit;
    res record;
    repeaters bigint;
    events text;   -- the profile's events relation, bound (_bind_events_relation)
BEGIN
    p := @extschema@._profile_or_error(profile);
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- NO KEY UPDATE: other profiles' refreshes (FOR KEY SHARE through the foreign keys) go on.
    PERFORM FROM @extschema@.scoring_profiles sp WHERE sp.name = p.name FOR NO KEY UPDATE;
    events := @extschema@._bind_events_relation(p);
    -- Each contact's (x, t_x, Tc) in days, identical summaries collapsed with their count as weight.
    -- (from the profile's events relation: on postgres_fdw partitions the summaries are computed
    -- inside each shard)
    EXECUTE format($q$
        SELECT @extschema@.fit_mbgnbd(s.x, s.t_x, s.t, s.contacts::float8) AS fit,
               sum(s.contacts) FILTER (WHERE s.x > 0) AS repeaters
          FROM (SELECT (c.summary).x, (c.summary).t_x, (c.summary).t, count(*) AS contacts
                  FROM (SELECT @extschema@.btyd_summary(e.event_type, e.occurred_at, $1) AS summary
                          FROM %s e
                         WHERE e.occurred_at <= $1
                         GROUP BY e.contact_id) c
                 GROUP BY 1, 2, 3) s$q$, events)
    INTO res USING as_of;
    IF events = 'pg_temp._es_events' THEN DROP VIEW pg_temp._es_events; END IF;
    fit := res.fit;
    repeaters := coalesce(res.repeaters, 0);
    IF fit IS NULL THEN
        RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to fit', p.name, as_of
            USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT fit.converged THEN
        RAISE EXCEPTION 'the MBG/NBD fit of profile "%" did not converge after % iterations; nothing was stored',
                        p.name, fit.iterations
            USING ERRCODE = 'data_exception',
                  DETAIL = format('%s contacts, %s of them with engagement days; best log-likelihood %s at r=%s alpha=%s a=%s b=%s.',
                                  fit.n, repeaters, fit.log_likelihood, fit.r, fit.alpha, fit.a, fit.b),
                  HINT = CASE WHEN repeaters = 0
                              THEN 'No contact has an engagement day: the data cannot identify the model.'
                              ELSE 'The data may not identify the model (too few contacts, or parameters running off to 0 or infinity).' END;
    END IF;
    UPDATE @extschema@.scoring_profiles sp
       SET model_r = fit.r, model_alpha = fit.alpha, model_a = fit.a, model_b = fit.b,
           model_log_likelihood = fit.log_likelihood, model_fitted_at = now(), model_contacts = fit.n::bigint
     WHERE sp.name = p.name;   -- bumps the version: the next refresh rescores everyone
    RETURN fit;
END $$;
COMMENT ON FUNCTION @extschema@.fit_model(text, timestamptz) IS
    'Fits the profile''s MBG/NBD parameters (days) to every contact''s engagement days (from its events_relation) as of a time, stores them and returns the fit';
REVOKE EXECUTE ON FUNCTION @extschema@.fit_model(text, timestamptz) FROM PUBLIC;
