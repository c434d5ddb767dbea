-- engagement_scoring 1.0 -> 1.1: the scores table at scale (change tracking, refresh_scores,
-- percentiles, history and trends, staleness, segment summaries, funnels, event pagination),
-- MBG/NBD and BG/NBD models fitted in the database, scheduled refreshes with pg_cron, and the
-- least-privilege access model.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- Profile parameters of the refresh
------------------------------------------------------------------------------------------------
ALTER TABLE @extschema@.scoring_profiles
    ADD COLUMN max_score_age interval NOT NULL DEFAULT '1 day' CHECK (max_score_age > interval '0'),
    ADD COLUMN history_min_delta float8 NOT NULL DEFAULT 1.0
        CHECK (history_min_delta >= 0 AND history_min_delta < 'Infinity');
COMMENT ON COLUMN @extschema@.scoring_profiles.max_score_age IS
    'An incremental refresh rescores contacts whose score is older than this (scores decay with time)';
COMMENT ON COLUMN @extschema@.scoring_profiles.history_min_delta IS
    'A rescore is written to engagement_score_history when the composite moves by at least this, or the segment changes';

-- The fitted model of a profile (fit_model) and its expected engagement days in every score.
ALTER TABLE @extschema@.scoring_profiles
    ADD COLUMN model_log_likelihood float8,
    ADD COLUMN model_fitted_at timestamptz,
    ADD COLUMN model_contacts bigint CHECK (model_contacts >= 0);
COMMENT ON COLUMN @extschema@.scoring_profiles.model_fitted_at IS
    'When fit_model last replaced model_r, model_alpha, model_a and model_b (NULL: the defaults)';
ALTER TYPE @extschema@.score ADD ATTRIBUTE expected_engagements_30d float8;
ALTER TABLE @extschema@.engagement_scores
    ADD COLUMN expected_engagements_30d float8 CHECK (expected_engagements_30d >= 0);
COMMENT ON COLUMN @extschema@.engagement_scores.expected_engagements_30d IS
    'MBG/NBD expected engagement days over the profile''s horizon_days (30 by default), opt-out penalised';

-- Every refresh rewrites its rows: room on each page lets those be HOT updates (no index
-- insertions) whose old versions later refreshes prune in place, so the table keeps its size
-- without waiting for autovacuum.
ALTER TABLE @extschema@.engagement_scores SET (fillfactor = 45);

------------------------------------------------------------------------------------------------
-- Change tracking: statement-level triggers append the changed contacts to event_changes (no
-- index, no conflicts: bulk ingest stays cheap and concurrent writers never wait on each other).
-- A refresh moves them into pending_rescore, one row per profile, and consumes its own.
------------------------------------------------------------------------------------------------
CREATE TABLE @extschema@.event_changes (
    contact_id bigint NOT NULL
);
COMMENT ON TABLE @extschema@.event_changes IS
    'Contacts whose events changed since the last refresh (appended by statement triggers, drained by refresh_scores)';

CREATE TABLE @extschema@.pending_rescore (
    profile    text NOT NULL REFERENCES @extschema@.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    contact_id bigint NOT NULL,
    PRIMARY KEY (profile, contact_id)
);
COMMENT ON TABLE @extschema@.pending_rescore IS
    'Contacts a profile''s next refresh must rescore because their events changed';

CREATE FUNCTION @extschema@._track_event_changes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @extschema@.event_changes (contact_id) SELECT DISTINCT contact_id FROM new_events;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO @extschema@.event_changes (contact_id) SELECT DISTINCT contact_id FROM old_events;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only updates of what the model reads make a contact's score stale.
        INSERT INTO @extschema@.event_changes (contact_id)
        SELECT c FROM (SELECT o.contact_id, n.contact_id
                         FROM old_events o JOIN new_events n USING (id)
                        WHERE (o.contact_id, o.event_type, o.occurred_at, o.conversion_value)
                              IS DISTINCT FROM (n.contact_id, n.event_type, n.occurred_at, n.conversion_value)) ch(a, b),
                      LATERAL (VALUES (ch.a), (ch.b)) v(c)
         GROUP BY c;
    ELSE  -- TRUNCATE: every scored contact lost its events
        INSERT INTO @extschema@.event_changes (contact_id)
        SELECT DISTINCT contact_id FROM @extschema@.engagement_scores;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER engagement_events_track_insert AFTER INSERT ON @extschema@.engagement_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes();
