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
COMMENT ON COLUMN @extschema@.engagement_scores.model_version IS
    'The version of the scoring model (SCORING_MODEL.md) that computed the row; another than model_version() is stale';
COMMENT ON COLUMN @extschema@.engagement_scores.expected_conversion_value IS
    'Gamma-Gamma expected value of the contact''s next conversion day';
COMMENT ON COLUMN @extschema@.engagement_scores.expected_value_30d IS
    'Expected conversion value over the profile''s horizon_days: expected engagement days x conversion share x expected conversion value, opt-out penalised';
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
CREATE OR REPLACE FUNCTION @extschema@.refresh_scores(profile text DEFAULT 'default', "full" boolean DEFAULT false)
RETURNS bigint
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
    refresh_at timestamptz := now();   -- as of now(): the transaction's start
    events     text;                   -- the profile's events relation, bound (_bind_events_relation)
    last       record;                 -- the distribution of the last refresh
    do_full    boolean := "full";
    aged       boolean;
    targets    bigint;
    rescored   bigint;
    saved_lock_timeout text;
BEGIN
    -- Every statement sees what committed before it: what a refresh consumes and re-queues
    -- relies on it (under a snapshot taken once, a change drained meanwhile could be lost).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'refresh_scores runs at the READ COMMITTED isolation level, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- Read the profile under a lock that keeps it as it is until this refresh commits.
    SELECT * INTO p FROM @extschema@.scoring_profiles sp WHERE sp.name = refresh_scores.profile FOR SHARE;
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
        RETURN NULL;
    END IF;
    events := @extschema@._bind_events_relation(p);

    PERFORM @extschema@._refresh_drain_changes(p);

    -- A profile changed since the last refresh (or never refreshed), or scores of another version
    -- of the model, rescore everyone.
    SELECT d.profile_version, d.model_version, d.oldest_score_at, d.contacts INTO last
      FROM @extschema@.score_distributions d WHERE d.profile = p.name;
    do_full := do_full OR last.profile_version IS DISTINCT FROM p.version
               OR last.model_version IS DISTINCT FROM @extschema@.model_version();
    aged := last.oldest_score_at < refresh_at - p.max_score_age;

    targets := @extschema@._refresh_choose_targets(p, refresh_at, do_full, aged);
    PERFORM @extschema@._refresh_score_contacts(p, events, refresh_at, do_full,
                                                coalesce(targets * 10 <= last.contacts, false));
    PERFORM @extschema@._refresh_distribution(p, refresh_at, do_full);
    rescored := @extschema@._refresh_write_scores(p, refresh_at, do_full);
    PERFORM @extschema@._refresh_keep_pending(p, events, refresh_at);

    -- oldest_score_at stays a lower bound of calculated_at (scores only get newer); after the
    -- age check rescored the old ones, it is recomputed.
    IF aged AND NOT do_full THEN
        UPDATE @extschema@.score_distributions d
           SET oldest_score_at = coalesce((SELECT min(s.calculated_at) FROM @extschema@.engagement_scores s
                                            WHERE s.profile = p.name), refresh_at)
         WHERE d.profile = p.name;
    END IF;

    -- Leave nothing behind for the rest of the transaction (another role may refresh in it).
    DROP TABLE pg_temp._es_scored, pg_temp._es_changed, pg_temp._es_targets;
    IF events = 'pg_temp._es_events' THEN DROP VIEW pg_temp._es_events; END IF;
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
             WHERE e.occurred_at <= $1
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
              FROM %1$s e WHERE e.occurred_at <= $1 GROUP BY e.contact_id),
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
            ('incremental', incremental_schedule, format('SELECT @extschema@.refresh_scores(%L)', p.name)),
            ('full', full_schedule, format('SELECT @extschema@.refresh_scores(%L, true)', p.name)),
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
                    @extschema@.score_distributions, @extschema@.contact_scores, @extschema@.model_fits TO %s', role_name);
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
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean), @extschema@.fit_model(text, timestamptz, text),
                    @extschema@.schedule_refresh(text, text, text, text), @extschema@.unschedule_refresh(text),
                    @extschema@.track_event_changes(regclass), @extschema@._track_event_changes(),
                    @extschema@._track_event_change() TO %s', role_name);
END $$;

-- Scheduled refits of 1.3 call fit_model(profile), which now raises an error when a fit does not
-- converge: make them warn and go on, as schedule_refresh now schedules them.
DO $$
DECLARE
    j record;
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        FOR j IN EXECUTE $q$SELECT jobid, split_part(jobname, '/', 2) AS profile FROM cron.job
                             WHERE jobname LIKE 'engagement\_scoring/%/refit'$q$
        LOOP
            EXECUTE 'SELECT cron.alter_job($1, command => $2)'
                USING j.jobid, format('SELECT @extschema@.fit_model(%L, on_failure => %L)', j.profile, 'warning');
        END LOOP;
    END IF;
END $$;

DROP FUNCTION @extschema@._upgrade_copy_grants(aclitem[], text, text);
