-- citus.sql: the extension on a Citus cluster (docs/scale-out.md).  citus_distribute lays the
-- extension's tables out once, on the coordinator: the CRM's events, the scores, their history
-- and the change log distributed by contact, co-located (a contact's rows on one worker); the
-- profiles and the other small tables reference tables (a copy on every node, written through the
-- coordinator), so what a worker scores with is always the coordinator's profile.  Change tracking
-- runs in the shards: each shard of the events logs its changes in its co-located shard of the
-- change log, in the same transaction.

-- Whether rel is a Citus table, and of which kind ('h' hash-distributed, 'n' reference or Citus
-- local); NULL without Citus or for a plain table.
CREATE FUNCTION @extschema@._citus_method(rel regclass) RETURNS "char"
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    method "char";
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT partmethod FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1' INTO method USING rel;
    RETURN method;
END $$;

-- Whether the extension's tables are laid out for Citus (citus_distribute ran).
CREATE FUNCTION @extschema@._on_citus() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(@extschema@._citus_method('@extschema@.engagement_scores') = 'h', false)
$$;

-- The shard of rel co-located with a shard (named as in TG_TABLE_NAME: <table>_<shardid>), on the
-- same worker: the one with the same hash range.  NULL when there is none.
CREATE FUNCTION @extschema@._colocated_shard(shard text, rel regclass) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT pg_catalog.shard_name(rel, c.shardid)
              FROM pg_catalog.pg_dist_shard s
              JOIN pg_catalog.pg_dist_shard c ON c.logicalrelid = rel AND c.shardminvalue = s.shardminvalue
             WHERE s.shardid = substring(shard FROM '_([0-9]+)$')::bigint);
END $$;

-- The change-tracking trigger of a shard of a distributed events table (track_event_changes adds
-- it on Citus; Citus creates it on every shard): the changed contacts go into the co-located
-- shard of event_changes, on the same worker and in the same transaction as the change.
-- Arguments: the contact column and the tracked relation's OID on the coordinator, logged as the
-- relation (on Citus event_changes.relation is an oid: a worker's OIDs are its own, and Citus may
-- send a regclass to a worker as a name).
CREATE FUNCTION @extschema@._track_shard_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact  name := TG_ARGV[0];
    relation oid := TG_ARGV[1]::oid;
    log      text;
BEGIN
    IF @extschema@._citus_method(TG_RELID) IS NOT NULL THEN
        RETURN NULL;   -- the distributed table itself, not a shard: its rows are the shards'
    END IF;
    log := @extschema@._colocated_shard(TG_TABLE_NAME, '@extschema@.event_changes');
    IF log IS NULL THEN
        RAISE EXCEPTION 'change tracking on %: % is not a shard co-located with engagement.event_changes',
                        relation::regclass, TG_TABLE_NAME
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run engagement.citus_distribute on the coordinator.';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN  -- (a shard Citus moved gets the trigger): every contact scored from it may have lost its events
        EXECUTE format('INSERT INTO %s (contact_id, relation) SELECT DISTINCT s.contact_id, $1 FROM %s s',
                       log, @extschema@._colocated_shard(TG_TABLE_NAME, '@extschema@.engagement_scores'))
        USING relation;
    ELSE  -- the contacts of the rows written: the statement's transition tables (both for an UPDATE)
        EXECUTE format('INSERT INTO %s (contact_id, relation) SELECT DISTINCT c, $1 FROM (%s) u(c) WHERE c IS NOT NULL',
                       log, CASE TG_OP WHEN 'INSERT' THEN format('SELECT %I FROM new_events', contact)
                                       WHEN 'DELETE' THEN format('SELECT %I FROM old_events', contact)
                                       ELSE format('SELECT %I FROM old_events UNION ALL SELECT %I FROM new_events', contact, contact) END)
        USING relation;
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION @extschema@._track_shard_changes() FROM PUBLIC;

