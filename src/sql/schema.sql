-- schema.sql: the types, tables, indexes and triggers that hold engagement_scoring's data, and their
-- registration with pg_dump.  (Part of the install script: the Makefile concatenates src/sql/*.sql.)

-- The schema comes from the control file (schema = engagement); the extension does not relocate.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

CREATE TYPE @extschema@.event_type AS ENUM
    ('delivered', 'opened', 'clicked', 'responded', 'converted', 'opted_out', 'opted_in', 'bounced');
COMMENT ON TYPE @extschema@.event_type IS
    'SMS CRM engagement event types; opened, clicked, responded and converted are the engaging ones; opted_in (an SMS START) lifts an earlier opt-out';

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
    -- (NaN >= 0 holds for numeric: NaN gets its own check)
    CONSTRAINT engagement_events_value_is_number CHECK (conversion_value <> 'NaN'),
    CONSTRAINT engagement_events_value_only_on_converted
        CHECK (conversion_value IS NULL OR event_type = 'converted'),
    CONSTRAINT engagement_events_parent_not_self CHECK (parent_event_id <> id),
    CONSTRAINT engagement_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT engagement_events_channel_known
        CHECK (channel IN ('sms', 'mms', 'email', 'voice', 'web', 'app'))
);
COMMENT ON TABLE @extschema@.engagement_events IS 'Engagement events of CRM contacts, the input of every score';

-- engagement_score(), explain_score() and the incremental refresh: WHERE contact_id = $1 AND
-- occurred_at <= as_of.  It carries the other two columns the model reads, so that a contact's
-- events come from the index alone (an index-only scan) instead of a heap fetch per event.
CREATE INDEX engagement_events_contact_time_idx
    ON @extschema@.engagement_events (contact_id, occurred_at) INCLUDE (event_type, conversion_value);
-- The parent_event_id foreign key: deleting an event looks up its children here (ON DELETE SET NULL).
CREATE INDEX engagement_events_parent_idx
    ON @extschema@.engagement_events (parent_event_id) WHERE parent_event_id IS NOT NULL;
-- funnel(campaign_id): WHERE campaign_id = $1.
CREATE INDEX engagement_events_campaign_idx ON @extschema@.engagement_events (campaign_id)
    WHERE campaign_id IS NOT NULL;

------------------------------------------------------------------------------------------------
-- Scoring profiles: every parameter of the model (docs/model.md), one row per named profile
------------------------------------------------------------------------------------------------
-- A funnel's stages: 1 to 5 distinct stages of delivered, opened, clicked, responded, converted.
CREATE FUNCTION @extschema@._funnel_stages_valid(stages @extschema@.event_type[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT cardinality(stages) BETWEEN 1 AND 5 AND array_position(stages, NULL) IS NULL
       AND stages <@ '{delivered,opened,clicked,responded,converted}'::@extschema@.event_type[]
       AND (SELECT count(DISTINCT s) FROM unnest(stages) s) = cardinality(stages)
$$;

CREATE TABLE @extschema@.scoring_profiles (
    name                 text PRIMARY KEY CHECK (name <> '' AND octet_length(name) < 64),  -- fits a NAMEDATALEN buffer
    description          text,
    lookback_days        float8 NOT NULL DEFAULT 365  CHECK (lookback_days BETWEEN 1e-6 AND 1e9),
    recency_tau_days     float8 NOT NULL DEFAULT 30   CHECK (recency_tau_days BETWEEN 1e-6 AND 1e9),
    frequency_min_days   float8 NOT NULL DEFAULT 30   CHECK (frequency_min_days BETWEEN 1e-6 AND 1e9),
    frequency_ref_rate   float8 NOT NULL DEFAULT 0.1  CHECK (frequency_ref_rate BETWEEN 1e-9 AND 1e18),
    monetary_ref_value   float8 NOT NULL DEFAULT 1000 CHECK (monetary_ref_value BETWEEN 1e-9 AND 1e18),
    half_life_days       float8 NOT NULL DEFAULT 14   CHECK (half_life_days BETWEEN 1e-6 AND 1e9),
    time_decay_ref       float8 NOT NULL DEFAULT 5    CHECK (time_decay_ref BETWEEN 1e-9 AND 1e18),
    -- time-decay weight of each event type
    decay_weight_delivered float8 NOT NULL DEFAULT 0   CHECK (decay_weight_delivered BETWEEN -1e6 AND 1e6),
    decay_weight_opened    float8 NOT NULL DEFAULT 1   CHECK (decay_weight_opened BETWEEN -1e6 AND 1e6),
    decay_weight_clicked   float8 NOT NULL DEFAULT 2   CHECK (decay_weight_clicked BETWEEN -1e6 AND 1e6),
    decay_weight_responded float8 NOT NULL DEFAULT 3   CHECK (decay_weight_responded BETWEEN -1e6 AND 1e6),
    decay_weight_converted float8 NOT NULL DEFAULT 10  CHECK (decay_weight_converted BETWEEN -1e6 AND 1e6),
    decay_weight_opted_out float8 NOT NULL DEFAULT -10 CHECK (decay_weight_opted_out BETWEEN -1e6 AND 1e6),
    decay_weight_opted_in  float8 NOT NULL DEFAULT 0   CHECK (decay_weight_opted_in BETWEEN -1e6 AND 1e6),
    decay_weight_bounced   float8 NOT NULL DEFAULT -1  CHECK (decay_weight_bounced BETWEEN -1e6 AND 1e6),
    -- composite weights
    weight_recency       float8 NOT NULL DEFAULT 0.30 CHECK (weight_recency BETWEEN 0 AND 1),
    weight_frequency     float8 NOT NULL DEFAULT 0.25 CHECK (weight_frequency BETWEEN 0 AND 1),
    weight_monetary      float8 NOT NULL DEFAULT 0.20 CHECK (weight_monetary BETWEEN 0 AND 1),
    weight_time_decay    float8 NOT NULL DEFAULT 0.15 CHECK (weight_time_decay BETWEEN 0 AND 1),
    weight_diversity     float8 NOT NULL DEFAULT 0.10 CHECK (weight_diversity BETWEEN 0 AND 1),
    opt_out_penalty      float8 NOT NULL DEFAULT 0.9  CHECK (opt_out_penalty BETWEEN 0 AND 1),
    -- undeliverable: undeliverable_after (an integer, 1..10) bounces since the last delivery or engagement
    undeliverable_penalty float8 NOT NULL DEFAULT 0.9 CHECK (undeliverable_penalty BETWEEN 0 AND 1),
    undeliverable_after  integer NOT NULL DEFAULT 3   CHECK (undeliverable_after BETWEEN 1 AND 10),
    -- a contact known for less than this many days is in segment new
    new_contact_days     float8 NOT NULL DEFAULT 30   CHECK (new_contact_days BETWEEN 1e-6 AND 1e9),
    -- MBG/NBD population parameters (defaults until a fit replaces them)
    model_r              float8 NOT NULL DEFAULT 0.25 CHECK (model_r BETWEEN 1e-9 AND 1e9),
    model_alpha          float8 NOT NULL DEFAULT 10   CHECK (model_alpha BETWEEN 1e-9 AND 1e18),
    model_a              float8 NOT NULL DEFAULT 0.5  CHECK (model_a BETWEEN 1e-9 AND 1e9),
    model_b              float8 NOT NULL DEFAULT 2.5  CHECK (model_b BETWEEN 1e-9 AND 1e9),
    horizon_days         float8 NOT NULL DEFAULT 30   CHECK (horizon_days BETWEEN 1e-6 AND 1e9),
    conv_prior_a         float8 NOT NULL DEFAULT 1    CHECK (conv_prior_a BETWEEN 1e-9 AND 1e9),
    conv_prior_b         float8 NOT NULL DEFAULT 9    CHECK (conv_prior_b BETWEEN 1e-9 AND 1e9),
    version              integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- the refresh
    -- (at most 100 years, and so is each of its fields, months, days and time: now() - max_score_age
    -- stays a timestamp)
    max_score_age        interval NOT NULL DEFAULT '1 day' CHECK (max_score_age > interval '0' AND max_score_age <= interval '100 years'
                             AND abs(extract(year FROM max_score_age)) <= 100 AND abs(extract(day FROM max_score_age)) <= 36525
                             AND abs(extract(hour FROM max_score_age)) <= 876600),
    history_min_delta    float8 NOT NULL DEFAULT 1.0 CHECK (history_min_delta >= 0 AND history_min_delta < 'Infinity'),
    -- the fitted model (fit_model)
    model_log_likelihood float8,
    model_fitted_at      timestamptz,
    model_contacts       bigint CHECK (model_contacts >= 0),
    -- where the profile's events are read
    events_relation      regclass NOT NULL DEFAULT '@extschema@.engagement_events',
    events_relation_set_by text,   -- the role that chose another events_relation (set by a trigger; '' unknown)
    -- Gamma-Gamma value model parameters (defaults until a fit replaces them; q > 1 for a finite mean)
    gg_p                 float8 NOT NULL DEFAULT 6.25 CHECK (gg_p BETWEEN 1e-9 AND 1e9),
    gg_q                 float8 NOT NULL DEFAULT 3.74 CHECK (gg_q > 1 AND gg_q <= 1e9),
    gg_v                 float8 NOT NULL DEFAULT 15.44 CHECK (gg_v BETWEEN 1e-18 AND 1e18),
    -- fit_model's L2 penalty on the log-parameters (0: plain maximum likelihood)
    fit_penalizer        float8 NOT NULL DEFAULT 0 CHECK (fit_penalizer >= 0 AND fit_penalizer < 'Infinity'),
    -- how long refresh_runs keeps this profile's runs
    -- (at most 100 years, each field too, as max_score_age)
    refresh_log_retention interval NOT NULL DEFAULT '14 days' CHECK (refresh_log_retention >= interval '0'
                             AND refresh_log_retention <= interval '100 years' AND abs(extract(year FROM refresh_log_retention)) <= 100
                             AND abs(extract(day FROM refresh_log_retention)) <= 36525 AND abs(extract(hour FROM refresh_log_retention)) <= 876600),
    -- the funnel's chain of stages, in order (funnel, funnel_independent): an SMS CRM, whose phones
    -- rarely send read receipts, may leave opened out
    funnel_stages        @extschema@.event_type[] NOT NULL DEFAULT '{delivered,opened,clicked,responded,converted}'
                             CHECK (@extschema@._funnel_stages_valid(funnel_stages)),
    CONSTRAINT scoring_profiles_weights_sum_to_one CHECK (
        abs(weight_recency + weight_frequency + weight_monetary + weight_time_decay + weight_diversity - 1) <= 1e-9),
    CONSTRAINT scoring_profiles_min_days_within_lookback CHECK (frequency_min_days <= lookback_days)
);
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
COMMENT ON COLUMN @extschema@.scoring_profiles.funnel_stages IS
    'The funnel''s chain of stages, in order (delivered, opened, clicked, responded, converted by default; an SMS CRM might say delivered, clicked, converted)';
COMMENT ON COLUMN @extschema@.scoring_profiles.refresh_log_retention IS
    'How long refresh_runs keeps the profile''s refreshes (each refresh removes older ones)';
COMMENT ON COLUMN @extschema@.scoring_profiles.fit_penalizer IS
    'fit_model maximises the mean log-likelihood minus fit_penalizer * the sum of squared log-parameters (both models); when a fit with it does not converge, fit_model tries the penalty ladder above it (0.001, 0.01, 0.1, 1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation_set_by IS
    'The role that set events_relation (NULL for engagement_events,  when set before 1.3): a refresh reads the relation only while that role may';

-- Whether this server is a Citus worker (a node other than the coordinator, group 0), where the
-- extension's distributed and reference tables are placements of the coordinator's (docs/scale-out.md).
CREATE FUNCTION @extschema@._on_citus_worker() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN false;
    END IF;
    RETURN coalesce((SELECT g.groupid <> 0 FROM pg_catalog.pg_dist_local_group g), false);
END $$;

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

-- Who chose a profile's events relation, checked when it is written: a refresh may run as a
-- superuser (pg_cron) and must not read for a less privileged role what that role cannot read
-- itself (refresh_scores checks the role again: _profile_events_or_error).
CREATE FUNCTION @extschema@._profile_check_events_relation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.events_relation IS NULL THEN
        RETURN NEW;   -- (the column's NOT NULL says so: 23502)
    END IF;
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
    -- (on Citus, the profiles are a reference table whose placements each run this trigger: the
    -- coordinator's checks; a worker's placement takes the same values unchecked)
    IF NOT @extschema@._on_citus_worker() THEN
        IF NOT @extschema@._role_may_read(current_user, NEW.events_relation) THEN
            RAISE EXCEPTION 'role "%" may not read events_relation %', current_user, NEW.events_relation
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'A profile reads only a relation the role that sets it may read (SELECT, and USAGE on its schema).';
        END IF;
        -- readable as a source (the columns, or its row of event_sources): said now, not at the first refresh
        PERFORM @extschema@._events_relation_or_error(NEW.events_relation);
    END IF;
    NEW.events_relation_set_by := current_user;
    RETURN NEW;
END $$;
CREATE TRIGGER scoring_profiles_check_events_relation BEFORE INSERT OR UPDATE ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_check_events_relation();

-- CREATE EXTENSION inserts the built-in `default` profile.  pg_restore then loads the dumped
-- profiles, `default` among them, into the same table: an untouched built-in default (version 1,
-- no scores yet) gives way to the incoming row, so a changed default survives dump/restore
-- without a duplicate-key error.  Any other duplicate still fails as usual.
CREATE FUNCTION @extschema@._profile_replace_builtin_default() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- (on Citus a placement of the profiles' reference table fires this too; pg_restore writes the table itself)
    IF TG_RELID <> '@extschema@.scoring_profiles'::regclass THEN
        RETURN NEW;
    END IF;
    IF NEW.name = 'default' THEN
        DELETE FROM @extschema@.scoring_profiles p
         WHERE p.name = 'default' AND p.version = 1
           AND NOT EXISTS (SELECT 1 FROM @extschema@.engagement_scores s WHERE s.profile = 'default');
    END IF;
    RETURN NEW;
END $$;

INSERT INTO @extschema@.scoring_profiles (name, description)
VALUES ('default', 'The defaults of the scoring model (docs/model.md)');

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
    segment                text NOT NULL CHECK (segment IN ('opted_out', 'undeliverable', 'new', 'champions',
                               'loyal', 'potential_loyalist', 'promising', 'need_attention', 'at_risk',
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
    expected_engagements_30d float8 CHECK (expected_engagements_30d >= 0),
    model_version          integer NOT NULL CHECK (model_version >= 1),
    expected_conversion_value float8 CHECK (expected_conversion_value >= 0),
    expected_value_30d     float8 CHECK (expected_value_30d >= 0),
    -- (model version 3, extension 1.6) the undeliverable flag, the tenure, and the contact's summary
    -- the predictions are computed from (docs/model.md); NULL in a score of an older model version,
    -- until the next refresh rescores it
    undeliverable          boolean,
    tenure_days            float8 CHECK (tenure_days >= 0),
    birth_at               timestamptz,
    x                      bigint CHECK (x >= 0),
    t_x                    bigint CONSTRAINT engagement_scores_t_x_check CHECK (t_x BETWEEN 0 AND t_c),
    t_c                    bigint CHECK (t_c >= 0),
    n_days                 bigint CONSTRAINT engagement_scores_n_days_check CHECK (n_days >= x),
    conv_days              bigint CONSTRAINT engagement_scores_conv_days_check CHECK (conv_days BETWEEN 0 AND n_days),
    x_v                    bigint CONSTRAINT engagement_scores_x_v_check CHECK (x_v BETWEEN 0 AND conv_days),
    m_v                    float8 CHECK (m_v >= 0),
    PRIMARY KEY (profile, contact_id),
    CHECK (last_engaged_at IS NULL OR last_engaged_at >= first_event_at)
)
-- Every refresh rewrites its rows: room on each page lets those be HOT updates (no index
-- insertions) whose old versions later refreshes prune in place, so the table keeps its size
-- without waiting for autovacuum.
WITH (fillfactor = 45);
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

------------------------------------------------------------------------------------------------
-- Change tracking: statement-level triggers append the changed contacts to event_changes (no
-- index, no conflicts: bulk ingest stays cheap and concurrent writers never wait on each other).
-- A refresh moves them into pending_rescore, one row per profile, and consumes its own.
-- (Their functions and triggers: tracking.sql.)
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.event_changes (
    contact_id bigint NOT NULL,
    relation   regclass NOT NULL   -- the tracked relation the change was made in
);
COMMENT ON TABLE @extschema@.event_changes IS
    'Contacts whose events changed since the last refresh, and in which tracked relation (appended by the tracking triggers, drained by refresh_scores into the pending sets of the profiles reading that relation)';

-- No unique key on purpose: refreshes of different profiles insert into each other's pending sets,
-- and a unique check would make one wait on the other's uncommitted rows (a deadlock, with a
-- refresh re-queueing its own).  A contact may be listed twice; the refresh consumes all of them.
CREATE TABLE @extschema@.pending_rescore (
    profile    text NOT NULL REFERENCES @extschema@.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    contact_id bigint NOT NULL
);
-- refresh_scores consumes a profile's rows; contact_scores looks one contact up.
CREATE INDEX pending_rescore_profile_contact_idx ON @extschema@.pending_rescore (profile, contact_id);
COMMENT ON TABLE @extschema@.pending_rescore IS
    'Contacts a profile''s next refresh must rescore because their events changed';

------------------------------------------------------------------------------------------------
-- Score distributions, for percentiles without scanning the scores table
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.score_distributions (
    profile          text PRIMARY KEY REFERENCES @extschema@.scoring_profiles (name)
                          ON UPDATE CASCADE ON DELETE CASCADE,
    sorted_composites bytea NOT NULL,   -- the composites of every scored contact, ascending, as float8s
    contacts         bigint NOT NULL CHECK (contacts >= 0),
    profile_version  integer NOT NULL,  -- the profile version of the last refresh
    refreshed_at     timestamptz,       -- NULL: never refreshed
    oldest_score_at  timestamptz,       -- min(calculated_at): when any score can next be too old
    model_version    integer NOT NULL,  -- model_version() of the last refresh: another forces a full one
    source_fingerprint text             -- _source_fingerprint() at the last refresh: another forces a full one
);
-- Uncompressed out of line: a percentile lookup reads a few TOAST slices, not the whole array.
ALTER TABLE @extschema@.score_distributions ALTER COLUMN sorted_composites SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@.score_distributions IS
    'Per profile, the sorted composites as of the last refresh (for score_percentile); the row is also the lock of the profile''s refreshes';

-- A profile's distribution row exists from the moment the profile does, empty until its first
-- refresh.  It is the lock a refresh takes (FOR NO KEY UPDATE SKIP LOCKED), so a second refresh,
-- even of a profile never refreshed, finds it held and returns at once instead of waiting on an
-- uncommitted insert.  On Citus both tables are reference tables whose placements (one per node)
-- each fire this: each fills the placement of the distributions on its own node.  (While
-- citus_distribute copies the profiles into their placements, the distributions are not yet a
-- reference table: their rows, the empty ones included, are copied when they become one.)
CREATE FUNCTION @extschema@._profile_create_distribution() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    distributions text := '@extschema@.score_distributions';
BEGIN
    IF TG_RELID <> '@extschema@.scoring_profiles'::regclass THEN
        EXECUTE 'SELECT pg_catalog.shard_name($1, s.shardid) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = $1'
           INTO distributions USING distributions::regclass;
        IF distributions IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    EXECUTE format('INSERT INTO %s (profile, sorted_composites, contacts, profile_version, model_version) '
                   'VALUES ($1, ''\x'', 0, 0, 0) ON CONFLICT DO NOTHING', distributions)
      USING NEW.name;
    RETURN NULL;
END $$;
CREATE TRIGGER scoring_profiles_create_distribution AFTER INSERT ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_create_distribution();

-- pg_restore loads the dumped distributions after the profiles, whose rows have just made empty
-- ones: a dumped row replaces the empty row of its profile.
CREATE FUNCTION @extschema@._distribution_replace_empty() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_RELID = '@extschema@.score_distributions'::regclass THEN   -- (not a Citus placement)
        DELETE FROM @extschema@.score_distributions d WHERE d.profile = NEW.profile AND d.refreshed_at IS NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER score_distributions_replace_empty BEFORE INSERT ON @extschema@.score_distributions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._distribution_replace_empty();
INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version, model_version)
VALUES ('default', '\x', 0, 0, 0);

------------------------------------------------------------------------------------------------
-- Every fit fit_model runs, converged or not (one row per model)
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

------------------------------------------------------------------------------------------------
-- Event sources: how to read a CRM's own events relation (a table, partitioned table, foreign table
-- or view) that a profile names as its events_relation: which columns hold the contact, the kind,
-- the time and the value, and how the CRM's kinds map to the eight event types.  A relation without
-- a row here is read as having the columns of engagement_events (engagement_events itself needs
-- none).  Validated when written (tracking.sql: _source_check).
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
    created_at      timestamptz NOT NULL DEFAULT now(),
    campaign_column name    -- the campaign of a row, for the funnels (NULL: the source has none)
);
COMMENT ON TABLE @extschema@.event_sources IS
    'How to read a CRM''s own events relation: its contact, kind, time, value and campaign columns, how its kinds are matched (exact, or trim_lower: trimmed and lower-cased on both sides) and what happens to rows of an unmapped kind (count: skipped, counted and warned about; reject: an error naming the kind)';

CREATE TABLE @extschema@.event_kind_map (
    relation   regclass NOT NULL REFERENCES @extschema@.event_sources (relation) ON DELETE CASCADE,
    kind       text NOT NULL,
    event_type @extschema@.event_type,   -- NULL: rows of this kind are ignored on purpose
    PRIMARY KEY (relation, kind)
);
COMMENT ON TABLE @extschema@.event_kind_map IS
    'A source''s kinds and the event type each stands for (NULL: ignored on purpose, counted but never warned about); a kind not listed is unmapped (see event_sources.on_unmapped)';

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
    unmapped_rows     bigint CHECK (unmapped_rows >= 0),   -- rows of a kind the source does not map
    unmapped_kinds    jsonb,                               -- {kind: rows}: those kinds, the 100 with the most rows
    skipped           boolean NOT NULL DEFAULT false,      -- another refresh of the profile held its lock
    error             text,                                -- SQLSTATE and message of a refresh that failed
    ignored_rows      bigint CHECK (ignored_rows >= 0),    -- rows of kinds mapped to NULL: ignored on purpose
    invalid_rows      jsonb,                               -- {reason: rows}: rows skipped for another reason
    mode_reason       text,                                -- why it ran full or incremental (1.6)
    CHECK (finished_at >= started_at)
);
CREATE INDEX refresh_runs_profile_idx ON @extschema@.refresh_runs (profile, started_at);
COMMENT ON TABLE @extschema@.refresh_runs IS
    'Every refresh_scores: profile, mode and why (mode_reason), when, contacts rescored, rows it could not score, skipped (another refresh held the lock) or failed (with the error)';

------------------------------------------------------------------------------------------------
-- What \d+ says of each column.  The fields of a score are described once here and given to every
-- relation that carries them (engagement_scores, the score type, contact_scores): _comment_columns.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._score_field_comments() RETURNS TABLE (field name, description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('as_of', 'The time the score is computed as of (events after it are ignored)'),
           ('profile', 'The scoring profile that computed it'),
           ('contact_id', 'The contact'),
           ('composite', 'The score, 0..100: the weighted components, times (1 - opt_out_penalty) when opted out and (1 - undeliverable_penalty) when undeliverable'),
           ('recency', 'Recency component, 0..100: 100 exp(-days since the last engagement / recency_tau_days)'),
           ('frequency', 'Frequency component, 0..100: from engaging events per day in the window (observed at least frequency_min_days)'),
           ('monetary', 'Monetary component, 0..100: log of the conversion value in the window against monetary_ref_value'),
           ('time_decay', 'Time-decay component, 0..100: event weights halved every half_life_days'),
           ('diversity', 'Diversity component, 0..100: entropy of the four engaging types'),
           ('engagement_probability', 'Probability of at least one engagement day in the next horizon_days (MBG/NBD), 0..1'),
           ('conversion_probability', 'engagement_probability times the contact''s smoothed share of conversion days, 0..1'),
           ('churn_risk', 'Probability the contact has dropped out: 1 - P(alive) (MBG/NBD), 0..1'),
           ('segment', 'Segment: opted_out, undeliverable, new (known for less than new_contact_days), then by RFM quintiles champions, loyal, potential_loyalist, promising, need_attention, at_risk, cannot_lose, about_to_sleep, hibernating or lost'),
           ('opted_out', 'Whether the latest of the contact''s opted_out and opted_in events at or before as_of is an opt-out (at the same time the opt-out wins)'),
           ('event_count', 'Events at or before as_of, any type'),
           ('engaging_count', 'Engaging events (opened, clicked, responded, converted) at or before as_of'),
           ('conversion_total', 'Sum of conversion values at or before as_of (exact cents)'),
           ('first_event_at', 'The contact''s first event: its birth day starts the MBG/NBD summary'),
           ('last_engaged_at', 'The last engaging event (NULL: never engaged)'),
           ('expected_engagements_30d', 'Expected engagement days in the next horizon_days of the profile (30 by default; MBG/NBD), opt-out and undeliverable penalised'),
           ('expected_conversion_value', 'Expected value of the next conversion day (Gamma-Gamma)'),
           ('expected_value_30d', 'Expected conversion value in the next horizon_days of the profile (30 by default): expected engagement days x conversion share x expected conversion value, opt-out and undeliverable penalised'),
           ('undeliverable', 'Whether at least undeliverable_after bounces came after the last delivery or engagement (at or before as_of)'),
           ('tenure_days', 'Days since the contact''s first event of any type: how long the CRM has known it'),
           ('birth_at', 'The start (UTC) of the day of the contact''s first event: the birth b0 of its MBG/NBD summary'),
           ('x', 'Repeat engagement days: days after the birth day holding an engaging event (MBG/NBD x)'),
           ('t_x', 'The last of them, in days after the birth day (0 when x = 0)'),
           ('t_c', 'Days from the birth day to as_of''s day (MBG/NBD Tc)'),
           ('n_days', 'Days holding an engaging event, the birth day included'),
           ('conv_days', 'Days holding a converted event, the birth day included'),
           ('x_v', 'Conversion days whose value is above 0 (Gamma-Gamma x)'),
           ('m_v', 'The mean value of those days (Gamma-Gamma m; 0 when x_v = 0)'),
           ('percentile_rank', 'The composite''s percentile among the profile''s scored contacts at the refresh, 0..100'),
           ('score_version', 'How many times the contact has been rescored under the profile'),
           ('profile_version', 'The profile''s version the score was computed with (another: stale)'),
           ('calculated_at', 'When the refresh computed it (its as_of)'),
           ('model_version', 'The version of the scoring model that computed it (another than model_version(): stale)')
$$;
COMMENT ON FUNCTION @extschema@._score_field_comments() IS
    'The description of each field of a score, given to every relation that carries them';

-- Comments each column of rel that _score_field_comments describes.
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
COMMENT ON FUNCTION @extschema@._comment_score_columns(regclass) IS
    'Comments the score fields of a relation (install and update scripts)';

SELECT @extschema@._comment_score_columns('@extschema@.engagement_scores');

COMMENT ON COLUMN @extschema@.engagement_events.id IS 'The event''s identity (generated: the application role cannot set it)';
COMMENT ON COLUMN @extschema@.engagement_events.contact_id IS 'The contact';
COMMENT ON COLUMN @extschema@.engagement_events.campaign_id IS 'The campaign the message belonged to (funnel)';
COMMENT ON COLUMN @extschema@.engagement_events.event_type IS 'What happened: delivered, opened, clicked, responded, converted, opted_out, opted_in or bounced';
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
COMMENT ON COLUMN @extschema@.scoring_profiles.frequency_min_days IS 'Frequency: the shortest observation, so a new contact''s rate is not inflated (30)';
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
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_opted_in IS 'Time-decay weight of an opt-in (0)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_bounced IS 'Time-decay weight of a bounce (-1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_recency IS 'Weight of recency in the composite (0.30; the five weights sum to 1)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_frequency IS 'Weight of frequency in the composite (0.25)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_monetary IS 'Weight of monetary in the composite (0.20)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_time_decay IS 'Weight of time decay in the composite (0.15)';
COMMENT ON COLUMN @extschema@.scoring_profiles.weight_diversity IS 'Weight of diversity in the composite (0.10)';
COMMENT ON COLUMN @extschema@.scoring_profiles.opt_out_penalty IS 'An opted-out contact''s composite and predictions are multiplied by 1 - this (0.9)';
COMMENT ON COLUMN @extschema@.scoring_profiles.undeliverable_after IS 'Bounces since the last delivery or engagement that make a contact undeliverable (3; 1..10)';
COMMENT ON COLUMN @extschema@.scoring_profiles.undeliverable_penalty IS 'An undeliverable contact''s composite and predictions are multiplied by 1 - this (0.9)';
COMMENT ON COLUMN @extschema@.scoring_profiles.new_contact_days IS 'A contact known for fewer days than this is in segment new (30)';
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
COMMENT ON COLUMN @extschema@.score_distributions.refreshed_at IS 'When the last refresh ran (NULL: never)';
COMMENT ON COLUMN @extschema@.score_distributions.oldest_score_at IS 'A lower bound of the scores'' calculated_at: when one can next be older than max_score_age';
COMMENT ON COLUMN @extschema@.score_distributions.model_version IS 'The model version of the last refresh (another: the next refresh is full)';
COMMENT ON COLUMN @extschema@.score_distributions.source_fingerprint IS 'The definition of the profile''s source at the last refresh (another, e.g. a view replaced: the next refresh is full)';

COMMENT ON COLUMN @extschema@.model_fits.id IS 'The fit''s identity';
COMMENT ON COLUMN @extschema@.model_fits.profile IS 'The profile fitted';
COMMENT ON COLUMN @extschema@.model_fits.model IS 'mbgnbd (engagement days) or gammagamma (conversion value)';
COMMENT ON COLUMN @extschema@.model_fits.fitted_at IS 'When fit_model ran';
COMMENT ON COLUMN @extschema@.model_fits.as_of IS 'The time the contacts were summarised as of';
COMMENT ON COLUMN @extschema@.model_fits.contacts IS 'How many contacts the model was fitted to';
COMMENT ON COLUMN @extschema@.model_fits.penalizer IS 'The L2 penalty on the log-parameters used: the profile''s fit_penalizer, or the penalty of the ladder that made the fit converge';
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
COMMENT ON COLUMN @extschema@.event_sources.campaign_column IS 'Its campaign column, for the funnels (an integer; NULL: none)';
COMMENT ON COLUMN @extschema@.event_kind_map.relation IS 'The source';
COMMENT ON COLUMN @extschema@.event_kind_map.kind IS 'A kind of the CRM''s';
COMMENT ON COLUMN @extschema@.event_kind_map.event_type IS 'The event type it stands for (NULL: ignored on purpose)';

COMMENT ON COLUMN @extschema@.refresh_runs.id IS 'The run''s identity';
COMMENT ON COLUMN @extschema@.refresh_runs.profile IS 'The profile refreshed';
COMMENT ON COLUMN @extschema@.refresh_runs.mode IS 'full or incremental (an incremental call runs full after a profile change, or when it has more contacts to rescore than engagement.incremental_max_fraction of the scored ones: mode_reason)';
COMMENT ON COLUMN @extschema@.refresh_runs.mode_reason IS 'Why it ran in its mode: requested, never refreshed, profile changed, model changed, source changed, or (an incremental call) ''<n> of <m> contacts to rescore: above|at most <fraction>''; NULL for a run that was skipped or failed';
COMMENT ON COLUMN @extschema@.refresh_runs.started_at IS 'When it started';
COMMENT ON COLUMN @extschema@.refresh_runs.finished_at IS 'When it finished';
COMMENT ON COLUMN @extschema@.refresh_runs.contacts_rescored IS 'Contacts rescored (NULL: skipped or failed)';
COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_rows IS 'Rows of a kind the source does not map';
COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_kinds IS '{kind: rows} of those kinds, the 100 with the most rows, each kind cut to 64 characters (with its length)';
COMMENT ON COLUMN @extschema@.refresh_runs.ignored_rows IS 'Rows of kinds the source maps to NULL: ignored on purpose';
COMMENT ON COLUMN @extschema@.refresh_runs.invalid_rows IS '{reason: rows}: rows skipped for another reason (no contact, no time, an infinite time, a negative, infinite or NaN value)';
COMMENT ON COLUMN @extschema@.refresh_runs.skipped IS 'Another refresh of the profile held its lock: this one did nothing';
COMMENT ON COLUMN @extschema@.refresh_runs.error IS 'SQLSTATE and message of a refresh that failed (on_error => ''record'')';

-- User data survives pg_dump/pg_restore, sequences included.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_events', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.scoring_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_scores', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_score_history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.engagement_score_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_changes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pending_rescore', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.score_distributions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.model_fits', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.model_fits_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_sources', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_kind_map', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refresh_runs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refresh_runs_id_seq', '');
