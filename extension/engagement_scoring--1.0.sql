-- engagement_scoring 1.0: schema, scoring profiles, score tables, scoring aggregates and the SQL API.
-- The model is shared/SCORING_MODEL.md; every number here is one of its defaults.

\echo Use "CREATE EXTENSION engagement_scoring" to load this file. \quit

-- The schema comes from the control file (schema = engagement); the extension does not relocate.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

CREATE TYPE @extschema@.event_type AS ENUM
    ('delivered', 'opened', 'clicked', 'responded', 'converted', 'opted_out', 'bounced');
COMMENT ON TYPE @extschema@.event_type IS
    'SMS CRM engagement event types; opened, clicked, responded and converted are the engaging ones';

------------------------------------------------------------------------------------------------
-- Events
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.engagement_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id       bigint NOT NULL,
    campaign_id      bigint,
    event_type       @extschema@.event_type NOT NULL,
    occurred_at      timestamptz NOT NULL,
    conversion_value numeric(14,2),
    channel          text NOT NULL DEFAULT 'sms',
    device_type      text,
    parent_event_id  bigint REFERENCES @extschema@.engagement_events (id) ON DELETE SET NULL,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT engagement_events_occurred_at_finite CHECK (isfinite(occurred_at)),
    CONSTRAINT engagement_events_value_nonnegative CHECK (conversion_value >= 0),
    CONSTRAINT engagement_events_value_only_on_converted
        CHECK (conversion_value IS NULL OR event_type = 'converted'),
    CONSTRAINT engagement_events_parent_not_self CHECK (parent_event_id <> id),
    CONSTRAINT engagement_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT engagement_events_channel_known
        CHECK (channel IN ('sms', 'mms', 'email', 'voice', 'web', 'app'))
);
COMMENT ON TABLE @extschema@.engagement_events IS 'Engagement events of CRM contacts, the input of every score';

-- engagement_score(), explain_score(): WHERE contact_id = $1 AND occurred_at <= as_of.
CREATE INDEX engagement_events_contact_time_idx
    ON @extschema@.engagement_events (contact_id, occurred_at);
-- The parent_event_id foreign key: deleting an event looks up its children here (ON DELETE SET NULL).
CREATE INDEX engagement_events_parent_idx
    ON @extschema@.engagement_events (parent_event_id) WHERE parent_event_id IS NOT NULL;