CREATE TRIGGER engagement_events_track_update AFTER UPDATE ON @extschema@.engagement_events
    REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes();
CREATE TRIGGER engagement_events_track_delete AFTER DELETE ON @extschema@.engagement_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes();
CREATE TRIGGER engagement_events_track_truncate AFTER TRUNCATE ON @extschema@.engagement_events
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes();

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
    oldest_score_at  timestamptz        -- min(calculated_at): when any score can next be too old
);
-- Uncompressed out of line: a percentile lookup reads a few TOAST slices, not the whole array.
ALTER TABLE @extschema@.score_distributions ALTER COLUMN sorted_composites SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@.score_distributions IS
    'Per profile, the sorted composites as of the last refresh (for score_percentile)';

CREATE FUNCTION @extschema@._pack_sorted(float8[]) RETURNS bytea
AS 'MODULE_PATHNAME', 'es_pack_sorted' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._count_below(bytea, float8) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_count_below' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._merge_distribution(bytea, float8[], float8[]) RETURNS bytea
AS 'MODULE_PATHNAME', 'es_merge_distribution' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_changes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pending_rescore', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.score_distributions', '');


------------------------------------------------------------------------------------------------
-- refresh_scores
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@.refresh_scores(profile text DEFAULT 'default', "full" boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
-- synchronize_seqscans off: two refreshes draining the change log scan it in the same order,
-- so one waits for the other instead of deadlocking on rows each already locked.
SET search_path = pg_catalog, pg_temp SET synchronize_seqscans = off AS $$
DECLARE
    p          @extschema@.scoring_profiles;
    refresh_at timestamptz := now();   -- as of now(): the transaction's start
    do_full    boolean := "full";
    last       record;
    aged       boolean;
    targets    bigint;
    rescored   bigint;
    removed    float8[];   -- composites leaving the distribution
    added      float8[];   -- composites entering it
BEGIN
    -- One refresh per profile at a time: a second one returns at once.
    IF NOT pg_try_advisory_xact_lock(1701737331, hashtext(profile)) THEN
        RAISE NOTICE 'a refresh of scoring profile "%" is already running; this one does nothing', profile;
        RETURN 0;
    END IF;
    -- Read the profile under a lock that keeps it as it is until this refresh commits.
    SELECT * INTO p FROM @extschema@.scoring_profiles sp WHERE sp.name = refresh_scores.profile FOR SHARE;
    IF NOT FOUND THEN
        PERFORM @extschema@._profile_or_error(profile);   -- raises 42704
    END IF;

    -- Drain the change log (only the rows this snapshot sees: later ones wait for the next
    -- refresh).  This profile takes them directly; the other profiles get them in their pending
    -- sets (sorted inserts: concurrent refreshes of different profiles cannot deadlock on them).
    CREATE TEMP TABLE _es_changed (contact_id bigint) ON COMMIT DROP;
    WITH moved AS (DELETE FROM @extschema@.event_changes RETURNING contact_id)
    INSERT INTO pg_temp._es_changed SELECT DISTINCT contact_id FROM moved;
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT sp.name, c.contact_id
      FROM pg_temp._es_changed c CROSS JOIN @extschema@.scoring_profiles sp
     WHERE sp.name <> p.name
     ORDER BY 1, 2
    ON CONFLICT DO NOTHING;

    SELECT d.profile_version, d.oldest_score_at, d.contacts INTO last
      FROM @extschema@.score_distributions d WHERE d.profile = p.name;
    do_full := do_full OR last.profile_version IS DISTINCT FROM p.version;
    aged := last.oldest_score_at < refresh_at - p.max_score_age;

    -- The rescored contacts go into pg_temp._es_scored, one column per score field.
    IF do_full THEN
        DELETE FROM @extschema@.pending_rescore pr WHERE pr.profile = p.name;
        -- CREATE TABLE AS may run the scan and the aggregate in parallel.
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT q.contact_id, (q.s).*
          FROM (SELECT e.contact_id,
                       @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, refresh_at, p.name) AS s
                  FROM @extschema@.engagement_events e
                 WHERE e.occurred_at <= refresh_at
                 GROUP BY e.contact_id) q;
    ELSE
        -- The changed contacts, and those whose score grew older than max_score_age (the
        -- scores are scanned for those only when the oldest one may have).
        CREATE TEMP TABLE _es_targets (contact_id bigint PRIMARY KEY) ON COMMIT DROP;
        WITH consumed AS (DELETE FROM @extschema@.pending_rescore pr WHERE pr.profile = p.name RETURNING pr.contact_id)
        INSERT INTO pg_temp._es_targets
        SELECT contact_id FROM consumed
         UNION
        SELECT contact_id FROM pg_temp._es_changed
         UNION
        SELECT s.contact_id FROM @extschema@.engagement_scores s
         WHERE aged AND s.profile = p.name AND s.calculated_at < refresh_at - p.max_score_age;
        GET DIAGNOSTICS targets = ROW_COUNT;
        ANALYZE pg_temp._es_targets;
        IF targets * 10 > coalesce(last.contacts, 0) THEN
            -- Many contacts: one scan of the events.
            CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
            SELECT q.contact_id, (q.s).*
              FROM (SELECT t.contact_id,
                           @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, refresh_at, p.name) AS s
                      FROM pg_temp._es_targets t JOIN @extschema@.engagement_events e ON e.contact_id = t.contact_id
                     WHERE e.occurred_at <= refresh_at
                     GROUP BY t.contact_id) q;
        ELSE
            -- A few: each contact's events through the (contact_id, occurred_at) index.
            CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
            SELECT t.contact_id, (c.s).*
              FROM pg_temp._es_targets t,
                   LATERAL (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value,
                                                             refresh_at, p.name) AS s
                              FROM @extschema@.engagement_events e
                             WHERE e.contact_id = t.contact_id AND e.occurred_at <= refresh_at) c
             WHERE (c.s).event_count IS NOT NULL;   -- not "c.s IS NOT NULL": that needs every field non-NULL
        END IF;
    END IF;
    ANALYZE pg_temp._es_scored;

    -- The distribution as of this refresh, before the scores are written so that they can carry
    -- their percentiles: all composites after a full refresh, else the last distribution with the
    -- targets' old composites replaced by their new ones (a linear merge).
    SELECT coalesce(array_agg(n.composite), '{}') INTO added FROM pg_temp._es_scored n;
    IF do_full THEN
        INSERT INTO @extschema@.score_distributions AS d (profile, sorted_composites, contacts, profile_version,
                                                          refreshed_at, oldest_score_at)
        VALUES (p.name, @extschema@._pack_sorted(added), cardinality(added), p.version, refresh_at, refresh_at)
        ON CONFLICT ON CONSTRAINT score_distributions_pkey DO UPDATE
           SET sorted_composites = excluded.sorted_composites, contacts = excluded.contacts,
               profile_version = excluded.profile_version, refreshed_at = excluded.refreshed_at,
               oldest_score_at = excluded.oldest_score_at;
    ELSE
        SELECT coalesce(array_agg(s.composite), '{}') INTO removed
          FROM @extschema@.engagement_scores s JOIN pg_temp._es_targets t USING (contact_id)
         WHERE s.profile = p.name;
        UPDATE @extschema@.score_distributions d
           SET sorted_composites = @extschema@._merge_distribution(d.sorted_composites, removed, added),
               contacts = d.contacts - cardinality(removed) + cardinality(added),
               refreshed_at = refresh_at
         WHERE d.profile = p.name;
    END IF;

    -- Write the scores: UPDATE the contacts already scored, INSERT the new ones (only a refresh
    -- writes this table, under the lock above, so no upsert is needed), and keep the history of
    -- the moves worth keeping (and of every first score).
    WITH prev AS (
        SELECT s.contact_id, s.composite, s.segment
          FROM @extschema@.engagement_scores s JOIN pg_temp._es_scored n USING (contact_id)
         WHERE s.profile = p.name),
    ranked AS (
        -- (the distribution is joined, not passed in a variable: a 1.6 MB constant would be
        -- copied through the planner; joined, _count_below detoasts it once for all rows)
        SELECT n.*,
               CASE WHEN do_full THEN 100 * percent_rank() OVER (ORDER BY n.composite)
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
               percentile_rank = n.pct, score_version = cur.score_version + 1, profile_version = p.version,
               calculated_at = refresh_at
          FROM ranked n
         WHERE cur.profile = p.name AND cur.contact_id = n.contact_id
        RETURNING cur.contact_id, cur.composite, cur.segment, cur.score_version),
    ins AS (
        INSERT INTO @extschema@.engagement_scores (profile, contact_id, composite, recency, frequency, monetary,
               time_decay, diversity, engagement_probability, conversion_probability, churn_risk, segment,
               opted_out, event_count, engaging_count, conversion_total, first_event_at, last_engaged_at,
               expected_engagements_30d, percentile_rank, score_version, profile_version, calculated_at)
        SELECT p.name, n.contact_id, n.composite, n.recency, n.frequency, n.monetary, n.time_decay, n.diversity,
               n.engagement_probability, n.conversion_probability, n.churn_risk, n.segment, n.opted_out,
               n.event_count, n.engaging_count, n.conversion_total, n.first_event_at, n.last_engaged_at,
               n.expected_engagements_30d, n.pct, 1, p.version, refresh_at
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

    -- Contacts that no longer have any event have no score (their composites already left the
    -- distribution).
    IF do_full THEN
        DELETE FROM @extschema@.engagement_scores s
         WHERE s.profile = p.name AND NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = s.contact_id);
    ELSE
        DELETE FROM @extschema@.engagement_scores s
         USING pg_temp._es_targets t
         WHERE s.profile = p.name AND s.contact_id = t.contact_id
           AND NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = t.contact_id);
    END IF;

    -- A changed contact may have events after refresh_at (committed after this transaction
    -- started, or dated in the future): they were not scored now, so it stays pending.
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT p.name, c.contact_id FROM pg_temp._es_changed c
     WHERE EXISTS (SELECT FROM @extschema@.engagement_events e
                    WHERE e.contact_id = c.contact_id AND e.occurred_at > refresh_at)
     ORDER BY 2
    ON CONFLICT DO NOTHING;

    -- oldest_score_at stays a lower bound of calculated_at (scores only get newer); after the
    -- age check rescored the old ones, it is recomputed.
    IF aged AND NOT do_full THEN
        UPDATE @extschema@.score_distributions d
           SET oldest_score_at = coalesce((SELECT min(s.calculated_at) FROM @extschema@.engagement_scores s
                                            WHERE s.profile = p.name), refresh_at)
         WHERE d.profile = p.name;
    END IF;

    -- Leave nothing behind for the rest of the transaction (another role may refresh in it).
    DROP TABLE pg_temp._es_scored, pg_temp._es_changed;
    IF NOT do_full THEN DROP TABLE pg_temp._es_targets; END IF;
    RETURN rescored;
