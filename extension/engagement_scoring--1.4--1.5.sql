-- engagement_scoring 1.4 -> 1.5: Citus (citus_distribute, change tracking on distributed events,
-- refresh and fits on a distributed layout) and performance work.  The scoring model is unchanged
-- (model version 2): stored scores stay current.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.5'" to load this file. \quit

-- Performance (issue 16): the contact-time index carries the other columns the model reads, so
-- that a few contacts' events (the incremental refresh, engagement_score) come from the index
-- alone.  The update rebuilds it, writes to engagement_events waiting meanwhile (2.5 s for 6.5M
-- events on a 2-core machine with maintenance_work_mem = 1GB), and keeps what a user set on the
-- old one: its storage parameters, its tablespace and whether the table is clustered on it.
DO $$
DECLARE
    options    text[];
    space      name;
    clustered  boolean;
BEGIN
    SELECT c.reloptions, t.spcname, i.indisclustered INTO options, space, clustered
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
     WHERE i.indexrelid = '@extschema@.engagement_events_contact_time_idx'::regclass;
    DROP INDEX @extschema@.engagement_events_contact_time_idx;
    EXECUTE format('CREATE INDEX engagement_events_contact_time_idx ON @extschema@.engagement_events '
                   '(contact_id, occurred_at) INCLUDE (event_type, conversion_value)%s%s',
                   CASE WHEN options IS NOT NULL THEN format(' WITH (%s)', array_to_string(options, ', ')) END,
                   CASE WHEN space IS NOT NULL THEN format(' TABLESPACE %I', space) END);
    IF clustered THEN
        ALTER TABLE @extschema@.engagement_events CLUSTER ON engagement_events_contact_time_idx;
    END IF;
END $$;

-- Citus (issue 14)
-- Citus (issue 14): the profiles' triggers on a reference table's placements, change tracking into
-- a distributed change log, refresh statements Citus can plan, fit_model's profile update after a
-- distributed scan, funnels of the default profile's events.  Performance (issue 16): the full
-- refresh's writes from one join, change tracking in C.  (Generated from sql/src/.)

CREATE FUNCTION @extschema@._on_citus_worker() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN false;
    END IF;
    RETURN coalesce((SELECT g.groupid <> 0 FROM pg_catalog.pg_dist_local_group g), false);
END $$;

CREATE FUNCTION @extschema@._create_statement_tracking_triggers(events regclass, func text, args text) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER engagement_track_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_events '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)', events, func, args);
    EXECUTE format('CREATE TRIGGER engagement_track_update AFTER UPDATE ON %s '
                   'REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)', events, func, args);
    EXECUTE format('CREATE TRIGGER engagement_track_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_events '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)', events, func, args);
END $$;

CREATE OR REPLACE FUNCTION @extschema@._profile_check_events_relation() RETURNS trigger
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

CREATE OR REPLACE FUNCTION @extschema@._profile_replace_builtin_default() RETURNS trigger
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

CREATE OR REPLACE FUNCTION @extschema@._drop_tracking_triggers(events regclass) RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET citus.enable_unsafe_triggers = on AS $$
DECLARE
    made name;
    dropped integer := 0;
