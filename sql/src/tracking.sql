-- tracking.sql: change tracking (the triggers that feed event_changes) and the events relation a
-- profile reads.

------------------------------------------------------------------------------------------------
-- The events relation of a profile: engagement_events, or a CRM's own table with the columns
-- contact_id bigint, event_type engagement.event_type, occurred_at timestamptz and
-- conversion_value numeric (for example hash-partitioned by contact_id into postgres_fdw
-- foreign partitions: docs/scale-out.md).  refresh_scores and fit_model read it.
------------------------------------------------------------------------------------------------
-- The events relation of a profile, checked before a refresh or a fit reads it (its name, quoted
-- and qualified).  A refresh may run as a superuser (pg_cron) while a less privileged admin role
-- chose the relation: so only tables (plain, partitioned, foreign) owned by the caller or by a
-- superuser, with exactly the columns read; never a view, whose functions would run as the caller.
-- (The role that chose the relation is checked by _profile_events_or_error.)
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

-- A profile's events relation, checked before a refresh or a fit reads it: the role that chose it
-- must still be allowed to read it (privileges may have been revoked since), and it must be a
-- relation _events_relation_or_error accepts.  Returns its name, quoted and qualified.
CREATE FUNCTION @extschema@._profile_events_or_error(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p.events_relation <> '@extschema@.engagement_events'::regclass AND NOT coalesce(
           EXISTS (SELECT FROM pg_roles r WHERE r.rolname = p.events_relation_set_by) AND
           has_schema_privilege(p.events_relation_set_by,
                                (SELECT c.relnamespace FROM pg_class c WHERE c.oid = p.events_relation), 'USAGE')
           AND has_table_privilege(p.events_relation_set_by, p.events_relation, 'SELECT'), false) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" was set by %, which may not read it',
                        p.events_relation, p.name,
                        coalesce('role ' || quote_ident(nullif(p.events_relation_set_by, '')), 'a role not recorded (before 1.3)')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('As a role that may read it: UPDATE engagement.scoring_profiles SET events_relation_set_by = current_user WHERE name = %L;',
                                p.name);
    END IF;
    -- With row-level security, that role may read fewer rows than a refreshing superuser sees.
    IF p.events_relation <> '@extschema@.engagement_events'::regclass
       AND EXISTS (SELECT FROM pg_class c
                    WHERE c.relrowsecurity
                      AND c.oid IN (SELECT p.events_relation UNION SELECT t.relid FROM pg_partition_tree(p.events_relation) t))
       AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = p.events_relation_set_by AND (r.rolsuper OR r.rolbypassrls)) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" has row-level security, which role % does not bypass',
                        p.events_relation, p.name, quote_ident(p.events_relation_set_by)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A refresh would score rows that role cannot read: score a relation without row-level security, or have a role that bypasses it set events_relation.';
    END IF;
    RETURN @extschema@._events_relation_or_error(p.events_relation);
END $$;