END $$;
COMMENT ON FUNCTION @extschema@.refresh_scores(text, boolean) IS
    'Rescores a profile''s contacts as of now(): all of them (full, or after a profile change), else those whose events changed or whose score is older than max_score_age; returns how many';

------------------------------------------------------------------------------------------------
-- Reading scores
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@.score_percentile(score float8, profile text DEFAULT 'default') RETURNS float8
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    below bigint;
    n     bigint;
BEGIN
    IF score = 'NaN'::float8 THEN
        RAISE EXCEPTION 'score must be a number, not NaN' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT @extschema@._count_below(d.sorted_composites, score), d.contacts INTO below, n
      FROM @extschema@.score_distributions d WHERE d.profile = score_percentile.profile;
    IF NOT FOUND THEN
        PERFORM @extschema@._profile_or_error(profile);
        RETURN NULL;   -- never refreshed: no distribution yet
    END IF;
    RETURN CASE WHEN n = 0 THEN NULL ELSE 100.0 * below / n END;
END $$;
COMMENT ON FUNCTION @extschema@.score_percentile(float8, text) IS
    'The percentile (0..100) of a score among the profile''s scored contacts as of the last refresh: 100 * percent_rank(score) WITHIN GROUP (ORDER BY composite)';

CREATE VIEW @extschema@.contact_scores WITH (security_invoker = true) AS
SELECT s.*,
       (s.calculated_at < now() - p.max_score_age
        OR s.profile_version <> p.version
        OR EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = s.profile AND pr.contact_id = s.contact_id)
        OR EXISTS (SELECT FROM @extschema@.event_changes c WHERE c.contact_id = s.contact_id)) AS is_stale
  FROM @extschema@.engagement_scores s JOIN @extschema@.scoring_profiles p ON p.name = s.profile;
