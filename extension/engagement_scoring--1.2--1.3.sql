-- engagement_scoring 1.2 -> 1.3.  refresh_scores in named steps; from 1.3 on CREATE EXTENSION runs one
-- install script built from sql/src/.
-- Fixes: changes no longer lost by a refresh (pending contacts with events still in the future stay
-- pending); a profile reads only an events relation the role that set it may read; the change log is
-- written by the change-tracking triggers alone; only roles that may write score_distributions can
-- hold refreshes off (a skipped refresh returns NULL); refreshes of two profiles cannot deadlock;
-- NaN conversion values are refused; no quadratic plan in a new profile's first refreshes or in
-- tracking a large UPDATE.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.3'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- engagement_events: a NaN conversion value passed the value check (NaN >= 0 holds for numeric)
-- and then failed every refresh.  The update stops if such rows exist: they are the user's to correct.
------------------------------------------------------------------------------------------------
DO $$
DECLARE
    nan_rows bigint;
BEGIN
    SELECT count(*) INTO nan_rows FROM @extschema@.engagement_events e WHERE e.conversion_value = 'NaN';
    IF nan_rows > 0 THEN
        RAISE EXCEPTION 'engagement_events has % rows whose conversion_value is NaN: they cannot be scored', nan_rows
            USING ERRCODE = 'check_violation',
                  HINT = 'Correct or delete them (WHERE conversion_value = ''NaN''), then run ALTER EXTENSION engagement_scoring UPDATE again.';
    END IF;
END $$;
ALTER TABLE @extschema@.engagement_events
    ADD CONSTRAINT engagement_events_value_is_number CHECK (conversion_value <> 'NaN');


------------------------------------------------------------------------------------------------
-- scoring_profiles: who chose an events relation.  1.2 did not record it: a profile reading another
-- relation is refused by refreshes and fits (42501) until a role that may read it sets it again.
------------------------------------------------------------------------------------------------
ALTER TABLE @extschema@.scoring_profiles ADD COLUMN events_relation_set_by text;
COMMENT ON COLUMN @extschema@.scoring_profiles.events_relation_set_by IS
    'The role that set events_relation (NULL for engagement_events,  when set before 1.3): a refresh reads the relation only while that role may';
ALTER TABLE @extschema@.scoring_profiles DISABLE TRIGGER scoring_profiles_bump_version;
UPDATE @extschema@.scoring_profiles sp SET events_relation_set_by = ''
 WHERE sp.events_relation <> '@extschema@.engagement_events'::regclass;
ALTER TABLE @extschema@.scoring_profiles ENABLE TRIGGER scoring_profiles_bump_version;
DO $$
DECLARE
    profiles text;
BEGIN
    SELECT string_agg(format('%I (%s)', sp.name, sp.events_relation), ', ' ORDER BY sp.name) INTO profiles
      FROM @extschema@.scoring_profiles sp WHERE sp.events_relation <> '@extschema@.engagement_events'::regclass;
    IF profiles IS NOT NULL THEN
        RAISE WARNING 'scoring profiles % read another events relation, chosen before 1.3 recorded by whom: their refreshes and fits fail until it is set again', profiles
            USING HINT = 'As a role that may read the relation: UPDATE engagement.scoring_profiles SET events_relation_set_by = current_user WHERE name = ...;';
    END IF;
END $$;

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
    NEW.events_relation_set_by := current_user;
    RETURN NEW;