BEGIN
    FOR made IN SELECT t.tgname FROM pg_trigger t
                 WHERE t.tgrelid = events AND NOT t.tgisinternal
                   AND t.tgname IN ('engagement_track_change', 'engagement_track_insert', 'engagement_track_update',
                                    'engagement_track_delete', 'engagement_track_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', made, events);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.track_event_changes(events regclass, for_source regclass DEFAULT NULL,
                                                contact_column name DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact      name;
    citus_method "char";   -- 'h' a Citus distributed table, 'n' a reference or local one, NULL neither
BEGIN
    IF events IS NULL THEN
        RAISE EXCEPTION 'track_event_changes: events must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF events = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is always tracked' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = events) NOT IN ('r', 'p', 'f') THEN
        RAISE EXCEPTION '% is not a table: track the tables under it, naming the view as for_source', events
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('SELECT engagement.track_event_changes(''<table>'', for_source => %L);', events::text);
    END IF;
    IF for_source IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.event_sources s WHERE s.relation = for_source) THEN
        RAISE EXCEPTION '% has no event source to feed', for_source
            USING ERRCODE = 'undefined_object', HINT = 'Define it first: engagement.define_event_source.';
    END IF;
    -- the table's own contact column: given, or its own source's, or (a table under a view source)
    -- the view's
    contact := coalesce(contact_column,
                        (SELECT s.contact_column FROM @extschema@.event_sources s WHERE s.relation = events),
                        (@extschema@._source_of(coalesce(for_source, events))).contact_column);
    PERFORM @extschema@._tracked_relation_check(events, '', false, contact);
    -- the relation must be one a refresh may read (owner, columns) unless it only feeds another source
    IF for_source IS NULL THEN
        PERFORM @extschema@._events_relation_or_error(events);
    ELSE
        UPDATE @extschema@.event_sources s SET changes_from = s.changes_from || events
         WHERE s.relation = for_source AND NOT events = ANY (s.changes_from);
    END IF;
    citus_method := @extschema@._citus_method(events);
    IF citus_method <> 'h' THEN
        RAISE EXCEPTION '% is a Citus reference or local table, whose changes cannot be tracked', events
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Track a table distributed by its contact column (docs/scale-out.md).';
    END IF;
    PERFORM @extschema@._drop_tracking_triggers(events);   -- run again, it replaces the triggers it made
    -- a Citus distributed table: triggers on its shards (citus.sql)
    IF citus_method = 'h' THEN
        PERFORM @extschema@._citus_track(events, contact);
        RETURN;
    END IF;
    -- the relation itself or any partition (pg_partition_tree lists only partitioned tables' trees)
    IF EXISTS (SELECT FROM pg_class c
                WHERE c.relkind = 'f' AND c.oid IN (SELECT events UNION SELECT t.relid FROM pg_partition_tree(events) t)) THEN
        EXECUTE format('CREATE TRIGGER engagement_track_change AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION @extschema@._track_event_change(%L, %L)', events, contact, events::oid);
    ELSE
        PERFORM @extschema@._create_statement_tracking_triggers(events, '@extschema@._track_event_changes',
                                                                format('%L', contact));
    END IF;
    EXECUTE format('CREATE TRIGGER engagement_track_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes(%L)', events, contact);
END $$;

CREATE OR REPLACE FUNCTION @extschema@._bind_events_relation(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET citus.enable_ddl_propagation = off AS $$
DECLARE
    events text := @extschema@._profile_events_or_error(p);
    src @extschema@.event_sources := @extschema@._source_of(p.events_relation);
BEGIN
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN '(' || @extschema@._source_select(src, events) || ')';   -- in the extension's own schema
    END IF;
    EXECUTE 'CREATE TEMP VIEW _es_events AS ' || @extschema@._source_select(src, events);
    IF (SELECT array_agg(DISTINCT d.refobjid)
          FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE r.ev_class = 'pg_temp._es_events'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid <> r.ev_class) IS DISTINCT FROM ARRAY[p.events_relation::oid] THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" changed name while it was checked', p.events_relation, p.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN 'pg_temp._es_events';
END $$;

CREATE OR REPLACE FUNCTION @extschema@._track_event_changes() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_track_event_changes' LANGUAGE C SECURITY DEFINER;

CREATE FUNCTION @extschema@._unbind_events_relation(events text) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET citus.enable_ddl_propagation = off AS $$
BEGIN
    IF events = 'pg_temp._es_events' THEN
        DROP VIEW pg_temp._es_events;
    END IF;
END $$;

CREATE FUNCTION @extschema@._refresh_few_targets(p @extschema@.scoring_profiles) RETURNS boolean
LANGUAGE plpgsql STABLE STRICT PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT count(*) FROM pg_temp._es_targets) * 10
           <= coalesce((SELECT d.contacts FROM @extschema@.score_distributions d WHERE d.profile = p.name), 0);
END $$;

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
        -- (the targets' old composites through the key, in one index scan of all of them: joined,
        -- the planner would rather read every score of the profile)
        SELECT coalesce(array_agg(s.composite), '{}') INTO removed
          FROM @extschema@.engagement_scores s
         WHERE s.profile = p.name AND s.contact_id = ANY (ARRAY(SELECT t.contact_id FROM pg_temp._es_targets t));
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

CREATE OR REPLACE FUNCTION @extschema@._refresh_drain_changes(p @extschema@.scoring_profiles) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    feeds regclass[] := @extschema@._source_feeds(p.events_relation);
BEGIN
    -- (relation comes back as a number: on Citus the shards of the change log hold the
    -- coordinator's OIDs, which a worker must not turn into names of its own)
    CREATE TEMP TABLE _es_drained ON COMMIT DROP AS
    WITH moved AS (DELETE FROM @extschema@.event_changes RETURNING contact_id, relation::oid AS relation)
    SELECT DISTINCT contact_id, relation::regclass AS relation FROM moved;
    CREATE TEMP TABLE _es_changed (contact_id bigint) ON COMMIT DROP;
    INSERT INTO pg_temp._es_changed
    SELECT DISTINCT d.contact_id FROM pg_temp._es_drained d WHERE d.relation = ANY (feeds);
    -- A contact already pending is not listed again, unless its row is locked: being consumed by
    -- that profile's refresh, it may be gone when this one commits.  (Each profile's feeds are
    -- computed once, not per change.)
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT DISTINCT sp.name, d.contact_id
      FROM @extschema@.scoring_profiles sp
     CROSS JOIN LATERAL unnest(@extschema@._source_feeds(sp.events_relation)) f(relation)
      JOIN pg_temp._es_drained d ON d.relation = f.relation
     WHERE sp.name <> p.name
       AND NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr
                        WHERE pr.profile = sp.name AND pr.contact_id = d.contact_id
                          FOR KEY SHARE SKIP LOCKED);
    DROP TABLE pg_temp._es_drained;
