-- schema.sql: the types, tables, indexes and triggers that hold engagement_scoring's data, and their
-- registration with pg_dump.  (Part of the install script: the Makefile concatenates sql/src/*.sql.)

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

-- engagement_score(), explain_score(): WHERE contact_id = $1 AND occurred_at <= as_of.
CREATE INDEX engagement_events_contact_time_idx
    ON @extschema@.engagement_events (contact_id, occurred_at);
-- The parent_event_id foreign key: deleting an event looks up its children here (ON DELETE SET NULL).
CREATE INDEX engagement_events_parent_idx
    ON @extschema@.engagement_events (parent_event_id) WHERE parent_event_id IS NOT NULL;
-- funnel(campaign_id): WHERE campaign_id = $1.
CREATE INDEX engagement_events_campaign_idx ON @extschema@.engagement_events (campaign_id)
    WHERE campaign_id IS NOT NULL;

------------------------------------------------------------------------------------------------
-- Scoring profiles: every parameter of the model (docs/model.md), one row per named profile
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
    -- the refresh
    max_score_age        interval NOT NULL DEFAULT '1 day' CHECK (max_score_age > interval '0'),
    history_min_delta    float8 NOT NULL DEFAULT 1.0 CHECK (history_min_delta >= 0 AND history_min_delta < 'Infinity'),
    -- the fitted model (fit_model)
    model_log_likelihood float8,
    model_fitted_at      timestamptz,
    model_contacts       bigint CHECK (model_contacts >= 0),
    -- where the profile's events are read
    events_relation      regclass NOT NULL DEFAULT '@extschema@.engagement_events',
    events_relation_set_by text,   -- the role that chose another events_relation (set by a trigger; '' unknown)
    -- Gamma-Gamma value model parameters (defaults until a fit replaces them; q > 1 for a finite mean)
    gg_p                 float8 NOT NULL DEFAULT 6.25 CHECK (gg_p > 0 AND gg_p < 'Infinity'),
    gg_q                 float8 NOT NULL DEFAULT 3.74 CHECK (gg_q > 1 AND gg_q < 'Infinity'),
    gg_v                 float8 NOT NULL DEFAULT 15.44 CHECK (gg_v > 0 AND gg_v < 'Infinity'),
    -- fit_model's L2 penalty on the log-parameters (0: plain maximum likelihood)
    fit_penalizer        float8 NOT NULL DEFAULT 0 CHECK (fit_penalizer >= 0 AND fit_penalizer < 'Infinity'),
    -- how long refresh_runs keeps this profile's runs
    refresh_log_retention interval NOT NULL DEFAULT '14 days' CHECK (refresh_log_retention >= interval '0'),
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
COMMENT ON COLUMN @extschema@.scoring_profiles.refresh_log_retention IS
    'How long refresh_runs keeps the profile''s refreshes (each refresh removes older ones)';
COMMENT ON COLUMN @extschema@.scoring_profiles.fit_penalizer IS
    'fit_model maximises the mean log-likelihood minus fit_penalizer * the sum of squared log-parameters (both models); raise it when a fit does not converge';
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation_set_by IS
    'The role that set events_relation (NULL for engagement_events,  when set before 1.3): a refresh reads the relation only while that role may';

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
    IF NOT coalesce(has_schema_privilege(current_user, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = NEW.events_relation), 'USAGE')
                    AND has_table_privilege(current_user, NEW.events_relation, 'SELECT'), false) THEN
        RAISE EXCEPTION 'role "%" may not read events_relation %', current_user, NEW.events_relation
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A profile reads only a relation the role that sets it may read (SELECT, and USAGE on its schema).';
    END IF;
    -- readable as a source (the columns, or its row of event_sources): said now, not at the first refresh
    PERFORM @extschema@._events_relation_or_error(NEW.events_relation);
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
    expected_engagements_30d float8 CHECK (expected_engagements_30d >= 0),
    model_version          integer NOT NULL CHECK (model_version >= 1),
    expected_conversion_value float8 CHECK (expected_conversion_value >= 0),
    expected_value_30d     float8 CHECK (expected_value_30d >= 0),
    PRIMARY KEY (profile, contact_id),
    CHECK (last_engaged_at IS NULL OR last_engaged_at >= first_event_at)
)
-- Every refresh rewrites its rows: room on each page lets those be HOT updates (no index
-- insertions) whose old versions later refreshes prune in place, so the table keeps its size
-- without waiting for autovacuum.
WITH (fillfactor = 45);
COMMENT ON TABLE @extschema@.engagement_scores IS 'The latest score of each contact under each profile';
COMMENT ON COLUMN @extschema@.engagement_scores.model_version IS
    'The version of the scoring model (SCORING_MODEL.md) that computed the row; another than model_version() is stale';
COMMENT ON COLUMN @extschema@.engagement_scores.expected_conversion_value IS
    'Gamma-Gamma expected value of the contact''s next conversion day';
COMMENT ON COLUMN @extschema@.engagement_scores.expected_value_30d IS
    'Expected conversion value over the profile''s horizon_days: expected engagement days x conversion share x expected conversion value, opt-out penalised';
COMMENT ON COLUMN @extschema@.engagement_scores.expected_engagements_30d IS
    'MBG/NBD expected engagement days over the profile''s horizon_days (30 by default), opt-out penalised';

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
    refreshed_at     timestamptz NOT NULL,
    oldest_score_at  timestamptz,       -- min(calculated_at): when any score can next be too old
    model_version    integer NOT NULL   -- model_version() of the last refresh: another forces a full one
);
-- Uncompressed out of line: a percentile lookup reads a few TOAST slices, not the whole array.
ALTER TABLE @extschema@.score_distributions ALTER COLUMN sorted_composites SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@.score_distributions IS
    'Per profile, the sorted composites as of the last refresh (for score_percentile)';

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
-- the time and the value, and how the CRM's kinds map to the seven event types.  A relation without
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
