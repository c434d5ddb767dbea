-- engagement_scoring 1.1 -> 1.2: scale-out.  Aggregate states that Citus can split (time_decay,
-- fit_mbgnbd and fit_bgnbd get text-round-trippable state types), profiles that travel with the
-- query (score_events(..., profile jsonb), for postgres_fdw shards), and profiles that score
-- another events relation (a CRM's own table, hash-partitioned into foreign partitions).

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- time_decay: state engagement.decay_state instead of internal
------------------------------------------------------------------------------------------------
DROP AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8);
DROP FUNCTION @extschema@._time_decay_transfn(internal, float8, timestamptz, timestamptz, float8);
DROP FUNCTION @extschema@._time_decay_combinefn(internal, internal);
DROP FUNCTION @extschema@._time_decay_serialfn(internal);
DROP FUNCTION @extschema@._time_decay_deserialfn(bytea, internal);
DROP FUNCTION @extschema@._time_decay_finalfn(internal);

CREATE TYPE @extschema@.decay_state;
CREATE FUNCTION @extschema@.decay_state_in(cstring) RETURNS @extschema@.decay_state
AS 'MODULE_PATHNAME', 'es_decay_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.decay_state_out(@extschema@.decay_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_decay_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE @extschema@.decay_state (
    INPUT = @extschema@.decay_state_in, OUTPUT = @extschema@.decay_state_out,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = double, STORAGE = plain);
COMMENT ON TYPE @extschema@.decay_state IS
    'time_decay''s partial state: (sum, compensation, as_of in microseconds since 2000-01-01, half_life_days, rows)';

CREATE FUNCTION @extschema@._time_decay_transfn(@extschema@.decay_state, float8, timestamptz, timestamptz, float8)
RETURNS @extschema@.decay_state AS 'MODULE_PATHNAME', 'es_decay_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._time_decay_combinefn(@extschema@.decay_state, @extschema@.decay_state)
RETURNS @extschema@.decay_state AS 'MODULE_PATHNAME', 'es_decay_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._time_decay_finalfn(@extschema@.decay_state)
RETURNS float8 AS 'MODULE_PATHNAME', 'es_decay_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8) (
    SFUNC = @extschema@._time_decay_transfn, STYPE = @extschema@.decay_state,
    COMBINEFUNC = @extschema@._time_decay_combinefn, FINALFUNC = @extschema@._time_decay_finalfn,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8) IS
    'Sum of weight * 2^(-age_days / half_life_days) over the rows at or before as_of';

------------------------------------------------------------------------------------------------
-- fit_mbgnbd / fit_bgnbd: state engagement.btyd_fit_state instead of internal
------------------------------------------------------------------------------------------------
DROP AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8);
DROP AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8);
DROP AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8);
DROP AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8);
DROP FUNCTION @extschema@._fit_transfn(internal, integer, float8, float8);
DROP FUNCTION @extschema@._fit_transfn(internal, integer, float8, float8, float8);
DROP FUNCTION @extschema@._fit_combinefn(internal, internal);
DROP FUNCTION @extschema@._fit_serialfn(internal);
DROP FUNCTION @extschema@._fit_deserialfn(bytea, internal);
DROP FUNCTION @extschema@._fit_mbgnbd_finalfn(internal);
DROP FUNCTION @extschema@._fit_bgnbd_finalfn(internal);

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
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz, jsonb)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._explain_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) IS
    'Scores one contact''s events (the rows of a group) as of a time under a profile given as to_jsonb(profile row)';
COMMENT ON AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) IS
    'Explains the score of one contact''s events under a profile given as to_jsonb(profile row)';

------------------------------------------------------------------------------------------------
-- The events relation of a profile: engagement_events, or a CRM's own table with the columns
-- contact_id bigint, event_type engagement.event_type, occurred_at timestamptz and
-- conversion_value numeric (for example hash-partitioned by contact_id into postgres_fdw
-- foreign partitions: docs/scale-out.md).  refresh_scores and fit_model read it.
------------------------------------------------------------------------------------------------
ALTER TABLE @extschema@.scoring_profiles
    ADD COLUMN events_relation regclass NOT NULL DEFAULT '@extschema@.engagement_events';
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation IS
    'The events refresh_scores and fit_model read (contact_id, event_type, occurred_at, conversion_value); changing it rescores everyone';

-- The events relation of a profile, checked before a refresh or a fit reads it (its name, quoted
-- and qualified).  A refresh may run as a superuser (pg_cron) while a less privileged admin role
-- chose the relation: so only tables (plain, partitioned, foreign) owned by the caller or by a
-- superuser, with exactly the columns read; never a view, whose functions would run as the caller.
CREATE FUNCTION @extschema@._events_relation_or_error(events regclass) RETURNS text
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
     WHERE c.relkind NOT IN ('r', 'p', 'f') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % must be a table (plain, partitioned or foreign)', bad
            USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT c.oid::regclass::text INTO bad
      FROM (SELECT events AS relid UNION SELECT t.relid FROM pg_partition_tree(events) t) t
      JOIN pg_class c ON c.oid = t.relid JOIN pg_roles r ON r.oid = c.relowner
     WHERE NOT r.rolsuper AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % is owned by another role that is not a superuser', bad
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Refresh as its owner, or give the table to a superuser.';
    END IF;
    SELECT string_agg(format('%s %s', want.col, want.typ), ', ') INTO bad
      FROM (VALUES ('contact_id', 'bigint'::regtype), ('event_type', '@extschema@.event_type'::regtype),
                   ('occurred_at', 'timestamptz'::regtype), ('conversion_value', 'numeric'::regtype)) want(col, typ)
     WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = events AND a.attname = want.col
                          AND a.atttypid = want.typ AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % lacks the columns %', events, bad USING ERRCODE = 'datatype_mismatch';
    END IF;
    RETURN events::text;