END $$;

CREATE OR REPLACE FUNCTION @extschema@._refresh_score_contacts(p @extschema@.scoring_profiles, events text,
                                                    refresh_at timestamptz, full_refresh boolean,
                                                    few_targets boolean, OUT unmapped bigint,
                                                    OUT unmapped_kinds text[])
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src        @extschema@.event_sources := @extschema@._source_of(p.events_relation);
    typed_kind boolean := @extschema@._column_type(p.events_relation, src.kind_column) = '@extschema@.event_type'::regtype;
    -- A source whose kind is an event_type and whose contact and time are NOT NULL (engagement_events)
    -- has no row it could not score: nothing to count, and the scoring statement stays as lean as 1.3's.
    counted    boolean := NOT (typed_kind AND coalesce((SELECT bool_and(a.attnotnull) FROM pg_attribute a
                                                         WHERE a.attrelid = p.events_relation
                                                           AND a.attname IN (src.contact_column, src.time_column)), false));
BEGIN
    -- (Citus cannot run the lateral form on the workers: there the targets go in as a list)
    few_targets := few_targets AND @extschema@._citus_method(p.events_relation) IS NULL;
    EXECUTE format(CASE WHEN few_targets AND NOT full_refresh THEN $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT t.contact_id, (c.s).*, c.unmapped, c.unmapped_kind
          FROM pg_temp._es_targets t,
               LATERAL (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s,
                               %5$s AS unmapped, %4$s AS unmapped_kind
                          FROM %1$s e
                         WHERE e.contact_id = t.contact_id AND e.occurred_at <= $1) c
        $q$ ELSE $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT q.contact_id, (q.s).*, q.unmapped, q.unmapped_kind
          FROM (SELECT e.contact_id,
                       @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s,
                       %6$s AS unmapped, %4$s AS unmapped_kind
                  FROM %1$s e
                 WHERE %3$s
                 GROUP BY e.contact_id) q
        $q$ END,
        events,
        CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$2' ELSE '$3' END,
        CASE WHEN NOT full_refresh THEN 'e.occurred_at <= $1 AND e.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t)'
             WHEN counted THEN '(e.occurred_at <= $1 OR e.occurred_at IS NULL)'
             ELSE 'e.occurred_at <= $1' END,
        -- (a kind column of type event_type has no kinds to name; and an aggregate of the constant
        -- NULL::text would keep postgres_fdw from shipping the query: its collation is not a column's)
        CASE WHEN typed_kind THEN 'NULL::text' ELSE 'min(e.kind) FILTER (WHERE e.event_type IS NULL)' END,
        CASE WHEN counted THEN 'count(*) FILTER (WHERE e.event_type IS NULL)' ELSE '0::bigint' END,
        CASE WHEN counted THEN 'count(*) FILTER (WHERE e.contact_id IS NULL OR e.event_type IS NULL OR e.occurred_at IS NULL)'
             ELSE '0::bigint' END)
    USING refresh_at, p.name, to_jsonb(p);
    unmapped := 0;
    IF counted THEN
        SELECT coalesce(sum(s.unmapped), 0),
               (SELECT array_agg(k ORDER BY k) FROM (SELECT DISTINCT s2.unmapped_kind AS k FROM pg_temp._es_scored s2
                                                      WHERE s2.unmapped_kind IS NOT NULL ORDER BY 1 LIMIT 5) ks)
          INTO unmapped, unmapped_kinds
          FROM pg_temp._es_scored s WHERE s.unmapped > 0;
    END IF;
    -- (contacts whose every row was unmapped, rows without a contact, and targets without events
    -- have no score)
    IF counted OR (few_targets AND NOT full_refresh) THEN
        DELETE FROM pg_temp._es_scored s WHERE s.contact_id IS NULL OR s.event_count IS NULL;
    END IF;
    ALTER TABLE pg_temp._es_scored DROP COLUMN unmapped, DROP COLUMN unmapped_kind;
    -- Indexed, so that no join with it can go quadratic when the statistics of engagement_scores
    -- know nothing of this profile yet (a new profile's rows estimated at one).  Only the join
    -- column's statistics are of use to the plans that read it (all ~30 columns: 5x the time).
    CREATE UNIQUE INDEX ON pg_temp._es_scored (contact_id);
    ANALYZE pg_temp._es_scored (contact_id);
END $$;

CREATE OR REPLACE FUNCTION @extschema@._refresh_write_scores(p @extschema@.scoring_profiles, refresh_at timestamptz,
                                                  full_refresh boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rescored  bigint;
    nestloop  text := current_setting('enable_nestloop');
    hashjoin  text := current_setting('enable_hashjoin');
    mergejoin text := current_setting('enable_mergejoin');
BEGIN
    IF @extschema@._on_citus() THEN
        RETURN @extschema@._citus_write_scores(p, refresh_at, full_refresh);   -- the same, for Citus (citus.sql)
    END IF;
    -- Every join of a full refresh is of all the profile's scores, but the statistics of
    -- engagement_scores may know nothing of a new profile's rows (one row, the planner guesses):
    -- a nested loop over the materialized join would then be quadratic.
    IF full_refresh THEN
        PERFORM set_config('enable_nestloop', 'off', true);
    ELSIF @extschema@._refresh_few_targets(p) THEN
        -- (the targets' stored scores through the key)
        PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    END IF;
    EXECUTE format($q$
    WITH joined AS (
        -- (the distribution is joined, not passed in a variable: a 1.6 MB constant would be
        -- copied through the planner; joined, _count_below detoasts it once for all rows)
        SELECT n.*, s.contact_id AS gone_contact_id, s.composite AS prev_composite, s.segment AS prev_segment,
               s.score_version AS prev_version,
               CASE WHEN n.contact_id IS NULL THEN NULL
                    WHEN $3 AND d.contacts > 1
                    THEN 100 * (@extschema@._count_below(d.sorted_composites, n.composite)::float8 / (d.contacts - 1)::float8)
                    WHEN d.contacts > 1 THEN 100.0 * @extschema@._count_below(d.sorted_composites, n.composite) / (d.contacts - 1)
                    ELSE 0 END AS pct
          FROM pg_temp._es_scored n
          %s (SELECT * FROM @extschema@.engagement_scores s0 WHERE s0.profile = ($1).name) s ON s.contact_id = n.contact_id
          LEFT JOIN @extschema@.score_distributions d ON d.profile = ($1).name),
    upd AS (
        UPDATE @extschema@.engagement_scores cur
           SET composite = n.composite, recency = n.recency, frequency = n.frequency, monetary = n.monetary,
               time_decay = n.time_decay, diversity = n.diversity, engagement_probability = n.engagement_probability,
               conversion_probability = n.conversion_probability, churn_risk = n.churn_risk, segment = n.segment,
               opted_out = n.opted_out, event_count = n.event_count, engaging_count = n.engaging_count,
               conversion_total = n.conversion_total, first_event_at = n.first_event_at,
               last_engaged_at = n.last_engaged_at, expected_engagements_30d = n.expected_engagements_30d,
               expected_conversion_value = n.expected_conversion_value, expected_value_30d = n.expected_value_30d,
               percentile_rank = n.pct, score_version = cur.score_version + 1, profile_version = ($1).version,
               model_version = @extschema@.model_version(), calculated_at = $2
          FROM joined n
         WHERE n.contact_id IS NOT NULL AND n.prev_version IS NOT NULL
           AND cur.profile = ($1).name AND cur.contact_id = n.contact_id
        RETURNING 1),
    ins AS (
        INSERT INTO @extschema@.engagement_scores (profile, contact_id, composite, recency, frequency, monetary,
               time_decay, diversity, engagement_probability, conversion_probability, churn_risk, segment,
               opted_out, event_count, engaging_count, conversion_total, first_event_at, last_engaged_at,
               expected_engagements_30d, expected_conversion_value, expected_value_30d, percentile_rank,
               score_version, profile_version, model_version, calculated_at)
        SELECT ($1).name, n.contact_id, n.composite, n.recency, n.frequency, n.monetary, n.time_decay, n.diversity,
               n.engagement_probability, n.conversion_probability, n.churn_risk, n.segment, n.opted_out,
               n.event_count, n.engaging_count, n.conversion_total, n.first_event_at, n.last_engaged_at,
               n.expected_engagements_30d, n.expected_conversion_value, n.expected_value_30d, n.pct,
               1, ($1).version, @extschema@.model_version(), $2
          FROM joined n
         WHERE n.contact_id IS NOT NULL AND n.prev_version IS NULL
        RETURNING 1),
    hist AS (
        INSERT INTO @extschema@.engagement_score_history (profile, contact_id, composite, segment,
               previous_composite, previous_segment, score_version, recorded_at)
        SELECT ($1).name, n.contact_id, n.composite, n.segment, n.prev_composite, n.prev_segment,
               coalesce(n.prev_version + 1, 1), $2
          FROM joined n
         WHERE n.contact_id IS NOT NULL
           AND (n.prev_version IS NULL
                OR abs(n.composite - n.prev_composite) >= ($1).history_min_delta
                OR n.segment <> n.prev_segment)),
    gone AS (
        -- (full refresh: the stored scores of contacts no longer scored, found by their key)
        DELETE FROM @extschema@.engagement_scores s
         WHERE s.profile = ($1).name
           AND s.contact_id = ANY (ARRAY(SELECT n.gone_contact_id FROM joined n WHERE n.contact_id IS NULL)))
    SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)
    $q$, CASE WHEN full_refresh THEN 'FULL JOIN' ELSE 'LEFT JOIN' END)
    INTO rescored USING p, refresh_at, full_refresh;
    PERFORM set_config('enable_nestloop', nestloop, true), set_config('enable_hashjoin', hashjoin, true),
            set_config('enable_mergejoin', mergejoin, true);

    -- (uncorrelated subqueries of the temporary tables: on Citus they become intermediate results)
    IF NOT full_refresh THEN
        DELETE FROM @extschema@.engagement_scores s
         WHERE s.profile = p.name
           AND s.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t
                                 WHERE NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = t.contact_id));
    END IF;
    RETURN rescored;
END $$;

CREATE OR REPLACE FUNCTION @extschema@._refresh_keep_pending(p @extschema@.scoring_profiles, events text,
                                                  refresh_at timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format($q$
        INSERT INTO @extschema@.pending_rescore (profile, contact_id)
        SELECT $2, c.contact_id FROM pg_temp._es_targets c
         WHERE c.contact_id IN (SELECT e.contact_id FROM %s e
                                 WHERE e.occurred_at > $1 AND e.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t))
           AND NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = $2 AND pr.contact_id = c.contact_id)
        $q$, events)
    USING refresh_at, p.name;