-- The TRUNCATE trigger of a distributed events table, which Citus runs on the coordinator's table
-- (not in the shards): every scored contact may have lost its events.  The scores and the change
-- log are co-located, so Citus runs this in each pair of shards.  With the truncating role's
-- rights (an admin's: grant_admin_access): Citus runs a transaction's work on a shard group as one
-- role.  Argument: the tracked relation's OID on the coordinator.
CREATE FUNCTION @extschema@._track_distributed_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO @extschema@.event_changes (contact_id, relation)
    SELECT DISTINCT s.contact_id, TG_ARGV[0]::oid FROM @extschema@.engagement_scores s;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION @extschema@._track_distributed_truncate() FROM PUBLIC;

-- The triggers of track_event_changes on a distributed events table: statement-level, with
-- transition tables, on every shard (which Citus allows with citus.enable_unsafe_triggers on).
CREATE FUNCTION @extschema@._citus_track(events regclass, contact name) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET citus.enable_unsafe_triggers = on AS $$
BEGIN
    IF NOT @extschema@._on_citus() THEN
        RAISE EXCEPTION '% is a distributed table, but the extension''s tables are not laid out for Citus', events
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Run SELECT engagement.citus_distribute(%L) on the coordinator.', events::text);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition a, pg_catalog.pg_dist_partition b
                    WHERE a.logicalrelid = events AND b.logicalrelid = '@extschema@.event_changes'::regclass
                      AND a.colocationid = b.colocationid
                      AND pg_catalog.column_to_column_name(a.logicalrelid, a.partkey) = contact) THEN
        RAISE EXCEPTION 'change tracking on Citus needs % distributed by %, co-located with engagement.event_changes',
                        events, quote_ident(contact)
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('SELECT alter_distributed_table(%L, colocate_with => ''engagement.event_changes''); (distributed by %I)',
                                events::text, contact);
    END IF;
    PERFORM @extschema@._create_statement_tracking_triggers(events, '@extschema@._track_shard_changes',
                                                            format('%L, %L', contact, events::oid));
    EXECUTE format('CREATE TRIGGER engagement_track_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_distributed_truncate(%L)', events, events::oid);
END $$;

-- _refresh_write_scores on Citus: the same rows, written so that each shard gets only its own.
-- (The single-node statements join the shards with the refresh's temporary tables, which Citus
-- would send whole to every shard: 32 reads of all the scores.)  The previous scores come back
-- once, the new ones, ranked, go out by one INSERT ... ON CONFLICT that Citus splits by shard,
-- the history likewise; the contacts whose scores are removed go as a list.
CREATE FUNCTION @extschema@._citus_write_scores(p @extschema@.scoring_profiles, refresh_at timestamptz,
                                                full_refresh boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rescored bigint;
    removed  bigint[];
BEGIN
    CREATE TEMP TABLE _es_prev ON COMMIT DROP AS
    SELECT s.contact_id, s.composite, s.segment, s.score_version
      FROM @extschema@.engagement_scores s
     WHERE s.profile = p.name AND (full_refresh OR s.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t));
    CREATE TEMP TABLE _es_ranked ON COMMIT DROP AS
    SELECT n.*, prev.composite AS prev_composite, prev.segment AS prev_segment,
           coalesce(prev.score_version, 0) + 1 AS new_score_version,
           CASE WHEN full_refresh THEN 100 * percent_rank() OVER (ORDER BY n.composite)
                WHEN d.contacts > 1 THEN 100.0 * @extschema@._count_below(d.sorted_composites, n.composite) / (d.contacts - 1)
                ELSE 0 END AS pct
      FROM pg_temp._es_scored n
      LEFT JOIN pg_temp._es_prev prev USING (contact_id)
      LEFT JOIN @extschema@.score_distributions d ON d.profile = p.name;
    EXECUTE format($q$
        INSERT INTO @extschema@.engagement_scores AS cur (profile, contact_id, %1$s, percentile_rank,
               score_version, profile_version, model_version, calculated_at)
        SELECT ($1).name, n.contact_id, %2$s, n.pct, n.new_score_version, ($1).version, @extschema@.model_version(), $2
          FROM pg_temp._es_ranked n
        ON CONFLICT (profile, contact_id) DO UPDATE
           SET %3$s, percentile_rank = excluded.percentile_rank, score_version = excluded.score_version,
               profile_version = excluded.profile_version, model_version = excluded.model_version,
               calculated_at = excluded.calculated_at
        $q$, @extschema@._stored_score_list('%I'), @extschema@._stored_score_list('n.%I'),
             @extschema@._stored_score_list('%1$I = excluded.%1$I'))
    USING p, refresh_at;
    GET DIAGNOSTICS rescored = ROW_COUNT;
    INSERT INTO @extschema@.engagement_score_history (profile, contact_id, composite, segment,
           previous_composite, previous_segment, score_version, recorded_at)
    SELECT p.name, n.contact_id, n.composite, n.segment, n.prev_composite, n.prev_segment, n.new_score_version, refresh_at
      FROM pg_temp._es_ranked n
     WHERE n.prev_composite IS NULL
        OR abs(n.composite - n.prev_composite) >= p.history_min_delta
        OR n.segment <> n.prev_segment;
    -- the contacts that no longer have any event (their composites already left the distribution)
    SELECT array_agg(o.contact_id) INTO removed
      FROM (SELECT pr.contact_id FROM pg_temp._es_prev pr
             UNION ALL SELECT t.contact_id FROM pg_temp._es_targets t WHERE NOT full_refresh) o
     WHERE NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = o.contact_id);
    IF removed IS NOT NULL THEN
        DELETE FROM @extschema@.engagement_scores s WHERE s.profile = p.name AND s.contact_id = ANY (removed);
        DELETE FROM @extschema@.engagement_score_history h WHERE h.profile = p.name AND h.contact_id = ANY (removed);
    END IF;
    DROP TABLE pg_temp._es_prev, pg_temp._es_ranked;
    RETURN rescored;
