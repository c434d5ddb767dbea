-- models.sql: BG/NBD-family models fitted in the database (src/btyd_kernel.cpp): per-contact
-- summaries, the fitting aggregates and their state, the scalar predictions and fit_model.

CREATE TYPE @extschema@.model_fit AS (
    r float8, alpha float8, a float8, b float8, log_likelihood float8, n float8, iterations integer,
    converged boolean, se_r float8, se_alpha float8, se_a float8, se_b float8, message text);
COMMENT ON TYPE @extschema@.model_fit IS
    'A maximum-likelihood BTYD fit: parameters, summed log-likelihood, total weight, BFGS iterations, convergence, standard errors (observed information; NULL when it is not positive definite), why it did not converge';
CREATE TYPE @extschema@.gammagamma_fit AS (
    p float8, q float8, v float8, log_likelihood float8, n float8, iterations integer, converged boolean,
    se_p float8, se_q float8, se_v float8, message text);
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
CREATE TYPE @extschema@.btyd_summary AS (x integer, t_x float8, t float8);
COMMENT ON TYPE @extschema@.btyd_summary IS
    'A contact''s engagement days (x), last engagement day (t_x) and today (t), in days since its first event';

-- btyd_summary(event_type, occurred_at, as_of): the contact's (x, t_x, t) as docs/model.md
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
-- With an L2 penalty on the log-parameters (the same for every row).
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


------------------------------------------------------------------------------------------------
-- The penalty ladder (README "Predictive models fitted in the database", docs/model.md "Fitting"):
-- when a fit with the profile's fit_penalizer does not converge, fit_model and validate_model fit
-- the same summaries again with each of these L2 penalties above it, smallest first, and keep the
-- first that converges.  The one place the ladder is written.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._fit_penalty_ladder() RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$SELECT '{0.001,0.01,0.1,1}'::float8[]$$;
COMMENT ON FUNCTION @extschema@._fit_penalty_ladder() IS
    'The L2 penalties fit_model and validate_model try, smallest first, when a fit with the profile''s fit_penalizer does not converge';