END $$;

CREATE OR REPLACE FUNCTION @extschema@._refresh(profile text, "full" boolean, OUT rescored bigint, OUT full_refresh boolean,
                                     OUT unmapped bigint, OUT unmapped_kinds text[])
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
    src        @extschema@.event_sources;
    refresh_at timestamptz := now();   -- as of now(): the transaction's start
    events     text;                   -- the profile's events, bound (_bind_events_relation)
    last       record;                 -- the distribution of the last refresh
    aged       boolean;
    targets    bigint;
    saved_lock_timeout text;
BEGIN
    full_refresh := "full";
    -- Every statement sees what committed before it: what a refresh consumes and re-queues
    -- relies on it (under a snapshot taken once, a change drained meanwhile could be lost).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'refresh_scores runs at the READ COMMITTED isolation level, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- Read the profile under a lock that keeps it as it is until this refresh commits.
    SELECT * INTO p FROM @extschema@.scoring_profiles sp WHERE sp.name = _refresh.profile FOR SHARE;
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
        RETURN;
    END IF;
    events := @extschema@._bind_events_relation(p);

    PERFORM @extschema@._refresh_drain_changes(p);

    -- A profile changed since the last refresh (or never refreshed), or scores of another version
    -- of the model, rescore everyone.
    SELECT d.profile_version, d.model_version, d.oldest_score_at, d.contacts INTO last
      FROM @extschema@.score_distributions d WHERE d.profile = p.name;
    full_refresh := full_refresh OR last.profile_version IS DISTINCT FROM p.version
                    OR last.model_version IS DISTINCT FROM @extschema@.model_version();
    aged := last.oldest_score_at < refresh_at - p.max_score_age;

    targets := @extschema@._refresh_choose_targets(p, refresh_at, full_refresh, aged);
    SELECT c.unmapped, c.unmapped_kinds INTO unmapped, unmapped_kinds
      FROM @extschema@._refresh_score_contacts(p, events, refresh_at, full_refresh,
                                               coalesce(targets * 10 <= last.contacts, false)) c;
    -- Rows not scored: an error naming their kinds, or a WARNING with the count (and the count in
    -- refresh_runs).  For an SMS CRM an opt-out is a compliance matter: never lost silently.
    IF unmapped > 0 THEN
        src := @extschema@._source_of(p.events_relation);
        IF src.on_unmapped = 'reject' THEN
            RAISE EXCEPTION 'profile "%": % rows of % have a kind its source does not map (or no contact, no time, an invalid value): %', p.name, unmapped,
                            p.events_relation, coalesce(array_to_string(unmapped_kinds, ', '), '(no time or contact)')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Map them in engagement.event_kind_map (define_event_source), or set on_unmapped = ''count''.';
        END IF;
        RAISE WARNING 'profile "%": % rows of % were not scored: kinds not mapped (%), or no contact, no time or an invalid value',
                      p.name, unmapped, p.events_relation, coalesce(array_to_string(unmapped_kinds, ', '), 'none')
            USING HINT = 'Map the kinds in engagement.event_kind_map (define_event_source).';
    END IF;
    PERFORM @extschema@._refresh_distribution(p, refresh_at, full_refresh);
    rescored := @extschema@._refresh_write_scores(p, refresh_at, full_refresh);
    PERFORM @extschema@._refresh_keep_pending(p, events, refresh_at);

    -- oldest_score_at stays a lower bound of calculated_at (scores only get newer); after the
    -- age check rescored the old ones, it is recomputed.
    IF aged AND NOT full_refresh THEN
        UPDATE @extschema@.score_distributions d
           SET oldest_score_at = coalesce((SELECT min(s.calculated_at) FROM @extschema@.engagement_scores s
                                            WHERE s.profile = p.name), refresh_at)
         WHERE d.profile = p.name;
    END IF;

    -- Leave nothing behind for the rest of the transaction (another role may refresh in it).
    DROP TABLE pg_temp._es_scored, pg_temp._es_changed, pg_temp._es_targets;
    PERFORM @extschema@._unbind_events_relation(events);