END $$;
CREATE TRIGGER scoring_profiles_check_events_relation BEFORE INSERT OR UPDATE ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_check_events_relation();

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
-- pending_rescore: no unique key (refreshes of two profiles could deadlock on each other's rows)
------------------------------------------------------------------------------------------------
ALTER TABLE @extschema@.pending_rescore DROP CONSTRAINT pending_rescore_pkey;
-- refresh_scores consumes a profile's rows; contact_scores looks one contact up.
CREATE INDEX pending_rescore_profile_contact_idx ON @extschema@.pending_rescore (profile, contact_id);

------------------------------------------------------------------------------------------------
-- Change tracking: the trigger functions run as their owner (the log is written by them alone); a
-- large UPDATE is joined with a plan of its own; track_event_changes replaces its triggers.
------------------------------------------------------------------------------------------------
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

CREATE OR REPLACE FUNCTION @extschema@._track_event_changes() RETURNS trigger
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

CREATE OR REPLACE FUNCTION @extschema@._track_event_change() RETURNS trigger
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

CREATE OR REPLACE FUNCTION @extschema@.track_event_changes(events regclass) RETURNS void
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
-- 1.2 let any role attach these functions to a table of its own; such triggers now run as the owner
-- (checked at every firing, but still able to write the change log): list them.
DO $$
DECLARE
    triggers text;
BEGIN
    SELECT string_agg(format('%I on %s', t.tgname, t.tgrelid::regclass), ', ' ORDER BY 1) INTO triggers
      FROM pg_trigger t
     WHERE t.tgfoid IN ('@extschema@._track_event_changes()'::regprocedure, '@extschema@._track_event_change()'::regprocedure)
       AND t.tgrelid <> '@extschema@.engagement_events'::regclass;
    IF triggers IS NOT NULL THEN
        RAISE WARNING 'change-tracking triggers outside engagement_events: %; from 1.3 they run as the extension''s owner', triggers
            USING HINT = 'Keep those track_event_changes made for a profile''s events relation (run it again to renew them); drop any other.';
    END IF;
END $$;

------------------------------------------------------------------------------------------------
-- Access: the application role inserts every column of an event but its id, and no longer writes the
-- change log; admins may run track_event_changes.  Roles granted by 1.2 keep their grants until
-- grant_*_access runs again for them (a grant made by this script would not survive pg_dump).
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._role_or_error(role_name regrole) RETURNS regrole
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = role_name) THEN
        RAISE EXCEPTION 'role with OID % does not exist', role_name::oid USING ERRCODE = 'undefined_object';
    END IF;
    RETURN role_name;
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
                    @extschema@.score_distributions, @extschema@.contact_scores TO %s', role_name);
END $$;
COMMENT ON FUNCTION @extschema@.grant_application_access(regrole) IS
    'Lets a role insert and read events, read scores, history and profiles, and call the scoring and query functions';

CREATE OR REPLACE FUNCTION @extschema@.grant_admin_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._role_or_error(role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA @extschema@ TO %s', role_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA @extschema@ TO %s', role_name);
    -- refresh_scores works in temporary tables
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %s', current_database(), role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean), @extschema@.fit_model(text, timestamptz),
                    @extschema@.schedule_refresh(text, text, text, text), @extschema@.unschedule_refresh(text),
                    @extschema@.track_event_changes(regclass), @extschema@._track_event_changes(),
                    @extschema@._track_event_change() TO %s', role_name);
END $$;
COMMENT ON FUNCTION @extschema@.grant_admin_access(regrole) IS
    'Lets a role do everything: events, profiles, scores, refresh_scores, fitting and scheduling';
DO $$
DECLARE
    roles text;
BEGIN
    SELECT string_agg(DISTINCT acl.grantee::regrole::text, ', ') INTO roles
      FROM pg_class c, aclexplode(c.relacl) acl
     WHERE c.oid = '@extschema@.event_changes'::regclass AND acl.privilege_type = 'INSERT'
       AND acl.grantee <> c.relowner
       AND NOT has_table_privilege(acl.grantee, '@extschema@.event_changes'::regclass, 'DELETE');
    IF roles IS NOT NULL THEN
        RAISE WARNING 'roles % were given application access by an older version: they can still write the change log and event ids', roles
            USING HINT = 'Run SELECT engagement.grant_application_access(role) for each of them.';
    END IF;
END $$;

------------------------------------------------------------------------------------------------
-- The first refresh of each profile after the update is a full one: 1.2 could lose changes
------------------------------------------------------------------------------------------------
UPDATE @extschema@.score_distributions SET profile_version = 0;