-- _fit_ladder: the fit of the summaries (parallel arrays, one element per distinct summary, weight
-- its contacts) with the penalty given; if it has rows and does not converge, the fits with the
-- ladder's penalties above it, until one converges.  fit_query: the fit with the penalty $1 and the
-- arrays $2 to $5; kind: NULL of its type.  fit: the one that converged, else the one with the
-- penalty given; penalty: its penalty; unconverged: the message of the fit with the penalty given
-- when a rung of the ladder replaced it; ladder: the penalties tried after it (empty when none was).
CREATE FUNCTION @extschema@._fit_ladder(kind anyelement, fit_query text, penalizer float8, a1 integer[],
                                        a2 float8[], a3 float8[], weights float8[], OUT fit anyelement,
                                        OUT penalty float8, OUT unconverged text, OUT ladder float8[])
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rung  float8;
    tried record;
    fields text := format('SELECT (q.f).* FROM (%s) q(f)', fit_query);   -- (INTO takes the fit's fields)
BEGIN
    EXECUTE fields INTO fit USING penalizer, a1, a2, a3, weights;
    penalty := penalizer;
    ladder := '{}';
    IF fit.n IS NULL OR fit.converged THEN
        RETURN;
    END IF;
    FOREACH rung IN ARRAY @extschema@._fit_penalty_ladder() LOOP
        CONTINUE WHEN rung <= penalizer;
        ladder := ladder || rung;
        EXECUTE fields INTO tried USING rung, a1, a2, a3, weights;
        IF tried.converged THEN
            unconverged := fit.message;
            fit := tried;
            penalty := rung;
            RETURN;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@._fit_ladder(anyelement, text, float8, integer[], float8[], float8[], float8[]) IS
    'A fit of weighted summaries with the penalty given, or with the smallest penalty of the ladder above it that converges when that one does not';

CREATE FUNCTION @extschema@._fit_mbgnbd_ladder(xs integer[], t_xs float8[], ts float8[], weights float8[],
                                               penalizer float8, OUT fit @extschema@.model_fit,
                                               OUT penalty float8, OUT unconverged text, OUT ladder float8[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@._fit_ladder(NULL::@extschema@.model_fit,
        'SELECT @extschema@.fit_mbgnbd(u.x, u.t_x, u.t, u.w, $1) FROM unnest($2, $3, $4, $5) u(x, t_x, t, w)',
        penalizer, xs, t_xs, ts, weights)
$$;
COMMENT ON FUNCTION @extschema@._fit_mbgnbd_ladder(integer[], float8[], float8[], float8[], float8) IS
    'fit_mbgnbd of weighted summaries with the penalty given, or with the smallest penalty of the ladder above it that converges when that one does not (_fit_ladder)';

CREATE FUNCTION @extschema@._fit_gammagamma_ladder(xs integer[], ms float8[], weights float8[], penalizer float8,
                                                   OUT fit @extschema@.gammagamma_fit, OUT penalty float8,
                                                   OUT unconverged text, OUT ladder float8[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@._fit_ladder(NULL::@extschema@.gammagamma_fit,
        'SELECT @extschema@.fit_gammagamma(u.x, u.m, u.w, $1) FROM unnest($2, $3, $5) u(x, m, w)',
        penalizer, xs, ms, NULL, weights)
$$;
COMMENT ON FUNCTION @extschema@._fit_gammagamma_ladder(integer[], float8[], float8[], float8) IS
    'fit_gammagamma of weighted summaries with the penalty given, or with the smallest penalty of the ladder above it that converges when that one does not (_fit_ladder)';

-- _fit_ladder_note: what model_fits.message and the WARNINGs say of a fit the ladder decided:
-- that the fit with the profile's penalty did not converge and why, and which rung converged
-- (or that none did).  Which parameter ran off and which way, not where the optimiser left it
-- (a value of no meaning, which differs from one build of the library to another).
CREATE FUNCTION @extschema@._fit_ladder_note(penalizer float8, unconverged text, penalty float8, ladder float8[])
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE
    WHEN unconverged IS NOT NULL THEN
        format('the %s did not converge: %s; it converged with the ladder''s penalty %s',
               CASE WHEN penalizer = 0 THEN 'unpenalised fit' ELSE format('fit with fit_penalizer %s', penalizer) END,
               regexp_replace(regexp_replace(unconverged, '^.*? fit did not converge: ', ''),
                              '(parameter \w+) = \S+ ran off', '\1 ran off'),
               penalty)
    WHEN cardinality(ladder) > 0 THEN
        format('nor with the ladder''s penalties %s', array_to_string(ladder, ', '))
    END $$;
COMMENT ON FUNCTION @extschema@._fit_ladder_note(float8, text, float8, float8[]) IS
    'What fit_model and validate_model say of a fit the penalty ladder rescued, or that no penalty of it converged';


------------------------------------------------------------------------------------------------
-- fit_model: both models fitted to the profile's contacts, recorded in model_fits, stored when
-- they converge.  A fit with the profile's fit_penalizer that does not converge is tried again
-- with the penalty ladder (_fit_penalty_ladder) on the same summaries; the smallest penalty that
-- converges is recorded, stored and warned of.  A fit that converges with none keeps the
-- profile's previous parameters; by hand (on_failure 'error') it is an error that says why (and,
-- the transaction rolled back, leaves no record); the scheduled refit ('warning') records it,
-- warns and goes on.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now(),
                                      on_failure text DEFAULT 'error')
RETURNS SETOF @extschema@.model_fits
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
DECLARE
    p        @extschema@.scoring_profiles;
    res      record;
    mbg      @extschema@.model_fit;
    gg       @extschema@.gammagamma_fit;
    rd       record;   -- the read of the events (_events_read_begin): the relation bound, the caller's role
    failures text[] := '{}';
    mbg_row  @extschema@.model_fits;
    gg_row   @extschema@.model_fits;
    mbg_l    record;   -- _fit_mbgnbd_ladder's answer: the fit kept, its penalty, the ladder tried
    gg_l     record;   -- _fit_gammagamma_ladder's
    mbg_note text;     -- what the ladder did (_fit_ladder_note), NULL: nothing
    gg_note  text;
    hint     text;
BEGIN
    PERFORM @extschema@._arguments_not_null('fit_model(profile, as_of, on_failure)',
                                            profile IS NULL, as_of IS NULL, on_failure IS NULL);
    p := @extschema@._profile_or_error(profile);
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF on_failure NOT IN ('error', 'warning') THEN
        RAISE EXCEPTION 'on_failure must be ''error'' or ''warning'', not %', quote_literal(on_failure)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- On Citus the profile is updated after a scan of the distributed events, which Citus allows
    -- only over one connection per worker (the scores have foreign keys to the profiles); and
    -- after that write of a reference table Citus refuses parallel work on the tables referencing
    -- it for the rest of the transaction: sequential until the transaction ends (set_config's
    -- local setting outlives this function, and must).
    IF @extschema@._on_citus() THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    -- NO KEY UPDATE: other profiles' refreshes (FOR KEY SHARE through the foreign keys) go on.
    PERFORM FROM @extschema@.scoring_profiles sp WHERE sp.name = p.name FOR NO KEY UPDATE;
    -- The events are read with the rights of the role that set the source (_events_read_begin).
    rd := @extschema@._events_read_begin(p, NULL);
    -- One scan: each contact's summaries for both models, identical summaries collapsed with
    -- their count as weight (on postgres_fdw partitions the summaries are computed in each shard),
    -- kept as arrays, one element per distinct summary: the penalty ladder fits them again
    -- without scanning the events again.
    EXECUTE format($q$
        WITH c AS MATERIALIZED (
            SELECT @extschema@.model_summary(e.event_type, e.occurred_at, e.conversion_value, $1) AS s
              FROM %s e
             WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        b AS (SELECT array_agg(d.x) AS x, array_agg(d.t_x) AS t_x, array_agg(d.t) AS t,
                     array_agg(d.contacts::float8) AS w
                FROM (SELECT (c.s).x, (c.s).t_x, (c.s).t, count(*) AS contacts FROM c GROUP BY 1, 2, 3) d),
        g AS (SELECT array_agg(d.x) AS x, array_agg(d.m) AS m, array_agg(d.contacts::float8) AS w,
                     coalesce(sum(d.contacts), 0) AS valued
                FROM (SELECT (c.s).value_days AS x, (c.s).mean_value AS m, count(*) AS contacts
                        FROM c WHERE (c.s).value_days > 0 GROUP BY 1, 2) d)
        SELECT b.x AS b_x, b.t_x AS b_t_x, b.t AS b_t, b.w AS b_w, g.x AS g_x, g.m AS g_m, g.w AS g_w,
               (SELECT count(*) FROM c) AS contacts, g.valued
          FROM b, g$q$, rd.events)
    INTO res USING as_of;
    PERFORM @extschema@._events_read_end(rd.events, rd.caller);
    -- Each model with the profile's fit_penalizer, and if that does not converge with the ladder's
    -- penalties above it (_fit_penalty_ladder), keeping the smallest that converges.
    mbg_l := @extschema@._fit_mbgnbd_ladder(res.b_x, res.b_t_x, res.b_t, res.b_w, p.fit_penalizer);
    gg_l := @extschema@._fit_gammagamma_ladder(res.g_x, res.g_m, res.g_w, p.fit_penalizer);
    mbg := mbg_l.fit;
    gg := gg_l.fit;
    mbg_note := @extschema@._fit_ladder_note(p.fit_penalizer, mbg_l.unconverged, mbg_l.penalty, mbg_l.ladder);
    gg_note := @extschema@._fit_ladder_note(p.fit_penalizer, gg_l.unconverged, gg_l.penalty, gg_l.ladder);

    IF mbg.n IS NULL THEN   -- (not "mbg IS NULL": a converged fit has a NULL message)
        failures := failures || format('MBG/NBD: no contact has an event at or before %s: nothing to fit', as_of);
        IF on_failure = 'error' THEN
            RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to fit', p.name, as_of
                USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT mbg.converged THEN
        failures := failures || format('%s (%s contacts)%s', mbg.message, res.contacts, '; ' || mbg_note);
    END IF;
    INSERT INTO @extschema@.model_fits (profile, model, fitted_at, as_of, contacts, penalizer, parameters,
                                        standard_errors, log_likelihood, iterations, converged, stored, message)
    VALUES (p.name, 'mbgnbd', now(), as_of, res.contacts, mbg_l.penalty,
            CASE WHEN mbg.n IS NOT NULL THEN jsonb_build_object('r', mbg.r, 'alpha', mbg.alpha, 'a', mbg.a, 'b', mbg.b) END,
            CASE WHEN mbg.se_r IS NOT NULL
                 THEN jsonb_build_object('r', mbg.se_r, 'alpha', mbg.se_alpha, 'a', mbg.se_a, 'b', mbg.se_b) END,
            mbg.log_likelihood, mbg.iterations, coalesce(mbg.converged, false), coalesce(mbg.converged, false),
            CASE WHEN mbg.n IS NULL THEN 'no contact has an event at or before as_of'
                 WHEN NOT mbg.converged THEN mbg.message || coalesce('; ' || mbg_note, '') || '; the profile keeps its parameters'
                 ELSE mbg_note END)
    RETURNING * INTO mbg_row;

    -- Gamma-Gamma: no contact with a valued conversion is no failure (the defaults stay).
    IF gg.n IS NOT NULL AND NOT gg.converged THEN
        failures := failures || format('%s (%s contacts with valued conversions)%s', gg.message, res.valued, '; ' || gg_note);
    END IF;
    INSERT INTO @extschema@.model_fits (profile, model, fitted_at, as_of, contacts, penalizer, parameters,
                                        standard_errors, log_likelihood, iterations, converged, stored, message)
    VALUES (p.name, 'gammagamma', now(), as_of, res.valued, gg_l.penalty,
            CASE WHEN gg.n IS NOT NULL THEN jsonb_build_object('p', gg.p, 'q', gg.q, 'v', gg.v) END,
            CASE WHEN gg.se_p IS NOT NULL THEN jsonb_build_object('p', gg.se_p, 'q', gg.se_q, 'v', gg.se_v) END,
            gg.log_likelihood, gg.iterations, coalesce(gg.converged, false), coalesce(gg.converged, false),
            CASE WHEN gg.n IS NULL THEN 'no contact has a conversion with a value: the profile keeps gg_p, gg_q, gg_v'
                 WHEN NOT gg.converged THEN gg.message || coalesce('; ' || gg_note, '') || '; the profile keeps its parameters'
                 ELSE gg_note END)
    RETURNING * INTO gg_row;

    IF cardinality(failures) > 0 THEN
        hint := format('fit_model tries the L2 penalties %s above the profile''s fit_penalizer before it gives up; '
                       'data no penalty makes converge do not identify the model (e.g. no contact engages after its '
                       'first day, or a spend too heavy-tailed for a finite mean: q <= 1).',
                       array_to_string(@extschema@._fit_penalty_ladder(), ', '));
        IF on_failure = 'error' THEN
            RAISE EXCEPTION 'fit_model of profile "%": %', p.name, array_to_string(failures, '; ')
                USING ERRCODE = 'data_exception',
                      HINT = 'Nothing was stored.  ' || hint || '  fit_model(..., on_failure => ''warning'') stores what converged.';
        END IF;
        RAISE WARNING 'fit_model of profile "%": %; the profile keeps the previous parameters of that model',
                      p.name, array_to_string(failures, '; ')
            USING HINT = hint;
    END IF;
    -- A fit the ladder rescued is stored, and said so (on_failure 'error' too: it succeeded).
    IF mbg.converged AND mbg_note IS NOT NULL THEN
        RAISE WARNING 'fit_model of profile "%": MBG/NBD: %; stored with it', p.name, mbg_note
            USING HINT = 'model_fits.penalizer records the penalty used; the profile''s fit_penalizer chooses one from the start.';
    END IF;
    IF gg.converged AND gg_note IS NOT NULL THEN
        RAISE WARNING 'fit_model of profile "%": Gamma-Gamma: %; stored with it', p.name, gg_note
            USING HINT = 'model_fits.penalizer records the penalty used; the profile''s fit_penalizer chooses one from the start.';
    END IF;

    -- Storing bumps the profile's version: the next refresh rescores everyone.
    IF mbg_row.stored OR gg_row.stored THEN
        UPDATE @extschema@.scoring_profiles sp
           SET model_r = CASE WHEN mbg_row.stored THEN mbg.r ELSE sp.model_r END,
               model_alpha = CASE WHEN mbg_row.stored THEN mbg.alpha ELSE sp.model_alpha END,
               model_a = CASE WHEN mbg_row.stored THEN mbg.a ELSE sp.model_a END,
               model_b = CASE WHEN mbg_row.stored THEN mbg.b ELSE sp.model_b END,
               model_log_likelihood = CASE WHEN mbg_row.stored THEN mbg.log_likelihood ELSE sp.model_log_likelihood END,
               model_fitted_at = CASE WHEN mbg_row.stored THEN mbg_row.fitted_at ELSE sp.model_fitted_at END,
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

------------------------------------------------------------------------------------------------
-- Model validation (docs/model.md "Validation"): calibration up to calibration_end,
-- holdout to holdout_end.  _validation fills pg_temp._es_validation with every calibration
-- contact's summary as of the calibration end (its score there: the MBG/NBD and Gamma-Gamma
-- summaries, the conversion days for q, the opt-out and undeliverable flags, the composite),
-- predicted and actual repeat engagement days and conversion value in the holdout (and the predicted
-- engagement probability, which validate_lift ranks by), and returns
-- the parameters used; validate_model, validate_model_summary and validate_lift read it.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._validation(calibration_end timestamptz, holdout_end timestamptz, profile text,
                                        fit boolean, OUT parameters @extschema@.model_fit,
                                        OUT value_parameters @extschema@.gammagamma_fit)
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on
                   SET extra_float_digits = 3 AS $$   -- (the fitted parameters reach _predict exactly, through jsonb)
DECLARE
    p       @extschema@.scoring_profiles;
    rd      record;   -- the read of the events (_events_read_begin)
    fitted  record;   -- a _fit_*_ladder's answer
    note    text;
    doc     jsonb;    -- the profile with the parameters used, for _predict
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
    IF to_regclass('pg_temp._es_validation') IS NOT NULL THEN   -- left by an earlier call in this transaction
        DROP TABLE pg_temp._es_validation;
    END IF;
    rd := @extschema@._events_read_begin(p, NULL);
    -- calibration: one scan of the events up to C, each contact scored as of C with the profile
    -- (by name on engagement_events, as a document on a source, as _refresh_score_contacts does);
    -- actual: the distinct days d with day(C) < d <= day(H) holding an engaging event, and the
    -- conversion value of those days' converted events (NULL counts 0)
    EXECUTE format($q$
        CREATE TEMP TABLE _es_validation ON COMMIT DROP AS
        WITH cal AS (
            SELECT e.contact_id, @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s
              FROM %1$s e WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        hold AS (
            SELECT e.contact_id, count(DISTINCT floor(extract(epoch FROM e.occurred_at) / 86400)) AS days,
                   sum(e.conversion_value) FILTER (WHERE e.event_type = 'converted') AS value
              FROM %1$s e
             WHERE e.event_type IN ('opened', 'clicked', 'responded', 'converted')
               AND e.occurred_at >= to_timestamp(($2 + 1) * 86400.0) AND e.occurred_at < to_timestamp(($3 + 1) * 86400.0)
             GROUP BY e.contact_id)
        SELECT cal.contact_id, (cal.s).x::integer AS x, (cal.s).t_x::float8 AS t_x, (cal.s).t_c::float8 AS t,
               (cal.s).n_days, (cal.s).conv_days, (cal.s).x_v::integer AS x_v, (cal.s).m_v,
               (cal.s).opted_out, (cal.s).undeliverable, (cal.s).composite,
               coalesce(hold.days, 0)::float8 AS actual, coalesce(hold.value, 0)::float8 AS actual_value,
               NULL::float8 AS predicted, NULL::float8 AS predicted_value, NULL::float8 AS engagement_probability
          FROM cal LEFT JOIN hold USING (contact_id)$q$,
        rd.events, CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$4' ELSE '$5' END)
    USING calibration_end, cal_day, hold_day, p.name, to_jsonb(p);
    PERFORM @extschema@._events_read_end(rd.events, rd.caller);
    IF NOT EXISTS (SELECT FROM pg_temp._es_validation) THEN
        RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to validate', p.name, calibration_end
            USING ERRCODE = 'no_data_found';
    END IF;
    IF fit THEN
        -- with the profile's fit_penalizer, or the smallest penalty of the ladder that converges (as fit_model)
        fitted := (SELECT @extschema@._fit_mbgnbd_ladder(array_agg(v.x), array_agg(v.t_x), array_agg(v.t),
                                                         array_agg(v.n::float8), p.fit_penalizer)
                     FROM (SELECT x, t_x, t, count(*) AS n FROM pg_temp._es_validation GROUP BY 1, 2, 3) v);
        parameters := fitted.fit;
        note := @extschema@._fit_ladder_note(p.fit_penalizer, fitted.unconverged, fitted.penalty, fitted.ladder);
        IF NOT parameters.converged THEN
            RAISE EXCEPTION 'the calibration fit of profile "%" did not converge: %', p.name,
                            parameters.message || coalesce('; ' || note, '')
                USING ERRCODE = 'data_exception',
                      HINT = 'Validate with the profile''s parameters (fit => false).';
        ELSIF note IS NOT NULL THEN
            RAISE WARNING 'the calibration fit of profile "%": %; validated with it', p.name, note;
        END IF;
        -- Gamma-Gamma over the contacts with valued conversion days, the same way; none: the
        -- profile's parameters (as fit_model)
        fitted := (SELECT @extschema@._fit_gammagamma_ladder(array_agg(g.x_v), array_agg(g.m_v), array_agg(g.n::float8),
                                                             p.fit_penalizer)
                     FROM (SELECT x_v, m_v, count(*) AS n FROM pg_temp._es_validation WHERE x_v > 0 GROUP BY 1, 2) g);
        value_parameters := fitted.fit;
        note := @extschema@._fit_ladder_note(p.fit_penalizer, fitted.unconverged, fitted.penalty, fitted.ladder);
        IF value_parameters.n IS NULL THEN
            value_parameters := ROW(p.gg_p, p.gg_q, p.gg_v, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        ELSIF NOT value_parameters.converged THEN
            RAISE EXCEPTION 'the calibration Gamma-Gamma fit of profile "%" did not converge: %', p.name,
                            value_parameters.message || coalesce('; ' || note, '')
                USING ERRCODE = 'data_exception',
                      HINT = 'Validate with the profile''s parameters (fit => false).';
        ELSIF note IS NOT NULL THEN
            RAISE WARNING 'the calibration Gamma-Gamma fit of profile "%": %; validated with it', p.name, note;
        END IF;
    ELSE
        parameters := ROW(p.model_r, p.model_alpha, p.model_a, p.model_b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        value_parameters := ROW(p.gg_p, p.gg_q, p.gg_v, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    END IF;
    -- predicted: the MBG/NBD expectation over the holdout, unpenalised (the literature's check), one
    -- per distinct summary; the value and the probability: the score's expected_value and
    -- engagement_probability over the holdout, penalised (predict's kernel, with the parameters used)
    doc := to_jsonb(p) || jsonb_build_object('model_r', parameters.r, 'model_alpha', parameters.alpha,
                                             'model_a', parameters.a, 'model_b', parameters.b,
                                             'gg_p', value_parameters.p, 'gg_q', value_parameters.q,
                                             'gg_v', value_parameters.v);
    UPDATE pg_temp._es_validation v
       SET predicted = d.predicted, predicted_value = (c.pr).expected_value,
           engagement_probability = (c.pr).engagement_probability
      FROM (SELECT x, t_x, t, @extschema@.expected_engagements('mbgnbd', (hold_day - cal_day)::float8, x, t_x, t,
                                                                parameters.r, parameters.alpha, parameters.a,
                                                                parameters.b) AS predicted
              FROM (SELECT DISTINCT x, t_x, t FROM pg_temp._es_validation) u) d,
           (SELECT u.contact_id,
                   @extschema@._predict(doc, (hold_day - cal_day)::float8, u.x, u.t_x::bigint, u.t::bigint, u.n_days,
                                        u.conv_days, u.x_v, u.m_v, u.opted_out, u.undeliverable) AS pr
              FROM pg_temp._es_validation u OFFSET 0) c
     WHERE v.x = d.x AND v.t_x = d.t_x AND v.t = d.t AND v.contact_id = c.contact_id;
END $$;

CREATE FUNCTION @extschema@.validate_model(calibration_end timestamptz, holdout_end timestamptz,
                                           profile text DEFAULT 'default', fit boolean DEFAULT true)
RETURNS TABLE (x_bucket text, contacts bigint, predicted float8, actual float8, predicted_value float8,
               actual_value float8)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('validate_model(calibration_end, holdout_end, profile, fit)',
                                            calibration_end IS NULL, holdout_end IS NULL, profile IS NULL, fit IS NULL);
    PERFORM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    RETURN QUERY
    SELECT CASE WHEN v.x >= 7 THEN '7+' ELSE v.x::text END, count(*), avg(v.predicted), avg(v.actual),
           avg(v.predicted_value), avg(v.actual_value)
      FROM pg_temp._es_validation v
     GROUP BY 1 ORDER BY min(v.x);
    DROP TABLE pg_temp._es_validation;
END $$;
COMMENT ON FUNCTION @extschema@.validate_model(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout check: per calibration x (0..6, 7+), contacts, mean predicted vs actual repeat engagement days and mean predicted vs actual conversion value in the holdout (MBG/NBD and Gamma-Gamma fitted to the calibration period when fit, else the profile''s parameters)';

CREATE FUNCTION @extschema@.validate_model_summary(calibration_end timestamptz, holdout_end timestamptz,
                                                   profile text DEFAULT 'default', fit boolean DEFAULT true,
                                                   OUT contacts bigint, OUT predicted_total float8,
                                                   OUT actual_total float8, OUT mean_absolute_error float8,
                                                   OUT correlation float8, OUT horizon_days integer,
                                                   OUT parameters @extschema@.model_fit,
                                                   OUT predicted_value_total float8, OUT actual_value_total float8,
                                                   OUT value_mean_absolute_error float8, OUT value_correlation float8,
                                                   OUT value_parameters @extschema@.gammagamma_fit)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    used record;
BEGIN
    PERFORM @extschema@._arguments_not_null('validate_model_summary(calibration_end, holdout_end, profile, fit)',
                                            calibration_end IS NULL, holdout_end IS NULL, profile IS NULL, fit IS NULL);
    SELECT * INTO used FROM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    parameters := used.parameters;
    value_parameters := used.value_parameters;
    horizon_days := floor(extract(epoch FROM holdout_end) / 86400) - floor(extract(epoch FROM calibration_end) / 86400);
    SELECT count(*), sum(v.predicted), sum(v.actual), avg(abs(v.predicted - v.actual)), corr(v.predicted, v.actual),
           sum(v.predicted_value), sum(v.actual_value), avg(abs(v.predicted_value - v.actual_value)),
           corr(v.predicted_value, v.actual_value)
      INTO contacts, predicted_total, actual_total, mean_absolute_error, correlation,
           predicted_value_total, actual_value_total, value_mean_absolute_error, value_correlation
      FROM pg_temp._es_validation v;
    DROP TABLE pg_temp._es_validation;
END $$;
COMMENT ON FUNCTION @extschema@.validate_model_summary(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout totals: contacts, predicted and actual repeat engagement days, mean absolute error and correlation per contact, the MBG/NBD parameters used; the same for the conversion value and the Gamma-Gamma parameters used';

-- validate_lift: the calibration contacts ranked as of the calibration end, cut into deciles
-- (ntile(10), ties broken by contact_id), and each decile's share of the holdout's actual value.
CREATE FUNCTION @extschema@.validate_lift(calibration_end timestamptz, holdout_end timestamptz,
                                          profile text DEFAULT 'default', rank_by text DEFAULT 'expected_value',
                                          fit boolean DEFAULT true)
RETURNS TABLE (decile integer, contacts bigint, predicted float8, actual float8, share float8,
               cumulative_share float8, lift float8)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('validate_lift(calibration_end, holdout_end, profile, rank_by, fit)',
                                            calibration_end IS NULL, holdout_end IS NULL, profile IS NULL,
                                            rank_by IS NULL, fit IS NULL);
    IF rank_by NOT IN ('expected_value', 'engagement_probability', 'composite') THEN
        RAISE EXCEPTION 'rank_by must be ''expected_value'', ''engagement_probability'' or ''composite'', not %',
                        quote_literal(rank_by) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    RETURN QUERY
    WITH ranked AS (
        SELECT v.predicted_value, v.actual_value,
               ntile(10) OVER (ORDER BY CASE rank_by
                                        WHEN 'expected_value' THEN v.predicted_value
                                        WHEN 'composite' THEN v.composite
                                        ELSE v.engagement_probability
                                        END DESC, v.contact_id) AS k
          FROM pg_temp._es_validation v),
    deciles AS (
        SELECT r.k, count(*) AS n, sum(r.predicted_value) AS pv, sum(r.actual_value) AS av
          FROM ranked r GROUP BY r.k)
    SELECT t.k, t.n, t.pv, t.av,
           t.av / nullif(sum(t.av) OVER (), 0),
           sum(t.av) OVER (ORDER BY t.k) / nullif(sum(t.av) OVER (), 0),
           (t.av / nullif(sum(t.av) OVER (), 0)) / (t.n::float8 / sum(t.n) OVER ())
      FROM deciles t ORDER BY t.k;
    DROP TABLE pg_temp._es_validation;
END $$;
COMMENT ON FUNCTION @extschema@.validate_lift(timestamptz, timestamptz, text, text, boolean) IS
    'Lift by decile: the calibration contacts ranked by expected_value or engagement_probability over the holdout or by composite, as of the calibration end (ties by contact_id), cut into ten deciles (1 = top); per decile contacts, predicted and actual holdout conversion value, its share of all actual value, the cumulative share, and the lift (share / share of contacts)';