END $$;

CREATE OR REPLACE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now(),
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
    events := @extschema@._bind_events_relation(p);
    -- One scan: each contact's summaries for both models, identical summaries collapsed with
    -- their count as weight (on postgres_fdw partitions the summaries are computed in each shard).
    EXECUTE format($q$
        WITH c AS MATERIALIZED (
            SELECT @extschema@.model_summary(e.event_type, e.occurred_at, e.conversion_value, $1) AS s
              FROM %s e
             WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        b AS (SELECT (c.s).x, (c.s).t_x, (c.s).t, count(*) AS contacts FROM c GROUP BY 1, 2, 3),
        g AS (SELECT (c.s).value_days AS x, (c.s).mean_value AS m, count(*) AS contacts
                FROM c WHERE (c.s).value_days > 0 GROUP BY 1, 2)
        SELECT (SELECT @extschema@.fit_mbgnbd(b.x, b.t_x, b.t, b.contacts::float8, $2) FROM b) AS mbg,
               (SELECT @extschema@.fit_gammagamma(g.x, g.m, g.contacts::float8, $2) FROM g) AS gg,
               (SELECT count(*) FROM c) AS contacts,
               (SELECT coalesce(sum(g.contacts), 0) FROM g) AS valued$q$, events)
    INTO res USING as_of, p.fit_penalizer;
    PERFORM @extschema@._unbind_events_relation(events);
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

CREATE OR REPLACE FUNCTION @extschema@._validation(calibration_end timestamptz, holdout_end timestamptz, profile text,
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
              FROM %1$s e WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
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
    PERFORM @extschema@._unbind_events_relation(events);
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

CREATE FUNCTION @extschema@._funnel_events() RETURNS regclass
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT p.events_relation FROM @extschema@.scoring_profiles p
                      WHERE p.name = 'default'
                        AND (SELECT count(*) FROM pg_attribute a
                              WHERE a.attrelid = p.events_relation AND a.attnum > 0 AND NOT a.attisdropped
                                AND (a.attname, a.atttypid) IN (('contact_id', 'pg_catalog.int8'::regtype),
                                                                ('campaign_id', 'pg_catalog.int8'::regtype),
                                                                ('event_type', '@extschema@.event_type'::regtype),
                                                                ('occurred_at', 'pg_catalog.timestamptz'::regtype))) = 4),
                    '@extschema@.engagement_events'::regclass)