COMMENT ON VIEW @extschema@.contact_scores IS
    'Stored scores with is_stale: older than the profile''s max_score_age, scored under an older profile version, or events changed since';

CREATE FUNCTION @extschema@.cached_score(contact_id bigint, max_age interval DEFAULT '1 hour',
                                         profile text DEFAULT 'default')
RETURNS @extschema@.score
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r @extschema@.score;
BEGIN
    SELECT s.calculated_at, s.profile, s.composite, s.recency, s.frequency, s.monetary, s.time_decay, s.diversity,
           s.engagement_probability, s.conversion_probability, s.churn_risk, s.segment, s.opted_out,
           s.event_count, s.engaging_count, s.conversion_total, s.first_event_at, s.last_engaged_at,
           s.expected_engagements_30d
      INTO r
      FROM @extschema@.contact_scores s
     WHERE s.profile = cached_score.profile AND s.contact_id = cached_score.contact_id
       AND NOT s.is_stale AND s.calculated_at >= now() - max_age;
    IF FOUND THEN
        RETURN r;
    END IF;
    RETURN @extschema@.engagement_score(contact_id, now(), profile);
END $$;
COMMENT ON FUNCTION @extschema@.cached_score(bigint, interval, text) IS
    'The stored score when it is fresh (not stale, and computed within max_age), else a live one';