------------------------------------------------------------------------------------------------
-- Scoring profiles: every parameter of SCORING_MODEL.md, one row per named profile
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.scoring_profiles (
    name                 text PRIMARY KEY CHECK (name <> '' AND octet_length(name) < 64),  -- fits a NAMEDATALEN buffer
    description          text,
    lookback_days        float8 NOT NULL DEFAULT 365  CHECK (lookback_days > 0 AND lookback_days < 'Infinity'),
    recency_tau_days     float8 NOT NULL DEFAULT 30   CHECK (recency_tau_days > 0 AND recency_tau_days < 'Infinity'),
    frequency_min_days   float8 NOT NULL DEFAULT 7    CHECK (frequency_min_days > 0 AND frequency_min_days < 'Infinity'),
    frequency_ref_rate   float8 NOT NULL DEFAULT 0.1  CHECK (frequency_ref_rate > 0 AND frequency_ref_rate < 'Infinity'),
    monetary_ref_value   float8 NOT NULL DEFAULT 1000 CHECK (monetary_ref_value > 0 AND monetary_ref_value < 'Infinity'),
    half_life_days       float8 NOT NULL DEFAULT 14   CHECK (half_life_days > 0 AND half_life_days < 'Infinity'),
    time_decay_ref       float8 NOT NULL DEFAULT 5    CHECK (time_decay_ref > 0 AND time_decay_ref < 'Infinity'),
    -- time-decay weight of each event type
    decay_weight_delivered float8 NOT NULL DEFAULT 0   CHECK (decay_weight_delivered > '-Infinity' AND decay_weight_delivered < 'Infinity'),
    decay_weight_opened    float8 NOT NULL DEFAULT 1   CHECK (decay_weight_opened > '-Infinity' AND decay_weight_opened < 'Infinity'),
    decay_weight_clicked   float8 NOT NULL DEFAULT 2   CHECK (decay_weight_clicked > '-Infinity' AND decay_weight_clicked < 'Infinity'),
    decay_weight_responded float8 NOT NULL DEFAULT 3   CHECK (decay_weight_responded > '-Infinity' AND decay_weight_responded < 'Infinity'),
    decay_weight_converted float8 NOT NULL DEFAULT 10  CHECK (decay_weight_converted > '-Infinity' AND decay_weight_converted < 'Infinity'),
    decay_weight_opted_out float8 NOT NULL DEFAULT -10 CHECK (decay_weight_opted_out > '-Infinity' AND decay_weight_opted_out < 'Infinity'),
    decay_weight_bounced   float8 NOT NULL DEFAULT -1  CHECK (decay_weight_bounced > '-Infinity' AND decay_weight_bounced < 'Infinity'),
    -- composite weights
    weight_recency       float8 NOT NULL DEFAULT 0.30 CHECK (weight_recency BETWEEN 0 AND 1),
    weight_frequency     float8 NOT NULL DEFAULT 0.25 CHECK (weight_frequency BETWEEN 0 AND 1),
    weight_monetary      float8 NOT NULL DEFAULT 0.20 CHECK (weight_monetary BETWEEN 0 AND 1),
    weight_time_decay    float8 NOT NULL DEFAULT 0.15 CHECK (weight_time_decay BETWEEN 0 AND 1),
    weight_diversity     float8 NOT NULL DEFAULT 0.10 CHECK (weight_diversity BETWEEN 0 AND 1),
    opt_out_penalty      float8 NOT NULL DEFAULT 0.9  CHECK (opt_out_penalty BETWEEN 0 AND 1),
    -- MBG/NBD population parameters (defaults until a fit replaces them)
    model_r              float8 NOT NULL DEFAULT 0.25 CHECK (model_r > 0 AND model_r < 'Infinity'),
    model_alpha          float8 NOT NULL DEFAULT 10   CHECK (model_alpha > 0 AND model_alpha < 'Infinity'),
    model_a              float8 NOT NULL DEFAULT 0.5  CHECK (model_a > 0 AND model_a < 'Infinity'),
    model_b              float8 NOT NULL DEFAULT 2.5  CHECK (model_b > 0 AND model_b < 'Infinity'),
    horizon_days         float8 NOT NULL DEFAULT 30   CHECK (horizon_days > 0 AND horizon_days < 'Infinity'),
    conv_prior_a         float8 NOT NULL DEFAULT 1    CHECK (conv_prior_a > 0 AND conv_prior_a < 'Infinity'),
    conv_prior_b         float8 NOT NULL DEFAULT 9    CHECK (conv_prior_b > 0 AND conv_prior_b < 'Infinity'),
    version              integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scoring_profiles_weights_sum_to_one CHECK (
        abs(weight_recency + weight_frequency + weight_monetary + weight_time_decay + weight_diversity - 1) <= 1e-9),
    CONSTRAINT scoring_profiles_min_days_within_lookback CHECK (frequency_min_days <= lookback_days)
);
COMMENT ON TABLE @extschema@.scoring_profiles IS
    'Named scoring profiles: every parameter of the scoring model; version is bumped on every change';

-- Every change of a profile bumps its version, so stored scores can tell they are stale.
CREATE FUNCTION @extschema@._profile_bump_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER scoring_profiles_bump_version BEFORE UPDATE ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_bump_version();

-- CREATE EXTENSION inserts the built-in `default` profile.  pg_restore then loads the dumped
-- profiles, `default` among them, into the same table: an untouched built-in default (version 1,
-- no scores yet) gives way to the incoming row, so a changed default survives dump/restore
-- without a duplicate-key error.  Any other duplicate still fails as usual.
CREATE FUNCTION @extschema@._profile_replace_builtin_default() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.name = 'default' THEN
        DELETE FROM @extschema@.scoring_profiles p
         WHERE p.name = 'default' AND p.version = 1
           AND NOT EXISTS (SELECT 1 FROM @extschema@.engagement_scores s WHERE s.profile = 'default');
    END IF;
    RETURN NEW;
END $$;

INSERT INTO @extschema@.scoring_profiles (name, description)
VALUES ('default', 'The defaults of the scoring model (SCORING_MODEL.md)');