$$;

CREATE OR REPLACE FUNCTION @extschema@.funnel(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
                                   until timestamptz DEFAULT 'infinity')
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL OR until IS NULL THEN
        RAISE EXCEPTION 'since and until must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- EXECUTE plans with the actual values: without a campaign the filter folds away, with one
    -- the campaign index is used.  (The events: _funnel_events.)
    RETURN QUERY EXECUTE format($q$
    WITH stages(stage, ord, in_chain) AS (
        VALUES ('delivered', 1, true), ('opened', 2, true), ('clicked', 3, true), ('responded', 4, true),
               ('converted', 5, true), ('opted_out', 6, false), ('bounced', 7, false)),
    pairs AS (   -- per (contact, campaign): the events of each stage, in the order of stages
        SELECT e.contact_id,
               ARRAY[count(*) FILTER (WHERE e.event_type = 'delivered'), count(*) FILTER (WHERE e.event_type = 'opened'),
                     count(*) FILTER (WHERE e.event_type = 'clicked'), count(*) FILTER (WHERE e.event_type = 'responded'),
                     count(*) FILTER (WHERE e.event_type = 'converted'), count(*) FILTER (WHERE e.event_type = 'opted_out'),
                     count(*) FILTER (WHERE e.event_type = 'bounced')] AS n
          FROM %s e
         WHERE e.campaign_id IS NOT NULL AND ($1 IS NULL OR e.campaign_id = $1)
           AND e.occurred_at >= $2 AND e.occurred_at < $3
         GROUP BY e.contact_id, e.campaign_id),
    depths AS (  -- how many stages of the chain, from delivered on, the pair reached
        SELECT p.contact_id, p.n,
               CASE WHEN p.n[1] = 0 THEN 0 WHEN p.n[2] = 0 THEN 1 WHEN p.n[3] = 0 THEN 2
                    WHEN p.n[4] = 0 THEN 3 WHEN p.n[5] = 0 THEN 4 ELSE 5 END AS depth
          FROM pairs p),
    counted AS (
        SELECT st.stage, st.ord, st.in_chain, count(DISTINCT d.contact_id) AS contacts,
               coalesce(sum(d.n[st.ord]), 0)::bigint AS events
          FROM stages st
          LEFT JOIN depths d ON d.n[st.ord] > 0
                            AND CASE st.stage WHEN 'opted_out' THEN d.depth >= 1 WHEN 'bounced' THEN true
                                              ELSE d.depth >= st.ord END
         GROUP BY st.stage, st.ord, st.in_chain)
    SELECT c.stage, c.contacts, c.events,
           CASE WHEN c.in_chain AND c.ord > 1
                THEN c.contacts::float8 / nullif(lag(c.contacts) OVER (PARTITION BY c.in_chain ORDER BY c.ord), 0) END,
           CASE WHEN c.stage <> 'bounced'
                THEN c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.stage = 'delivered'), 0) END
      FROM counted c ORDER BY c.ord
    $q$, @extschema@._funnel_events()) USING campaign_id, since, until;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.funnel_independent(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
                                               until timestamptz DEFAULT 'infinity')
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF since IS NULL OR until IS NULL THEN
        RAISE EXCEPTION 'since and until must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN QUERY EXECUTE format($q$
    WITH counts AS (
        SELECT e.event_type::text AS stage, count(DISTINCT e.contact_id) AS contacts, count(*) AS events
          FROM %s e
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
    $q$, @extschema@._funnel_events()) USING campaign_id, since, until;