-- The events relation a refresh or a fit reads, checked (_profile_events_or_error) and bound by OID
-- for the rest of the transaction: a temporary view over it, so that a schema renamed after the
-- check cannot put another relation (or a view whose functions would run as the refreshing role)
-- under the same name.  Returns the name to read; the caller drops pg_temp._es_events.
CREATE FUNCTION @extschema@._bind_events_relation(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    events text := @extschema@._profile_events_or_error(p);
BEGIN
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN events;   -- in the extension's own schema
    END IF;
    EXECUTE format('CREATE TEMP VIEW _es_events AS SELECT e.contact_id, e.event_type, e.occurred_at, e.conversion_value FROM %s e',
                   events);
    IF (SELECT array_agg(DISTINCT d.refobjid)
          FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE r.ev_class = 'pg_temp._es_events'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid <> r.ev_class) IS DISTINCT FROM ARRAY[p.events_relation::oid] THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" changed name while it was checked', p.events_relation, p.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN 'pg_temp._es_events';
END $$;

------------------------------------------------------------------------------------------------
-- Change tracking of engagement_events, and of any events relation track_event_changes is
-- given: statement-level triggers with transition tables (row-level ones where foreign partitions
-- cannot collect transition tuples).  The trigger functions run as their owner (SECURITY DEFINER):
-- the change log is written by them alone, never directly by the roles that write events.
------------------------------------------------------------------------------------------------
-- The trigger that fired a change-tracking function on a relation other than engagement_events.
-- The functions run as their owner, so nothing of the caller's may be evaluated in them: the
-- relation's contact_id must be bigint itself (no user-defined type, cast or operator), and a
-- statement-level trigger must name its transition tables new_events and old_events (were they
-- missing, those names would find the caller's temporary views).
CREATE FUNCTION @extschema@._tracked_relation_check(rel oid, trigger_name name, transition_tables boolean)
RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute a
                    WHERE a.attrelid = rel AND a.attname = 'contact_id' AND a.atttypid = 'pg_catalog.int8'::regtype
                      AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'change tracking of % needs a column contact_id of type bigint', rel::regclass
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF transition_tables AND NOT EXISTS (
           SELECT FROM pg_trigger t
            WHERE t.tgrelid = rel AND t.tgname = trigger_name
              AND ((t.tgtype & 4) = 0 OR t.tgnewtable = 'new_events')      -- INSERT
              AND ((t.tgtype & 16) = 0 OR (t.tgnewtable = 'new_events' AND t.tgoldtable = 'old_events'))   -- UPDATE
              AND ((t.tgtype & 8) = 0 OR t.tgoldtable = 'old_events')) THEN   -- DELETE
        RAISE EXCEPTION 'change-tracking trigger % on % must name its transition tables new_events and old_events',
                        trigger_name, rel::regclass
            USING ERRCODE = 'invalid_object_definition',
                  HINT = 'Let track_event_changes create the triggers.';
    END IF;
END $$;

-- Another relation's rows have no id to pair old and new versions by: an UPDATE there marks every
-- contact it touched.  (1.2's track_event_changes passed 'any_update' for that; it is implied.)
CREATE FUNCTION @extschema@._track_event_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_RELID <> '@extschema@.engagement_events'::regclass THEN
        PERFORM @extschema@._tracked_relation_check(TG_RELID, TG_NAME, TG_OP <> 'TRUNCATE');
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @extschema@.event_changes (contact_id) SELECT DISTINCT contact_id FROM new_events;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO @extschema@.event_changes (contact_id) SELECT DISTINCT contact_id FROM old_events;
    ELSIF TG_OP = 'UPDATE' AND TG_RELID <> '@extschema@.engagement_events'::regclass THEN
        INSERT INTO @extschema@.event_changes (contact_id)
        SELECT contact_id FROM old_events UNION SELECT contact_id FROM new_events;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only updates of what the model reads make a contact's score stale.  EXECUTE plans the
        -- join for this statement's transition tables: a plan kept from a one-row UPDATE would
        -- join thousands of rows by nested loops.
        EXECUTE $q$
        INSERT INTO @extschema@.event_changes (contact_id)
        SELECT c FROM (SELECT o.contact_id, n.contact_id
                         FROM old_events o JOIN new_events n USING (id)
                        WHERE (o.contact_id, o.event_type, o.occurred_at, o.conversion_value)
                              IS DISTINCT FROM (n.contact_id, n.event_type, n.occurred_at, n.conversion_value)) ch(a, b),
                      LATERAL (VALUES (ch.a), (ch.b)) v(c)
         GROUP BY c$q$;
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


-- Foreign partitions cannot hand rows to transition tables ("cannot collect transition tuples
-- from child foreign tables"): a relation with any gets row-level triggers instead (which also
-- turns off postgres_fdw's batch inserts while they exist; docs/scale-out.md).
CREATE FUNCTION @extschema@._track_event_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION '_track_event_change is a row-level trigger function' USING ERRCODE = 'invalid_object_definition';
    END IF;
    PERFORM @extschema@._tracked_relation_check(TG_RELID, TG_NAME, false);
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO @extschema@.event_changes (contact_id) VALUES (OLD.contact_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.contact_id IS DISTINCT FROM OLD.contact_id) THEN
        INSERT INTO @extschema@.event_changes (contact_id) VALUES (NEW.contact_id);
    END IF;
    RETURN NULL;
END $$;
-- Only superusers and admins (grant_admin_access, for track_event_changes) may attach them to a
-- relation: attached to a table of its own, a role could otherwise write the change log.
REVOKE EXECUTE ON FUNCTION @extschema@._track_event_changes(), @extschema@._track_event_change() FROM PUBLIC;

CREATE FUNCTION @extschema@.track_event_changes(events regclass) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    made name;
BEGIN
    IF events = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is always tracked' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._events_relation_or_error(events);   -- what a refresh will accept to read
    -- Run again (after attaching partitions, say), it replaces the triggers it made.
    FOR made IN SELECT t.tgname FROM pg_trigger t
                 WHERE t.tgrelid = events AND NOT t.tgisinternal
                   AND t.tgname IN ('engagement_track_change', 'engagement_track_insert', 'engagement_track_update',
                                    'engagement_track_delete', 'engagement_track_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', made, events);
    END LOOP;
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
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes()', events);
        EXECUTE format('CREATE TRIGGER engagement_track_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes()', events);
    END IF;
    EXECUTE format('CREATE TRIGGER engagement_track_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._track_event_changes()', events);
END $$;
COMMENT ON FUNCTION @extschema@.track_event_changes(regclass) IS
    'Adds (or replaces) change-tracking triggers on a profile''s own events relation (run it again after attaching partitions), so incremental refreshes see the changes written through this server';
REVOKE EXECUTE ON FUNCTION @extschema@.track_event_changes(regclass) FROM PUBLIC;