------------------------------------------------------------------------------------------------
-- Stored scores (filled by refresh_scores) and their history
------------------------------------------------------------------------------------------------
-- Scores are 0..100 up to floating point: the weights sum to 1 within 1e-9, so a composite may
-- exceed 100 by that much (100.0000001 bounds it); nothing is clamped.
CREATE TABLE @extschema@.engagement_scores (
    profile                text NOT NULL REFERENCES @extschema@.scoring_profiles (name)
                                ON UPDATE CASCADE ON DELETE CASCADE,
    contact_id             bigint NOT NULL,
    composite              float8 NOT NULL CHECK (composite BETWEEN 0 AND 100.0000001),
    recency                float8 NOT NULL CHECK (recency BETWEEN 0 AND 100.0000001),
    frequency              float8 NOT NULL CHECK (frequency BETWEEN 0 AND 100.0000001),
    monetary               float8 NOT NULL CHECK (monetary BETWEEN 0 AND 100.0000001),
    time_decay             float8 NOT NULL CHECK (time_decay BETWEEN 0 AND 100.0000001),
    diversity              float8 NOT NULL CHECK (diversity BETWEEN 0 AND 100.0000001),
    engagement_probability float8 NOT NULL CHECK (engagement_probability BETWEEN 0 AND 1),
    conversion_probability float8 NOT NULL CHECK (conversion_probability BETWEEN 0 AND 1),
    churn_risk             float8 NOT NULL CHECK (churn_risk BETWEEN 0 AND 1),
    segment                text NOT NULL CHECK (segment IN ('opted_out', 'champions', 'loyal',
                               'potential_loyalist', 'new', 'promising', 'need_attention', 'at_risk',
                               'cannot_lose', 'about_to_sleep', 'hibernating', 'lost')),
    opted_out              boolean NOT NULL,
    event_count            bigint NOT NULL CHECK (event_count > 0),
    engaging_count         bigint NOT NULL CHECK (engaging_count BETWEEN 0 AND event_count),
    conversion_total       numeric NOT NULL CHECK (conversion_total >= 0),
    first_event_at         timestamptz NOT NULL,
    last_engaged_at        timestamptz,
    percentile_rank        float8 CHECK (percentile_rank BETWEEN 0 AND 100),
    score_version          integer NOT NULL DEFAULT 1 CHECK (score_version >= 1),
    profile_version        integer NOT NULL CHECK (profile_version >= 1),
    calculated_at          timestamptz NOT NULL,
    PRIMARY KEY (profile, contact_id),
    CHECK (last_engaged_at IS NULL OR last_engaged_at >= first_event_at)
);
COMMENT ON TABLE @extschema@.engagement_scores IS 'The latest score of each contact under each profile';

CREATE TABLE @extschema@.engagement_score_history (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    profile            text NOT NULL REFERENCES @extschema@.scoring_profiles (name)
                            ON UPDATE CASCADE ON DELETE CASCADE,
    contact_id         bigint NOT NULL,
    composite          float8 NOT NULL CHECK (composite BETWEEN 0 AND 100.0000001),
    segment            text NOT NULL,
    previous_composite float8 CHECK (previous_composite BETWEEN 0 AND 100.0000001),
    previous_segment   text,
    score_version      integer NOT NULL CHECK (score_version >= 1),
    recorded_at        timestamptz NOT NULL
);
COMMENT ON TABLE @extschema@.engagement_score_history IS
    'Score changes worth keeping: composite moved by history_min_delta or segment changed';
-- score_trend(contact, since, profile) reads one contact's history in time order.
CREATE INDEX engagement_score_history_contact_idx
    ON @extschema@.engagement_score_history (profile, contact_id, recorded_at);

CREATE TRIGGER scoring_profiles_replace_builtin_default BEFORE INSERT ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_replace_builtin_default();

-- User data survives pg_dump/pg_restore, sequences included.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_events', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.scoring_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_scores', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_score_history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_score_history_id_seq', '');

------------------------------------------------------------------------------------------------
-- Scores
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.score AS (
    as_of                  timestamptz,
    profile                text,
    composite              float8,
    recency                float8,
    frequency              float8,
    monetary               float8,
    time_decay             float8,
    diversity              float8,
    engagement_probability float8,
    conversion_probability float8,
    churn_risk             float8,
    segment                text,
    opted_out              boolean,
    event_count            bigint,
    engaging_count         bigint,
    conversion_total       numeric,
    first_event_at         timestamptz,
    last_engaged_at        timestamptz
);
COMMENT ON TYPE @extschema@.score IS
    'One contact''s engagement score: composite and components 0..100, predictions 0..1, segment and facts';