------------------------------------------------------------------------------------------------
-- refresh_scores in named steps
------------------------------------------------------------------------------------------------
------------------------------------------------------------------------------------------------
-- The steps of a refresh
------------------------------------------------------------------------------------------------
-- Drains the change log into pg_temp._es_changed (only the rows this snapshot sees: later ones
-- wait for the next refresh).  The refreshed profile takes them directly; the other profiles get
-- them in their pending sets (pending_rescore has no unique key: nothing waits on another
-- refresh's rows there).
CREATE FUNCTION @extschema@._refresh_drain_changes(p @extschema@.scoring_profiles) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CREATE TEMP TABLE _es_changed (contact_id bigint) ON COMMIT DROP;
    WITH moved AS (DELETE FROM @extschema@.event_changes RETURNING contact_id)
    INSERT INTO pg_temp._es_changed SELECT DISTINCT contact_id FROM moved;
    -- A contact already pending is not listed again, unless its row is locked: being consumed by
    -- that profile's refresh, it may be gone when this one commits.
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT sp.name, c.contact_id
      FROM pg_temp._es_changed c CROSS JOIN @extschema@.scoring_profiles sp
     WHERE sp.name <> p.name
       AND NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr
                        WHERE pr.profile = sp.name AND pr.contact_id = c.contact_id
                          FOR KEY SHARE SKIP LOCKED);
END $$;

