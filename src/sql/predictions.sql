------------------------------------------------------------------------------------------------
-- Predictions at any horizon and lifetime value, from the summary each stored score keeps
-- (docs/model.md "Stored summary and any horizon"), with the profile's current parameters,
-- without reading events.
--
-- predict and customer_lifetime_value are SQL functions the planner inlines into the caller's
-- query (so a caller's LIMIT, join or ORDER BY plans over the scores table itself, with no
-- result set materialised in between).  Inlining needs a body without SET: every name in these
-- bodies is schema-qualified, operators included, so the caller's search_path cannot change
-- what they call (sql/search_path.sql checks it).  Their arguments are checked once per query by
-- _prediction_arguments (_lifetime_arguments), a constant condition the planner evaluates before
-- the scan (the profile is compared as COALESCE(profile, ''), a construct, not a function: a NULL
-- would fold the scan's condition to false and the check, which reports it, would never run).  A
-- NULL contact_id has no row.
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.prediction AS (
    engagement_probability float8,
    conversion_probability float8,
    expected_engagements   float8,
    expected_value         float8
);
COMMENT ON TYPE @extschema@.prediction IS
    'A stored score''s predictions over a horizon of days after its calculated_at (predict)';
COMMENT ON COLUMN @extschema@.prediction.engagement_probability IS 'Probability of at least one engagement day within the horizon (MBG/NBD), penalised';
COMMENT ON COLUMN @extschema@.prediction.conversion_probability IS 'engagement_probability x the conversion share q';
COMMENT ON COLUMN @extschema@.prediction.expected_engagements IS 'Expected engagement days within the horizon (MBG/NBD), penalised';
COMMENT ON COLUMN @extschema@.prediction.expected_value IS 'Expected conversion value within the horizon: expected engagement days x q x expected conversion value (Gamma-Gamma), penalised';

CREATE FUNCTION @extschema@._predict(profile text, horizon_days float8, x bigint, t_x bigint, t_c bigint,
                                     n_days bigint, conv_days bigint, x_v bigint, m_v float8, opted_out boolean,
                                     undeliverable boolean)
RETURNS @extschema@.prediction
AS 'MODULE_PATHNAME', 'es_predict_summary' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@._predict(text, float8, bigint, bigint, bigint, bigint, bigint, bigint, float8, boolean, boolean) IS
    'The predictions of a stored summary over horizon_days, with the profile''s parameters (NULL for a score stored before model version 3)';

-- (the profile as a document: validation's, with the parameters fitted to its calibration period)
CREATE FUNCTION @extschema@._predict(profile jsonb, horizon_days float8, x bigint, t_x bigint, t_c bigint,
                                     n_days bigint, conv_days bigint, x_v bigint, m_v float8, opted_out boolean,
                                     undeliverable boolean)
RETURNS @extschema@.prediction
AS 'MODULE_PATHNAME', 'es_predict_summary' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@._predict(jsonb, float8, bigint, bigint, bigint, bigint, bigint, bigint, float8, boolean, boolean) IS
    'The predictions of a stored summary over horizon_days, with the parameters of a profile document (to_jsonb of a profile row)';

CREATE FUNCTION @extschema@._lifetime_value(profile text, months integer, x bigint, t_x bigint, t_c bigint,
                                            n_days bigint, conv_days bigint, x_v bigint, m_v float8,
                                            opted_out boolean, undeliverable boolean, monthly_discount_rate float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'es_lifetime_value_of_summary' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@._lifetime_value(text, integer, bigint, bigint, bigint, bigint, bigint, bigint, float8, boolean, boolean, float8) IS
    'The discounted lifetime value of a stored summary over months of 30 days, with the profile''s parameters';

-- The kernel's checks of a horizon (22023 when it is not a finite number of days > 0, 22003 beyond
-- 1e9 days) and of a lifetime's months and discount rate (22023), each error named after
-- function_name.  True when they hold.
CREATE FUNCTION @extschema@._horizon_ok(function_name text, horizon_days float8) RETURNS boolean
AS 'MODULE_PATHNAME', 'es_horizon_ok' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@._horizon_ok(text, float8) IS
    'The kernel''s check of a prediction''s horizon: true, or an error named after function_name';
CREATE FUNCTION @extschema@._lifetime_ok(function_name text, months integer, monthly_discount_rate float8) RETURNS boolean
AS 'MODULE_PATHNAME', 'es_lifetime_ok' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@._lifetime_ok(text, integer, float8) IS
    'The kernel''s checks of a lifetime value''s months and monthly discount rate: true, or an error named after function_name';

-- The checks of predict's and customer_lifetime_value's arguments, for the one-time condition of
-- their queries: 22004 for a NULL, the kernel's checks, 42704 for an unknown profile.  Always true
-- when they return.
CREATE FUNCTION @extschema@._prediction_arguments(function_name text, profile text, horizon_days float8)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null(function_name, profile IS NULL, horizon_days IS NULL);
    PERFORM @extschema@._horizon_ok(function_name, horizon_days);
    PERFORM @extschema@._profile_or_error(profile);
    RETURN true;
END $$;
COMMENT ON FUNCTION @extschema@._prediction_arguments(text, text, float8) IS
    'Checks the arguments of predict and the profile; true, or an error';

CREATE FUNCTION @extschema@._lifetime_arguments(function_name text, profile text, months integer,
                                                monthly_discount_rate float8)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null(function_name, profile IS NULL, months IS NULL, monthly_discount_rate IS NULL);
    PERFORM @extschema@._lifetime_ok(function_name, months, monthly_discount_rate);
    PERFORM @extschema@._profile_or_error(profile);
    RETURN true;
END $$;
COMMENT ON FUNCTION @extschema@._lifetime_arguments(text, text, integer, float8) IS
    'Checks the arguments of customer_lifetime_value and the profile; true, or an error';

-- Every stored score of the profile with its prediction, as a composite: the one query of both
-- forms of predict, which each read it below OFFSET 0 (so _predict runs once per score, not once per
-- field read), the contact's form with its condition above the function, where it still reaches
-- the scan.  (On Citus, _citus_predict in citus.sql is its form: a change here goes there too.)
CREATE FUNCTION @extschema@._predictions(function_name text, profile text, horizon_days float8)
RETURNS TABLE (contact_id bigint, p @extschema@.prediction, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sc.contact_id,
           @extschema@._predict($2, $3, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v,
                                sc.m_v, sc.opted_out, sc.undeliverable),
           sc.calculated_at
      FROM @extschema@.engagement_scores sc
     WHERE sc.profile OPERATOR(pg_catalog.=) COALESCE($2, '')
       AND @extschema@._prediction_arguments($1, $2, $3)
$$;
COMMENT ON FUNCTION @extschema@._predictions(text, text, float8) IS
    'predict''s query: the profile''s stored scores with their predictions over horizon_days (the arguments checked as function_name''s)';

CREATE FUNCTION @extschema@.predict(profile text, horizon_days float8)
RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
               expected_engagements float8, expected_value float8, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.contact_id, (s.p).engagement_probability, (s.p).conversion_probability, (s.p).expected_engagements,
           (s.p).expected_value, s.calculated_at
      FROM (SELECT * FROM @extschema@._predictions('predict(profile, horizon_days)', $1, $2) OFFSET 0) s
$$;
COMMENT ON FUNCTION @extschema@.predict(text, float8) IS
    'Every stored score''s predictions over the next horizon_days after its calculated_at (engagement and conversion probability, expected engagement days and value), from its stored summary and the profile''s parameters; equal to the stored fields at the profile''s horizon_days';

CREATE FUNCTION @extschema@.predict(contact_id bigint, horizon_days float8, profile text DEFAULT 'default')
RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
               expected_engagements float8, expected_value float8, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.contact_id, (s.p).engagement_probability, (s.p).conversion_probability, (s.p).expected_engagements,
           (s.p).expected_value, s.calculated_at
      FROM (SELECT * FROM @extschema@._predictions('predict(contact_id, horizon_days, profile)', $3, $2) r
             WHERE r.contact_id OPERATOR(pg_catalog.=) $1 OFFSET 0) s
$$;
COMMENT ON FUNCTION @extschema@.predict(bigint, float8, text) IS
    'One contact''s predictions over the next horizon_days after its stored score''s calculated_at (no row when it has no stored score)';

-- (On Citus, _citus_lifetime_value in citus.sql is its form: a change here goes there too.)
CREATE FUNCTION @extschema@.customer_lifetime_value(profile text, months integer, monthly_discount_rate float8)
RETURNS TABLE (contact_id bigint, lifetime_value float8, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sc.contact_id,
           @extschema@._lifetime_value($1, $2, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v, sc.m_v,
                                       sc.opted_out, sc.undeliverable, $3),
           sc.calculated_at
      FROM @extschema@.engagement_scores sc
     WHERE sc.profile OPERATOR(pg_catalog.=) COALESCE($1, '')
       AND @extschema@._lifetime_arguments('customer_lifetime_value(profile, months, monthly_discount_rate)', $1, $2, $3)
$$;
COMMENT ON FUNCTION @extschema@.customer_lifetime_value(text, integer, float8) IS
    'Every stored score''s discounted lifetime value over the next months (of 30 days): per month, the expected engagement days x conversion share x expected conversion value, divided by (1 + monthly_discount_rate)^month (lifetimes'' customer_lifetime_value)';