END $$;

CREATE OR REPLACE FUNCTION @extschema@._source_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    relations regclass[];
    stamp     timestamptz := clock_timestamp();   -- (a value: Citus evaluates no volatile function in an UPDATE)
BEGIN
    -- (touching updated_at bumps the version: the profiles' next refreshes are full ones; each
    -- statement reads only the transition tables its event has, into a list, which Citus can
    -- send to the profiles' copies)
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.relation) INTO relations FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.relation) INTO relations FROM old_rows o;
    ELSE
        SELECT array_agg(r) INTO relations FROM (SELECT n.relation FROM new_rows n UNION SELECT o.relation FROM old_rows o) u(r);
    END IF;
    IF relations IS NOT NULL THEN
        UPDATE @extschema@.scoring_profiles sp SET updated_at = stamp WHERE sp.events_relation = ANY (relations);
    END IF;
    RETURN NULL;
END $$;

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
    INSERT INTO @extschema@.engagement_scores AS cur (profile, contact_id, composite, recency, frequency, monetary,
           time_decay, diversity, engagement_probability, conversion_probability, churn_risk, segment,
           opted_out, event_count, engaging_count, conversion_total, first_event_at, last_engaged_at,
           expected_engagements_30d, expected_conversion_value, expected_value_30d, percentile_rank,
           score_version, profile_version, model_version, calculated_at)
    SELECT p.name, n.contact_id, n.composite, n.recency, n.frequency, n.monetary, n.time_decay, n.diversity,
           n.engagement_probability, n.conversion_probability, n.churn_risk, n.segment, n.opted_out,
           n.event_count, n.engaging_count, n.conversion_total, n.first_event_at, n.last_engaged_at,
           n.expected_engagements_30d, n.expected_conversion_value, n.expected_value_30d, n.pct,
           n.new_score_version, p.version, @extschema@.model_version(), refresh_at
      FROM pg_temp._es_ranked n
    ON CONFLICT (profile, contact_id) DO UPDATE
       SET composite = excluded.composite, recency = excluded.recency, frequency = excluded.frequency,
           monetary = excluded.monetary, time_decay = excluded.time_decay, diversity = excluded.diversity,
           engagement_probability = excluded.engagement_probability,
           conversion_probability = excluded.conversion_probability, churn_risk = excluded.churn_risk,
           segment = excluded.segment, opted_out = excluded.opted_out, event_count = excluded.event_count,
           engaging_count = excluded.engaging_count, conversion_total = excluded.conversion_total,
           first_event_at = excluded.first_event_at, last_engaged_at = excluded.last_engaged_at,
           expected_engagements_30d = excluded.expected_engagements_30d,
           expected_conversion_value = excluded.expected_conversion_value,
           expected_value_30d = excluded.expected_value_30d, percentile_rank = excluded.percentile_rank,
           score_version = excluded.score_version, profile_version = excluded.profile_version,
           model_version = excluded.model_version, calculated_at = excluded.calculated_at;
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
    END IF;
    DROP TABLE pg_temp._es_prev, pg_temp._es_ranked;
    RETURN rescored;