CREATE FUNCTION @extschema@.segment_summary(profile text DEFAULT 'default')
RETURNS TABLE (segment text, contacts bigint, share float8, mean_score float8)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._profile_or_error(profile);
    RETURN QUERY
    SELECT s.segment, count(*), count(*)::float8 / sum(count(*)) OVER (), avg(s.composite)
      FROM @extschema@.engagement_scores s
     WHERE s.profile = segment_summary.profile
     GROUP BY s.segment
     ORDER BY avg(s.composite) DESC, s.segment;
END $$;

CREATE FUNCTION @extschema@.score_trend(contact_id bigint, since timestamptz, profile text DEFAULT 'default',
                                        OUT slope_per_day float8, OUT change float8, OUT direction text,
                                        OUT points integer)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
BEGIN
    p := @extschema@._profile_or_error(profile);
    SELECT regr_slope(h.composite, extract(epoch FROM h.recorded_at) / 86400),
           (array_agg(h.composite ORDER BY h.recorded_at DESC, h.id DESC))[1]
             - (array_agg(h.composite ORDER BY h.recorded_at, h.id))[1],
           count(*)
      INTO slope_per_day, change, points
      FROM @extschema@.engagement_score_history h
     WHERE h.profile = p.name AND h.contact_id = score_trend.contact_id AND h.recorded_at >= since;
    change := coalesce(change, 0);
    -- A move smaller than the profile's history threshold is noise.
    direction := CASE WHEN points < 2 OR abs(change) < greatest(p.history_min_delta, 1e-9) THEN 'flat'
                      WHEN change > 0 THEN 'rising' ELSE 'falling' END;
END $$;
COMMENT ON FUNCTION @extschema@.score_trend(bigint, timestamptz, text) IS
    'From the score history since a time: least-squares slope in points per day, the change (last - first), and rising/falling/flat';

------------------------------------------------------------------------------------------------
-- Funnels and event pagination
------------------------------------------------------------------------------------------------
-- funnel(campaign_id): WHERE campaign_id = $1.
CREATE INDEX engagement_events_campaign_idx ON @extschema@.engagement_events (campaign_id)
    WHERE campaign_id IS NOT NULL;