-- The contacts to rescore, into pg_temp._es_targets: the profile's pending contacts (consumed
-- here) and the changed ones, and on an incremental refresh those whose score grew older than
-- max_score_age (the scores are scanned for those only when the oldest one may have: aged).
-- A full refresh rescores every contact; its targets are only what _refresh_keep_pending must
-- look at again, and include the other profiles' pending contacts: every contact with events not
-- yet due is pending for some profile (or still in the change log), also those drained before
-- this profile existed.  Returns how many targets.
CREATE FUNCTION @extschema@._refresh_choose_targets(p @extschema@.scoring_profiles, refresh_at timestamptz,
                                                    full_refresh boolean, aged boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    targets bigint;
BEGIN
    CREATE TEMP TABLE _es_targets (contact_id bigint PRIMARY KEY) ON COMMIT DROP;
    -- (rows another refresh's drain holds, to not list a contact twice, stay for the next refresh:
    -- waiting for them would hold this refresh until that one commits)
    WITH consumed AS (
        DELETE FROM @extschema@.pending_rescore pr
         WHERE pr.ctid = ANY (ARRAY(SELECT l.ctid FROM @extschema@.pending_rescore l
                                     WHERE l.profile = p.name FOR UPDATE SKIP LOCKED))
        RETURNING pr.contact_id)
    INSERT INTO pg_temp._es_targets
    SELECT contact_id FROM consumed
     UNION
    SELECT contact_id FROM pg_temp._es_changed
     UNION
    SELECT s.contact_id FROM @extschema@.engagement_scores s
     WHERE aged AND NOT full_refresh AND s.profile = p.name AND s.calculated_at < refresh_at - p.max_score_age
     UNION
    SELECT pr.contact_id FROM @extschema@.pending_rescore pr WHERE full_refresh AND pr.profile <> p.name;
    GET DIAGNOSTICS targets = ROW_COUNT;
    ANALYZE pg_temp._es_targets;
    RETURN targets;
END $$;

-- Scores the targets (every contact of the events relation on a full refresh) as of refresh_at
-- into pg_temp._es_scored, one column per score field.  Every contact, or many targets: one scan
-- of the events grouped by contact (CREATE TABLE AS may run it in parallel).  A few targets (at
-- most a tenth of the scored contacts): each one's events through the (contact_id, occurred_at)
-- index, which the planner would price as random reads and forgo although they are cached.
-- Scoring engagement_events looks the profile up by name; any other relation (partitioned,
-- foreign, another server's) gets the profile's values with the query, as a document.
CREATE FUNCTION @extschema@._refresh_score_contacts(p @extschema@.scoring_profiles, events text,
                                                    refresh_at timestamptz, full_refresh boolean,
                                                    few_targets boolean) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format(CASE WHEN few_targets AND NOT full_refresh THEN $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT t.contact_id, (c.s).*
          FROM pg_temp._es_targets t,
               LATERAL (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s
                          FROM %1$s e
                         WHERE e.contact_id = t.contact_id AND e.occurred_at <= $1) c
         WHERE (c.s).event_count IS NOT NULL   -- not "c.s IS NOT NULL": that needs every field non-NULL
        $q$ ELSE $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT q.contact_id, (q.s).*
          FROM (SELECT e.contact_id,
                       @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s
                  FROM %1$s e
                 WHERE e.occurred_at <= $1%3$s
                 GROUP BY e.contact_id) q
        $q$ END,
        events,
        CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$2' ELSE '$3' END,
        CASE WHEN NOT full_refresh THEN ' AND e.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t)' END)
    USING refresh_at, p.name, to_jsonb(p);
    -- Indexed, so that no join with it can go quadratic when the statistics of engagement_scores
    -- know nothing of this profile yet (a new profile's rows estimated at one).
    CREATE UNIQUE INDEX ON pg_temp._es_scored (contact_id);
    ANALYZE pg_temp._es_scored;
END $$;

-- The distribution as of this refresh, before the scores are written so that they can carry
-- their percentiles: all composites after a full refresh, else the last distribution with the
-- targets' old composites replaced by their new ones (a linear merge).
CREATE FUNCTION @extschema@._refresh_distribution(p @extschema@.scoring_profiles, refresh_at timestamptz,
                                                  full_refresh boolean) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed float8[];   -- composites leaving the distribution
    added   float8[];   -- composites entering it
BEGIN
    SELECT coalesce(array_agg(n.composite), '{}') INTO added FROM pg_temp._es_scored n;
    IF full_refresh THEN
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

-- Writes the scores of pg_temp._es_scored with their percentiles: UPDATE the contacts already
-- scored, INSERT the new ones (only a refresh writes this table, under its lock, so no upsert is
-- needed), keep the history of the moves worth keeping (and of every first score), and remove
-- the scores of contacts that no longer have any event (their composites already left the
-- distribution).  Returns how many contacts were scored.
CREATE FUNCTION @extschema@._refresh_write_scores(p @extschema@.scoring_profiles, refresh_at timestamptz,
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

-- A target (a changed or pending contact) may have events after refresh_at (dated in the future,
-- or committed after this transaction started): they were not scored now, so it stays pending,
-- however many refreshes come before those events are due.
CREATE FUNCTION @extschema@._refresh_keep_pending(p @extschema@.scoring_profiles, events text,
                                                  refresh_at timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format($q$
        INSERT INTO @extschema@.pending_rescore (profile, contact_id)
        SELECT $2, c.contact_id FROM pg_temp._es_targets c
         WHERE EXISTS (SELECT FROM %s e WHERE e.contact_id = c.contact_id AND e.occurred_at > $1)
           AND NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = $2 AND pr.contact_id = c.contact_id)
        $q$, events)
    USING refresh_at, p.name;
END $$;

------------------------------------------------------------------------------------------------
-- refresh_scores
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
            INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version, refreshed_at)
            VALUES (p.name, '', 0, 0, refresh_at) ON CONFLICT DO NOTHING;
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

    -- A profile changed since the last refresh (or never refreshed) rescores everyone.
    SELECT d.profile_version, d.oldest_score_at, d.contacts INTO last
      FROM @extschema@.score_distributions d WHERE d.profile = p.name;
    do_full := do_full OR last.profile_version IS DISTINCT FROM p.version;
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
COMMENT ON FUNCTION @extschema@.refresh_scores(text, boolean) IS
    'Rescores a profile''s contacts (from its events_relation) as of now(): all of them (full, or after a profile change), else those whose events changed or whose score is older than max_score_age; returns how many, or NULL when another refresh of the profile is running';

------------------------------------------------------------------------------------------------
-- fit_model reads the events relation only while the role that chose it may
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now())
RETURNS @extschema@.model_fit
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
DECLARE
    p   @extschema@.scoring_profiles;
    fit @extschema@.model_fit;
    res record;
    repeaters bigint;
    events text;   -- the profile's events relation, bound (_bind_events_relation)
BEGIN
    p := @extschema@._profile_or_error(profile);
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- NO KEY UPDATE: other profiles' refreshes (FOR KEY SHARE through the foreign keys) go on.
    PERFORM FROM @extschema@.scoring_profiles sp WHERE sp.name = p.name FOR NO KEY UPDATE;
    events := @extschema@._bind_events_relation(p);
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
                 GROUP BY 1, 2, 3) s$q$, events)
    INTO res USING as_of;
    IF events = 'pg_temp._es_events' THEN DROP VIEW pg_temp._es_events; END IF;
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