END $$;

-- citus_distribute(events): the one way to run the extension on Citus (docs/scale-out.md).  While
-- it runs, unsafe triggers are allowed (its SET clause): the profiles' triggers run on every
-- placement of their reference table.
CREATE FUNCTION @extschema@.citus_distribute(events regclass) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET citus.enable_unsafe_triggers = on AS $$
DECLARE
    contact  name;
    method   "char";
    t        text;
    fk       record;
BEGIN
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
    UPDATE @extschema@.scoring_profiles p SET events_relation = events
     WHERE p.name = 'default' AND p.events_relation IS DISTINCT FROM events;
END $$;
COMMENT ON FUNCTION @extschema@.citus_distribute(regclass) IS
    'Lays the extension out on Citus (run once on the coordinator, by a superuser): distributes the events table by its contact column if it is not yet, and co-located with it the scores, their history and the change log; makes the profiles and the other small tables reference tables; tracks the events'' changes in their shards; points the default profile at the events';
REVOKE EXECUTE ON FUNCTION @extschema@.citus_distribute(regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.grant_application_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._role_or_error(role_name);
    -- (on Citus, a grant on the reference tables after one on the distributed tables needs one
    -- connection per worker: sequential for the rest of the transaction, as in fit_model)
    IF @extschema@._on_citus() THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
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
                    @extschema@.score_distributions, @extschema@.contact_scores, @extschema@.model_fits,
                    @extschema@.event_sources, @extschema@.event_kind_map, @extschema@.refresh_runs TO %s', role_name);
END $$;

CREATE OR REPLACE FUNCTION @extschema@.grant_admin_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._role_or_error(role_name);
    -- (on Citus, a grant on the reference tables after one on the distributed tables needs one
    -- connection per worker: sequential for the rest of the transaction, as in fit_model)
    IF @extschema@._on_citus() THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA @extschema@ TO %s', role_name);
    -- refresh_scores works in temporary tables
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %s', current_database(), role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean, text), @extschema@.fit_model(text, timestamptz, text),
                    @extschema@.schedule_refresh(text, text, text, text), @extschema@.unschedule_refresh(text),
                    @extschema@.track_event_changes(regclass, regclass, name), @extschema@.untrack_event_changes(regclass),
                    @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[]),
                    @extschema@._track_event_changes(), @extschema@._track_event_change(),
                    @extschema@._track_shard_changes(), @extschema@._track_distributed_truncate() TO %s', role_name);
    -- (on Citus the shards' tracking triggers are made on the workers, where Citus does not
    -- propagate a grant on an extension's function)
    IF @extschema@._on_citus() THEN
        IF EXISTS (SELECT FROM run_command_on_workers(format('GRANT EXECUTE ON FUNCTION @extschema@._track_shard_changes(),
                                                             @extschema@._track_distributed_truncate() TO %s', role_name)) w
                    WHERE NOT w.success) THEN
            RAISE EXCEPTION 'could not grant % the change tracking of distributed tables on every worker', role_name
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
END $$;

-- The admins of 1.4 (those who may attach the change-tracking triggers) may attach the Citus ones.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee FROM pg_proc p, aclexplode(p.proacl) a
              WHERE p.oid = '@extschema@._track_event_changes()'::regprocedure AND a.privilege_type = 'EXECUTE'
                AND a.grantee <> 0 AND a.grantee <> (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'engagement_scoring')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@._track_shard_changes(), @extschema@._track_distributed_truncate() TO %s',
                       g.grantee::regrole);
    END LOOP;
END $$;