CREATE FUNCTION @extschema@.funnel(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
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
COMMENT ON FUNCTION @extschema@.funnel(bigint, timestamptz, timestamptz) IS
    'Per stage (delivered, opened, clicked, responded, converted; then opted_out, bounced): distinct contacts, events, and the contact rate from the previous stage and from delivered, for events in [since, until)';

CREATE FUNCTION @extschema@.contact_events(contact_id bigint, before_id bigint DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF @extschema@.engagement_events
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    before_at timestamptz;
BEGIN
    IF contact_id IS NULL THEN
        RETURN;
    END IF;
    IF page_size IS NULL OR page_size < 1 OR page_size > 10000 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 10000, not %', page_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF before_id IS NULL THEN
        RETURN QUERY
        SELECT e.* FROM @extschema@.engagement_events e
         WHERE e.contact_id = contact_events.contact_id
         ORDER BY e.occurred_at DESC, e.id DESC LIMIT page_size;
        RETURN;
    END IF;
    SELECT e.occurred_at INTO before_at FROM @extschema@.engagement_events e
     WHERE e.id = before_id AND e.contact_id = contact_events.contact_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % is not an event of contact %', before_id, contact_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Keyset: strictly older than the cursor event in (occurred_at, id) order.
    RETURN QUERY
    SELECT e.* FROM @extschema@.engagement_events e
     WHERE e.contact_id = contact_events.contact_id
       AND e.occurred_at <= before_at
       AND (e.occurred_at < before_at OR e.id < before_id)
     ORDER BY e.occurred_at DESC, e.id DESC LIMIT page_size;
END $$;
COMMENT ON FUNCTION @extschema@.contact_events(bigint, bigint, integer) IS
    'One contact''s events, newest first, a page at a time: pass the last id of a page as before_id for the next';

------------------------------------------------------------------------------------------------
-- BG/NBD-family models fitted in the database (btyd_kernel.cpp)
------------------------------------------------------------------------------------------------
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

-- fit_mbgnbd / fit_bgnbd(x, t_x, t [, weight]): maximum likelihood over the rows (any time unit).
CREATE FUNCTION @extschema@._fit_transfn(internal, integer, float8, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'es_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_transfn(internal, integer, float8, float8, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'es_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_combinefn(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_fit_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_serialfn(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'es_fit_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_deserialfn(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_fit_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_mbgnbd_finalfn(internal)
RETURNS @extschema@.model_fit AS 'MODULE_PATHNAME', 'es_fit_mbgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._fit_bgnbd_finalfn(internal)
RETURNS @extschema@.model_fit AS 'MODULE_PATHNAME', 'es_fit_bgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = internal, COMBINEFUNC = @extschema@._fit_combinefn,
    SERIALFUNC = @extschema@._fit_serialfn, DESERIALFUNC = @extschema@._fit_deserialfn,
    FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8, weight float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = internal, COMBINEFUNC = @extschema@._fit_combinefn,
    SERIALFUNC = @extschema@._fit_serialfn, DESERIALFUNC = @extschema@._fit_deserialfn,
    FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = internal, COMBINEFUNC = @extschema@._fit_combinefn,
    SERIALFUNC = @extschema@._fit_serialfn, DESERIALFUNC = @extschema@._fit_deserialfn,
    FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8, weight float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = internal, COMBINEFUNC = @extschema@._fit_combinefn,
    SERIALFUNC = @extschema@._fit_serialfn, DESERIALFUNC = @extschema@._fit_deserialfn,
    FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of customer summaries (x repeat events, t_x, t)';
COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters (Fader, Hardie & Lee 2005) of customer summaries (x, t_x, t)';

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
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p   @extschema@.scoring_profiles;
    fit @extschema@.model_fit;
    res record;
    repeaters bigint;
BEGIN
    p := @extschema@._profile_or_error(profile);
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- NO KEY UPDATE: other profiles' refreshes (FOR KEY SHARE through the foreign keys) go on.
    PERFORM FROM @extschema@.scoring_profiles sp WHERE sp.name = p.name FOR NO KEY UPDATE;
    -- Each contact's (x, t_x, Tc) in days, identical summaries collapsed with their count as weight.
    SELECT @extschema@.fit_mbgnbd(s.x, s.t_x, s.t, s.contacts::float8) AS fit,
           sum(s.contacts) FILTER (WHERE s.x > 0) AS repeaters
      INTO res
      FROM (SELECT (c.summary).x, (c.summary).t_x, (c.summary).t, count(*) AS contacts
              FROM (SELECT @extschema@.btyd_summary(e.event_type, e.occurred_at, as_of) AS summary
                      FROM @extschema@.engagement_events e
                     WHERE e.occurred_at <= as_of
                     GROUP BY e.contact_id) c
             GROUP BY 1, 2, 3) s;
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
    'Fits the profile''s MBG/NBD parameters (days) to every contact''s engagement days as of a time, stores them and returns the fit';
REVOKE EXECUTE ON FUNCTION @extschema@.fit_model(text, timestamptz) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Scheduled refreshes with pg_cron.  No dependency in the control file: pg_cron is reached by
-- dynamic SQL, and these functions say how to enable it when it is missing.  Jobs are named
-- engagement_scoring/<profile>/<kind> and run as the role that scheduled them.
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Add pg_cron to shared_preload_libraries and set cron.database_name = %L in postgresql.conf, '
                                'restart PostgreSQL, then run CREATE EXTENSION pg_cron in this database.',
                                current_database());
    END IF;
END $$;

CREATE FUNCTION @extschema@._job_name(profile text, kind text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'engagement_scoring/' || profile || '/' || kind
$$;

CREATE FUNCTION @extschema@.refresh_jobs()
RETURNS TABLE (job_name text, profile text, kind text, jobid bigint, schedule text, command text, active boolean,
               last_status text, last_start timestamptz, last_end timestamptz, last_message text)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require_pg_cron();
    RETURN QUERY EXECUTE $q$
        SELECT j.jobname::text, split_part(j.jobname, '/', 2), split_part(j.jobname, '/', 3), j.jobid::bigint,
               j.schedule::text, j.command::text, j.active, d.status::text, d.start_time, d.end_time,
               d.return_message::text
          FROM cron.job j
          LEFT JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                               FROM cron.job_run_details r WHERE r.jobid = j.jobid
                              ORDER BY r.start_time DESC NULLS LAST LIMIT 1) d ON true
         WHERE j.jobname LIKE 'engagement\_scoring/%'
         ORDER BY j.jobname $q$;
END $$;
COMMENT ON FUNCTION @extschema@.refresh_jobs() IS
    'The pg_cron jobs of engagement_scoring with the status of their last run';

CREATE FUNCTION @extschema@.unschedule_refresh(profile text DEFAULT 'default') RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text;
    removed integer := 0;
BEGIN
    PERFORM @extschema@._require_pg_cron();
    FOR name IN EXECUTE 'SELECT jobname::text FROM cron.job WHERE jobname IN ($1, $2, $3)'
                USING @extschema@._job_name(profile, 'incremental'), @extschema@._job_name(profile, 'full'),
                      @extschema@._job_name(profile, 'refit')
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
        removed := removed + 1;
    END LOOP;
    RETURN removed;
END $$;
COMMENT ON FUNCTION @extschema@.unschedule_refresh(text) IS 'Removes the pg_cron jobs of a profile; returns how many';

CREATE FUNCTION @extschema@.schedule_refresh(profile text DEFAULT 'default',
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
            ('refit', refit_schedule, format('SELECT @extschema@.fit_model(%L)', p.name))) v(kind, schedule, command)
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
COMMENT ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) IS
    'Creates or updates the pg_cron jobs of a profile: incremental and full refreshes, and optionally a model refit (NULL: no job); returns their job ids';

------------------------------------------------------------------------------------------------
-- Access: nothing on the tables for PUBLIC.  Two grants make the least-privilege model:
--   application: inserts events, reads events, scores, history and profiles, calls the scoring
--                and query functions; cannot change profiles, scores or existing events.
--   admin:       everything, including profiles, refresh, fitting and scheduling.
-- The functions run with the caller's privileges (no SECURITY DEFINER), so the table grants
-- are the whole policy; the writing functions are also kept from PUBLIC.
------------------------------------------------------------------------------------------------
REVOKE EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.unschedule_refresh(text) FROM PUBLIC;

CREATE FUNCTION @extschema@.grant_application_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT ON @extschema@.engagement_events TO %s', role_name);
    -- the change-tracking trigger runs as the inserting role; contact_scores reads the log
    EXECUTE format('GRANT SELECT, INSERT ON @extschema@.event_changes TO %s', role_name);
    EXECUTE format('GRANT SELECT ON @extschema@.scoring_profiles, @extschema@.engagement_scores,
                    @extschema@.engagement_score_history, @extschema@.pending_rescore,
                    @extschema@.score_distributions, @extschema@.contact_scores TO %s', role_name);
END $$;
COMMENT ON FUNCTION @extschema@.grant_application_access(regrole) IS
    'Lets a role insert and read events, read scores, history and profiles, and call the scoring and query functions';

CREATE FUNCTION @extschema@.grant_admin_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA @extschema@ TO %s', role_name);
    -- refresh_scores works in temporary tables
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %s', current_database(), role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean), @extschema@.fit_model(text, timestamptz),
                    @extschema@.schedule_refresh(text, text, text, text), @extschema@.unschedule_refresh(text) TO %s',
                   role_name);
END $$;
COMMENT ON FUNCTION @extschema@.grant_admin_access(regrole) IS
    'Lets a role do everything: events, profiles, scores, refresh_scores, fitting and scheduling';

REVOKE EXECUTE ON FUNCTION @extschema@.grant_application_access(regrole) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.grant_admin_access(regrole) FROM PUBLIC;