END $$;

-- predict and customer_lifetime_value are SQL functions the planner inlines on one node; Citus
-- (with PostgreSQL before 18) refuses an inlined SQL function that reads a distributed table
-- ("parameterized queries for SQL functions referencing distributed tables are not supported"),
-- at the top level as in a shard.  On Citus their bodies call these PL/pgSQL forms instead
-- (_citus_sql_functions); in a Citus task, predict of a contact reads the contact's shard of the
-- scores on that node (_citus_local_relation).
CREATE FUNCTION @extschema@._citus_predict(function_name text, profile text, horizon_days float8, contact bigint,
                                            every_contact boolean)
RETURNS TABLE (c bigint, engagement_probability float8, conversion_probability float8,
               expected_engagements float8, expected_value float8, calculated_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._prediction_arguments(function_name, profile, horizon_days);
    RETURN QUERY EXECUTE format(
        'SELECT s.contact_id, (s.p).engagement_probability, (s.p).conversion_probability, (s.p).expected_engagements,
                (s.p).expected_value, s.calculated_at
           FROM (SELECT sc.contact_id, sc.calculated_at,
                        @extschema@._predict($1, $2, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v,
                                             sc.m_v, sc.opted_out, sc.undeliverable) AS p
                   FROM %s sc WHERE sc.profile = $1 AND ($4 OR sc.contact_id = $3) OFFSET 0) s',
        CASE WHEN NOT every_contact AND contact IS NOT NULL AND @extschema@._in_citus_shard_query()
             THEN @extschema@._citus_local_relation('@extschema@.engagement_scores', contact)
             ELSE '@extschema@.engagement_scores' END)
      USING profile, horizon_days, contact, every_contact;
END $$;

CREATE FUNCTION @extschema@._citus_lifetime_value(profile text, months integer, monthly_discount_rate float8)
RETURNS TABLE (c bigint, lifetime_value float8, calculated_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._lifetime_arguments('customer_lifetime_value(profile, months, monthly_discount_rate)', profile,
                                            months, monthly_discount_rate);
    RETURN QUERY
    SELECT sc.contact_id,
           @extschema@._lifetime_value(_citus_lifetime_value.profile, months, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v, sc.m_v,
                                       sc.opted_out, sc.undeliverable, monthly_discount_rate),
           sc.calculated_at
      FROM @extschema@.engagement_scores sc
     WHERE sc.profile = _citus_lifetime_value.profile;
END $$;

-- predict's and customer_lifetime_value's bodies on Citus: the PL/pgSQL forms above (run by
-- citus_distribute, every time; Citus makes the change on the workers too).  Same signatures,
-- names and results; no SET clause, every name qualified, as for the inlinable forms.
CREATE FUNCTION @extschema@._citus_sql_functions() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CREATE OR REPLACE FUNCTION @extschema@.predict(profile text, horizon_days float8)
    RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
                   expected_engagements float8, expected_value float8, calculated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
        SELECT * FROM @extschema@._citus_predict('predict(profile, horizon_days)', $1, $2, NULL, true)
    $b$;
    CREATE OR REPLACE FUNCTION @extschema@.predict(contact_id bigint, horizon_days float8, profile text DEFAULT 'default')
    RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
                   expected_engagements float8, expected_value float8, calculated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
        SELECT * FROM @extschema@._citus_predict('predict(contact_id, horizon_days, profile)', $3, $2, $1, false)
    $b$;
    CREATE OR REPLACE FUNCTION @extschema@.customer_lifetime_value(profile text, months integer, monthly_discount_rate float8)
    RETURNS TABLE (contact_id bigint, lifetime_value float8, calculated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
        SELECT * FROM @extschema@._citus_lifetime_value($1, $2, $3)
    $b$;
END $$;
REVOKE EXECUTE ON FUNCTION @extschema@._citus_sql_functions() FROM PUBLIC;

-- citus_distribute(events): the one way to run the extension on Citus (docs/scale-out.md).  While
-- it runs, unsafe triggers are allowed (its SET clause): the profiles' triggers run on every
-- placement of their reference table.
CREATE FUNCTION @extschema@.citus_distribute(events regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp SET citus.enable_unsafe_triggers = on AS $$
DECLARE
    contact  name;
    method   "char";
    t        text;
    fk       record;
BEGIN
    PERFORM @extschema@._arguments_not_null('citus_distribute(events)', events IS NULL);
    IF NOT EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION 'citus_distribute needs the citus extension in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'shared_preload_libraries = ''citus'' and CREATE EXTENSION citus on every node first (docs/scale-out.md).';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'citus_distribute must be run by a superuser' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF @extschema@._on_citus_worker() THEN
        RAISE EXCEPTION 'citus_distribute runs on the coordinator, not on a worker' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node n WHERE n.groupid = 0) THEN
        RAISE EXCEPTION 'the coordinator is not in the Citus metadata'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'SELECT citus_set_coordinator_host(''<host>'', <port>); the profiles are read on every node, the coordinator included.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node n WHERE n.groupid <> 0 AND n.isactive AND n.noderole = 'primary') THEN
        RAISE EXCEPTION 'Citus has no worker node'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'SELECT citus_add_node(''<host>'', <port>); for each worker.';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = events) <> 'r' THEN
        RAISE EXCEPTION 'citus_distribute needs a plain table of events; % is not one', events
            USING ERRCODE = 'wrong_object_type';
    END IF;
    -- the columns the scoring reads (its event_sources row, or the standard ones), checked as for a profile
    PERFORM @extschema@._events_relation_or_error(events);
    contact := (@extschema@._source_of(events)).contact_column;
    IF EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = events AND NOT tg.tgisinternal
                  AND tg.tgfoid NOT IN ('@extschema@._track_event_changes'::regproc, '@extschema@._track_event_change'::regproc,
                                        '@extschema@._track_shard_changes'::regproc,
                                        '@extschema@._track_distributed_truncate'::regproc)) THEN
        RAISE EXCEPTION '% has triggers of its own, which Citus does not run on distributed tables', events
            USING ERRCODE = 'feature_not_supported';
    END IF;

    method := @extschema@._citus_method(events);
    IF method IS NOT NULL AND method <> 'h' THEN
        RAISE EXCEPTION '% is a Citus reference or local table; the events must be distributed by %', events, quote_ident(contact)
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF method = 'h' AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = events
                                       AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = contact) THEN
        RAISE EXCEPTION '% is distributed by another column than its contact column %', events, quote_ident(contact)
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('SELECT undistribute_table(%L); then run citus_distribute again.', events::text);
    END IF;
    IF @extschema@._on_citus() AND NOT EXISTS (
           SELECT FROM pg_catalog.pg_dist_partition a, pg_catalog.pg_dist_partition b
            WHERE a.logicalrelid = events AND b.logicalrelid = '@extschema@.engagement_scores'::regclass
              AND a.colocationid = b.colocationid) THEN
        RAISE EXCEPTION 'the extension''s tables are already distributed with another events table than %', events
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Co-locate %s with engagement.engagement_scores, distributed by %I: SELECT alter_distributed_table(%L, colocate_with => ''engagement.engagement_scores''); then track its changes with engagement.track_event_changes.',
                                events, contact, events::text);
    END IF;

    -- The distributed tables are worked on over one connection per worker, so that the reference
    -- tables can be written afterwards, and for the rest of the transaction (as in fit_model).
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    -- The tracking triggers of a table not yet distributed would be refused: made again below.
    PERFORM @extschema@._drop_tracking_triggers(events);
    IF method IS NULL THEN
        PERFORM create_distributed_table(events, contact);
        PERFORM truncate_local_data_after_distributing_table(events);
    END IF;

    IF NOT @extschema@._on_citus() THEN
        -- Citus keeps a foreign key from a local table to a reference table only by making the
        -- local table a Citus local table, which the extension's views do not survive: the keys
        -- to the profiles are dropped on every node and made again once each table is distributed.
        CREATE TEMP TABLE _es_profile_keys ON COMMIT DROP AS
        SELECT c.conrelid::regclass AS rel, c.conname, pg_get_constraintdef(c.oid) AS def
          FROM pg_constraint c WHERE c.confrelid = '@extschema@.scoring_profiles'::regclass;
        FOR fk IN SELECT * FROM pg_temp._es_profile_keys LOOP
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
            PERFORM run_command_on_workers(format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', fk.rel, fk.conname));
        END LOOP;
        -- a distributed table's keys include its distribution column
        t := 'ALTER TABLE @extschema@.engagement_score_history DROP CONSTRAINT engagement_score_history_pkey, ADD PRIMARY KEY (contact_id, id)';
        EXECUTE t;
        PERFORM run_command_on_workers(t);

        FOREACH t IN ARRAY ARRAY['scoring_profiles', 'pending_rescore', 'score_distributions', 'model_fits', 'refresh_runs'] LOOP
            PERFORM create_reference_table(format('@extschema@.%I', t)::regclass);
        END LOOP;
        -- the change log's relation as a number: written in the shards (a worker's OIDs are its
        -- own) and through the coordinator, where Citus may send a regclass as a name
        t := 'ALTER TABLE @extschema@.event_changes ALTER COLUMN relation TYPE oid';
        EXECUTE t;
        PERFORM run_command_on_workers(t);
        FOREACH t IN ARRAY ARRAY['engagement_scores', 'engagement_score_history', 'event_changes'] LOOP
            PERFORM create_distributed_table(format('@extschema@.%I', t)::regclass, 'contact_id', colocate_with => events::text);
        END LOOP;
        -- the local rows the tables had before are copies now (Citus leaves them on disk)
        FOREACH t IN ARRAY ARRAY['scoring_profiles', 'pending_rescore', 'score_distributions', 'model_fits', 'refresh_runs',
                                 'engagement_scores', 'engagement_score_history', 'event_changes'] LOOP
            PERFORM truncate_local_data_after_distributing_table(format('@extschema@.%I', t)::regclass);
        END LOOP;
        FOR fk IN SELECT * FROM pg_temp._es_profile_keys LOOP
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.rel, fk.conname, fk.def);
        END LOOP;
        DROP TABLE pg_temp._es_profile_keys;
    END IF;

    PERFORM @extschema@._citus_track(events, contact);
    PERFORM @extschema@._citus_sql_functions();
    UPDATE @extschema@.scoring_profiles p SET events_relation = events
     WHERE p.name = 'default' AND p.events_relation IS DISTINCT FROM events;
END $$;
COMMENT ON FUNCTION @extschema@.citus_distribute(regclass) IS
    'Lays the extension out on Citus (run once on the coordinator, by a superuser): distributes the events table by its contact column if it is not yet, and co-located with it the scores, their history and the change log; makes the profiles and the other small tables reference tables; tracks the events'' changes in their shards; points the default profile at the events';
REVOKE EXECUTE ON FUNCTION @extschema@.citus_distribute(regclass) FROM PUBLIC;