END $$;

-- Another relation's rows have no id to pair old and new versions by: an UPDATE there marks
-- every contact it touched (TG_ARGV[0] = 'any_update').
CREATE OR REPLACE FUNCTION @extschema@._track_event_changes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @extschema@.event_changes (contact_id) SELECT DISTINCT contact_id FROM new_events;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO @extschema@.event_changes (contact_id) SELECT DISTINCT contact_id FROM old_events;
    ELSIF TG_OP = 'UPDATE' AND TG_NARGS > 0 AND TG_ARGV[0] = 'any_update' THEN
        INSERT INTO @extschema@.event_changes (contact_id)
        SELECT contact_id FROM old_events UNION SELECT contact_id FROM new_events;
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

-- Foreign partitions cannot hand rows to transition tables ("cannot collect transition tuples
-- from child foreign tables"): a relation with any gets row-level triggers instead (which also
-- turns off postgres_fdw's batch inserts while they exist; docs/scale-out.md).
CREATE FUNCTION @extschema@._track_event_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO @extschema@.event_changes (contact_id) VALUES (OLD.contact_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.contact_id IS DISTINCT FROM OLD.contact_id) THEN
        INSERT INTO @extschema@.event_changes (contact_id) VALUES (NEW.contact_id);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION @extschema@.track_event_changes(events regclass) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF events = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is always tracked' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._events_relation_or_error(events);   -- what a refresh will accept to read
    -- the relation itself or any partition (pg_partition_tree lists only partitioned tables' trees)
    IF EXISTS (SELECT FROM pg_class c
                WHERE c.relkind = 'f' AND c.oid IN (SELECT events UNION SELECT t.relid FROM pg_partition_tree(events) t)) THEN
        EXECUTE format('CREATE TRIGGER engagement_track_change AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION @extschema@._track_event_change()', events);
    ELSE
        EXECUTE format('CREATE TRIGGER engagement_track_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes()', events);
        EXECUTE format('CREATE TRIGGER engagement_track_update AFTER UPDATE ON %s '
                       'REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes(''any_update'')', events);
        EXECUTE format('CREATE TRIGGER engagement_track_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes()', events);
    END IF;
    EXECUTE format('CREATE TRIGGER engagement_track_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes()', events);
END $$;
COMMENT ON FUNCTION @extschema@.track_event_changes(regclass) IS
    'Adds change-tracking triggers to a profile''s own events relation (run it after attaching its partitions), so incremental refreshes see the changes written through this server';
REVOKE EXECUTE ON FUNCTION @extschema@.track_event_changes(regclass) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- refresh_scores and fit_model read the profile's events relation
------------------------------------------------------------------------------------------------
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
    do_full    boolean := "full";
    last       record;
    aged       boolean;
    targets    bigint;
    rescored   bigint;
    removed    float8[];   -- composites leaving the distribution
    added      float8[];   -- composites entering it
    events     text;       -- the profile's events relation
    profile_arg text;      -- how score_events gets the profile: $2 (its name) or $3 (its document)
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
    events := @extschema@._events_relation_or_error(p.events_relation);   -- qualified and quoted
    -- Scoring engagement_events looks the profile up by name; any other relation (partitioned,
    -- foreign, another server's) gets the profile's values with the query, as a document.
    profile_arg := CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$2' ELSE '$3' END;

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
        EXECUTE format($q$
            CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
            SELECT q.contact_id, (q.s).*
              FROM (SELECT e.contact_id,
                           @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s
                      FROM %1$s e
                     WHERE e.occurred_at <= $1
                     GROUP BY e.contact_id) q$q$, events, profile_arg)
        USING refresh_at, p.name, to_jsonb(p);
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
            EXECUTE format($q$
                CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
                SELECT q.contact_id, (q.s).*
                  FROM (SELECT t.contact_id,
                               @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s
                          FROM pg_temp._es_targets t JOIN %1$s e ON e.contact_id = t.contact_id
                         WHERE e.occurred_at <= $1
                         GROUP BY t.contact_id) q$q$, events, profile_arg)
            USING refresh_at, p.name, to_jsonb(p);
        ELSE
            -- A few: each contact's events through the (contact_id, occurred_at) index.
            EXECUTE format($q$
                CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
                SELECT t.contact_id, (c.s).*
                  FROM pg_temp._es_targets t,
                       LATERAL (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value,
                                                                 $1, %2$s) AS s
                                  FROM %1$s e
                                 WHERE e.contact_id = t.contact_id AND e.occurred_at <= $1) c
                 WHERE (c.s).event_count IS NOT NULL   -- not "c.s IS NOT NULL": that needs every field non-NULL
                $q$, events, profile_arg)
            USING refresh_at, p.name, to_jsonb(p);
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
    EXECUTE format($q$
        INSERT INTO @extschema@.pending_rescore (profile, contact_id)
        SELECT $2, c.contact_id FROM pg_temp._es_changed c
         WHERE EXISTS (SELECT FROM %s e WHERE e.contact_id = c.contact_id AND e.occurred_at > $1)
         ORDER BY 2
        ON CONFLICT DO NOTHING$q$, events)
    USING refresh_at, p.name;

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
    'Rescores a profile''s contacts (from its events_relation) as of now(): all of them (full, or after a profile change), else those whose events changed or whose score is older than max_score_age; returns how many';

CREATE OR REPLACE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now())
RETURNS @extschema@.model_fit
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
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
                 GROUP BY 1, 2, 3) s$q$, @extschema@._events_relation_or_error(p.events_relation))
    INTO res USING as_of;
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