-- score_events(event_type, occurred_at, conversion_value, as_of [, profile]): the aggregate over any rowset.
-- The transition function reads the profile table once per query, hence STABLE.
CREATE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz, text)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_combinefn(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_serialfn(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'es_score_events_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_deserialfn(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_finalfn(internal)
RETURNS @extschema@.score AS 'MODULE_PATHNAME', 'es_score_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._explain_events_finalfn(internal)
RETURNS text AS 'MODULE_PATHNAME', 'es_explain_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;

-- The final functions only sort the state's day keys in place (same set), so READ_ONLY holds.
-- SSPACE: the state is 256 bytes plus a day-key array (64 bytes to start); without it the planner
-- assumes a large internal state and prices hashed aggregation over many contacts as spilling.
CREATE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Scores one contact''s events (the rows of a group) as of a time under a named profile';
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'Scores one contact''s events (the rows of a group) as of a time under the default profile';

CREATE AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._explain_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Explains, in words, the score of one contact''s events (the rows of a group)';

-- time_decay(weight, occurred_at, as_of, half_life_days): sum of weight * 2^(-age / half_life) up to as_of.
CREATE FUNCTION @extschema@._time_decay_transfn(internal, float8, timestamptz, timestamptz, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'es_time_decay_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._time_decay_combinefn(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_time_decay_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._time_decay_serialfn(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'es_time_decay_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._time_decay_deserialfn(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_time_decay_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._time_decay_finalfn(internal)
RETURNS float8 AS 'MODULE_PATHNAME', 'es_time_decay_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8) (
    SFUNC = @extschema@._time_decay_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._time_decay_combinefn,
    SERIALFUNC = @extschema@._time_decay_serialfn, DESERIALFUNC = @extschema@._time_decay_deserialfn,
    FINALFUNC = @extschema@._time_decay_finalfn, SSPACE = 48, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8) IS
    'Sum of weight * 2^(-age_days / half_life_days) over the rows at or before as_of';

------------------------------------------------------------------------------------------------
-- Per-contact API over engagement_events
------------------------------------------------------------------------------------------------
-- The profile row, or 42704 (the one place SQL reports an unknown profile; the C lookup of the
-- aggregates says the same).
CREATE FUNCTION @extschema@._profile_or_error(profile text) RETURNS @extschema@.scoring_profiles
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
BEGIN
    SELECT * INTO p FROM @extschema@.scoring_profiles sp WHERE sp.name = profile;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scoring profile "%" does not exist', profile
            USING ERRCODE = 'undefined_object', HINT = 'The profiles are the rows of engagement.scoring_profiles.';
    END IF;
    RETURN p;
END $$;

-- Checks what the aggregates cannot check when a contact has no events (no row reaches them).
CREATE FUNCTION @extschema@._check_scoring_args(as_of timestamptz, profile text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._profile_or_error(profile);
END $$;

CREATE FUNCTION @extschema@.engagement_score(contact_id bigint, as_of timestamptz DEFAULT now(),
                                             profile text DEFAULT 'default')
RETURNS @extschema@.score
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._check_scoring_args(as_of, profile);
    RETURN (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value,
                                            engagement_score.as_of, engagement_score.profile)
              FROM @extschema@.engagement_events e
             WHERE e.contact_id = engagement_score.contact_id
               AND e.occurred_at <= engagement_score.as_of);
END $$;
COMMENT ON FUNCTION @extschema@.engagement_score(bigint, timestamptz, text) IS
    'The live score of one contact from engagement_events (NULL when it has no event at or before as_of)';

CREATE FUNCTION @extschema@.explain_score(contact_id bigint, as_of timestamptz DEFAULT now(),
                                          profile text DEFAULT 'default')
RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    body text;
BEGIN
    PERFORM @extschema@._check_scoring_args(as_of, profile);
    SELECT @extschema@.explain_events(e.event_type, e.occurred_at, e.conversion_value,
                                      explain_score.as_of, explain_score.profile)
      INTO body
      FROM @extschema@.engagement_events e
     WHERE e.contact_id = explain_score.contact_id
       AND e.occurred_at <= explain_score.as_of;
    IF body IS NULL THEN
        RETURN format('Contact %s has no events at or before %s: no score.', contact_id, as_of);
    END IF;
    RETURN format('Contact %s, profile %s, as of %s: %s', contact_id, profile, as_of, body);
END $$;
COMMENT ON FUNCTION @extschema@.explain_score(bigint, timestamptz, text) IS
    'Explains one contact''s score: each component with its value, weight and contribution, the facts and predictions';
