-- tracking.sql: change tracking (the triggers that feed event_changes) and the events relation a
-- profile reads.

------------------------------------------------------------------------------------------------
-- The events relation of a profile: engagement_events, or a CRM's own table (plain, partitioned,
-- foreign) or view, read as its row of event_sources says (without one: the columns contact_id,
-- event_type engagement.event_type, occurred_at and conversion_value).  Every reader of events
-- (refresh_scores, fit_model, validate_model, the per-contact functions) goes through
-- _source_select, so they all read the same rows the same way.
------------------------------------------------------------------------------------------------
-- Whether a role (that exists) may read a relation: SELECT on it and USAGE on its schema.
CREATE FUNCTION @extschema@._role_may_read(role_name text, rel regclass) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role_name)
                    AND has_schema_privilege(role_name, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = rel), 'USAGE')
                    AND has_table_privilege(role_name, rel, 'SELECT'), false)
$$;

-- The source of a relation: its row of event_sources, or the defaults (engagement_events' columns).
CREATE FUNCTION @extschema@._source_of(events regclass) RETURNS @extschema@.event_sources
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src @extschema@.event_sources;
BEGIN
    SELECT * INTO src FROM @extschema@.event_sources s WHERE s.relation = events;
    IF NOT FOUND THEN
        src.relation := events;
        src.contact_column := 'contact_id';
        src.kind_column := 'event_type';
        src.time_column := 'occurred_at';
        src.value_column := 'conversion_value';
        src.kind_match := 'exact';
        src.on_unmapped := 'count';
        src.changes_from := '{}';
        src.campaign_column := 'campaign_id';   -- (when the relation has one: _source_select)
    END IF;
    RETURN src;
END $$;

-- The relations whose tracked changes make a source's scores stale: the relation itself (a
-- partitioned one stands for its partitions) unless it is a view, and its changes_from.
CREATE FUNCTION @extschema@._source_feeds(events regclass) RETURNS regclass[]
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN c.relkind = 'v' THEN s.changes_from ELSE events || s.changes_from END
      FROM pg_class c, @extschema@._source_of(events) s
     WHERE c.oid = events
$$;

-- The column of a relation, or NULL.
CREATE FUNCTION @extschema@._column_type(rel regclass, col name) RETURNS regtype
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.atttypid::regtype FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0
       AND NOT a.attisdropped
$$;

-- A source checked against its relation: the columns exist with types the model can read
-- without running anything of the relation owner's (built-in integer, timestamptz and numeric
-- types; the kind as engagement.event_type or through the kind map).  Raises 42703 or 42804.
CREATE FUNCTION @extschema@._source_check(src @extschema@.event_sources) RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col record;
    typ regtype;
BEGIN
    FOR col IN SELECT * FROM (VALUES ('contact', src.contact_column, ARRAY['smallint', 'integer', 'bigint']::regtype[]),
                                     ('time', src.time_column, ARRAY['timestamp with time zone']::regtype[]),
                                     ('value', src.value_column, ARRAY['numeric', 'smallint', 'integer', 'bigint', 'real', 'double precision']::regtype[]),
                                     -- (a source without a row of event_sources has a campaign_id, or none)
                                     ('campaign', CASE WHEN src.created_at IS NOT NULL
                                                            OR @extschema@._column_type(src.relation, src.campaign_column) IS NOT NULL
                                                       THEN src.campaign_column END,
                                      ARRAY['smallint', 'integer', 'bigint']::regtype[]),
                                     ('kind', src.kind_column, ARRAY['@extschema@.event_type', 'text', 'character varying',
                                                                     'character', 'name']::regtype[])) v(what, name, types)
                WHERE v.name IS NOT NULL
    LOOP
        typ := @extschema@._column_type(src.relation, col.name);
        IF typ IS NULL THEN
            RAISE EXCEPTION 'events relation % has no column % (its % column)', src.relation, quote_ident(col.name), col.what
                USING ERRCODE = 'undefined_column',
                      HINT = 'Name its columns in engagement.event_sources (define_event_source).';
        END IF;
        IF col.types IS NOT NULL AND NOT typ = ANY (col.types) THEN
            RAISE EXCEPTION 'the % column % of events relation % is %, not one of %', col.what, quote_ident(col.name),
                            src.relation, typ, col.types
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
END $$;

-- A CRM's kind as an event type, through a kind map given as two arrays (the kinds and their
-- types): one binary search per row, however many kinds the map has.  NULL: unmapped.
CREATE FUNCTION @extschema@._map_kind(kind text, kinds text[], types @extschema@.event_type[])
RETURNS @extschema@.event_type
AS 'MODULE_PATHNAME', 'es_map_kind' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The kind column as an event type: the column itself when it is engagement.event_type, else a
-- lookup in the source's kind map (_map_kind, the map as constants; trim_lower compares trimmed,
-- lower-cased kinds), NULL for a kind the map lacks or ignores.  And the condition that a row's
-- kind is one the map ignores (mapped to NULL), 'false' when it ignores none.
CREATE FUNCTION @extschema@._source_kind_expr(src @extschema@.event_sources, OUT event_type text, OUT ignored text)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind  text := 'e.' || quote_ident(src.kind_column);
    kinds text[];
    types @extschema@.event_type[];
    skip  text[];
BEGIN
    IF @extschema@._column_type(src.relation, src.kind_column) = '@extschema@.event_type'::regtype THEN
        event_type := kind;
        ignored := 'false';
        RETURN;
    END IF;
    kind := kind || '::text';
    IF src.kind_match = 'trim_lower' THEN
        kind := format('lower(btrim(%s))', kind);
    END IF;
    SELECT array_agg(k.key ORDER BY k.key) FILTER (WHERE k.event_type IS NOT NULL),
           array_agg(k.event_type ORDER BY k.key) FILTER (WHERE k.event_type IS NOT NULL),
           array_agg(k.key ORDER BY k.key) FILTER (WHERE k.event_type IS NULL)
      INTO kinds, types, skip
      FROM (SELECT CASE src.kind_match WHEN 'trim_lower' THEN lower(btrim(m.kind)) ELSE m.kind END AS key, m.event_type
              FROM @extschema@.event_kind_map m WHERE m.relation = src.relation) k;
    event_type := CASE WHEN kinds IS NULL THEN 'NULL::@extschema@.event_type'
                       ELSE format('@extschema@._map_kind(%s, %L::text[], %L::@extschema@.event_type[])', kind, kinds, types) END;
    -- (= ANY of a constant array: hashed from 9 elements on)
    ignored := CASE WHEN skip IS NULL THEN 'false' ELSE format('%s = ANY (%L::text[])', kind, skip) END;
END $$;

-- Why a row of a source is not scored, by the code _source_select gives it (NULL: it is scored).
CREATE FUNCTION @extschema@._skip_reason(code integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (ARRAY['ignored', 'unmapped', 'no contact', 'no time', 'infinite time', 'NaN value', 'negative value',
                  'infinite value'])[code]
$$;

-- The rows of a source as the model reads them, from rel (the relation's name, or a name bound to
-- it): SELECT contact_id, event_type, occurred_at, conversion_value, kind (the CRM's own, as text;
-- NULL when the kind column is engagement.event_type already), campaign_id (NULL when the source
-- has no campaign column), skip (why the row is not scored, NULL when it is: a code of
-- _skip_reason, 1 for a kind mapped to NULL, 2 for an unmapped kind, more for a row the model
-- cannot read; event_type is NULL exactly then) FROM ...  No cast a relation's own
-- types do not need: the whole query stays shippable to a postgres_fdw shard (which cannot ship a
-- text cast of an enum).
CREATE FUNCTION @extschema@._source_select(src @extschema@.event_sources, rel text) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    typed_kind boolean := @extschema@._column_type(src.relation, src.kind_column) = '@extschema@.event_type'::regtype;
    own        boolean := src.relation = '@extschema@.engagement_events'::regclass;
    kinds      record := @extschema@._source_kind_expr(src);
    value_expr text := CASE WHEN src.value_column IS NULL THEN 'NULL::numeric'
                            WHEN @extschema@._column_type(src.relation, src.value_column) = 'numeric'::regtype
                            THEN format('e.%I', src.value_column)
                            ELSE format('e.%I::numeric', src.value_column) END;
    campaign   text := CASE WHEN @extschema@._column_type(src.relation, src.campaign_column) IS NULL THEN 'NULL::bigint'
                            ELSE format('e.%I', src.campaign_column) END;
    skip       text;
BEGIN
    -- engagement_events' checks refuse every row the model cannot read; a row of a CRM's own
    -- relation that it cannot read is, like an unmapped kind, not scored and counted, instead of
    -- stopping every refresh of the profile.
    skip := CASE WHEN own THEN 'NULL::integer'
                 ELSE format($f$CASE WHEN e.%1$I IS NULL THEN 3 WHEN e.%2$I IS NULL THEN 4 WHEN NOT isfinite(e.%2$I) THEN 5
                                     WHEN %3$s = 'NaN' THEN 6 WHEN %3$s < 0 THEN 7 WHEN %3$s >= 'Infinity' THEN 8
                                     WHEN %4$s IS NOT NULL THEN NULL WHEN %5$s THEN 1 ELSE 2 END$f$,
                             src.contact_column, src.time_column, value_expr, kinds.event_type, kinds.ignored) END;
    RETURN format('SELECT e.%I AS contact_id, %s AS event_type, e.%I AS occurred_at, %s AS conversion_value, %s AS kind, '
                  '%s AS campaign_id, %s AS skip FROM %s e',
                  src.contact_column,
                  CASE WHEN own THEN kinds.event_type
                       ELSE format('CASE WHEN e.%I IS NOT NULL AND isfinite(e.%I) AND (%s IS NULL OR (%s >= 0 AND %s < ''Infinity'' AND %s <> ''NaN'')) THEN %s END',
                                   src.contact_column, src.time_column, value_expr, value_expr, value_expr, value_expr,
                                   kinds.event_type) END,
                  src.time_column, value_expr,
                  CASE WHEN typed_kind THEN 'NULL::text' ELSE format('e.%I::text', src.kind_column) END,
                  campaign, skip, rel);
END $$;

-- A source's definition as far as its reading depends on it: the relation's kind, a view's query,
-- a foreign table's options, and the types of the columns the source reads (its row of
-- event_sources and its kind map bump the profiles' versions themselves).  NULL for
-- engagement_events.  A refresh stores it; another at the next refresh (a view replaced, a column's
-- type changed) makes that refresh full, and contact_scores shows the scores stale meanwhile.  What
-- a view reads (a table it joins, a view under it) is not in it.
CREATE FUNCTION @extschema@._source_fingerprint(rel regclass) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT md5(concat_ws('|', c.relkind, CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
                         (SELECT f.ftoptions::text FROM pg_foreign_table f WHERE f.ftrelid = c.oid),
                         (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attname)
                            FROM pg_attribute a, @extschema@._source_of(rel) s
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                             AND a.attname IN (s.contact_column, s.kind_column, s.time_column, s.value_column,
                                               s.campaign_column))))
      FROM pg_class c
     WHERE c.oid = rel AND rel <> '@extschema@.engagement_events'::regclass
$$;

-- The events relation of a profile, checked before it is written into a profile, and before a
-- refresh or a fit reads it (its name, quoted and qualified).  A refresh may run as a superuser
-- (pg_cron) while a less privileged admin role chose the relation: so only relations owned by the
-- caller or by a superuser (a view's functions would run as the caller), read as its source says.
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
     WHERE c.relkind NOT IN ('r', 'p', 'f', 'v') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % must be a table (plain, partitioned or foreign) or a view', bad
            USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT c.oid::regclass::text INTO bad
      FROM (SELECT events AS relid UNION SELECT t.relid FROM pg_partition_tree(events) t) t
      JOIN pg_class c ON c.oid = t.relid JOIN pg_roles r ON r.oid = c.relowner
     WHERE NOT r.rolsuper AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % is owned by another role that is not a superuser', bad
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Refresh as its owner, or give the relation to a superuser.';
    END IF;
    PERFORM @extschema@._source_check(@extschema@._source_of(events));
    RETURN events::text;
END $$;

-- A profile's events relation exists: a regclass column keeps the OID of a relation dropped since,
-- which would otherwise reach a query as a bare number.  Raises 42P01.
CREATE FUNCTION @extschema@._events_relation_exists_or_error(p @extschema@.scoring_profiles) RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = p.events_relation) THEN
        RAISE EXCEPTION 'the events relation of scoring profile "%" (OID %) no longer exists', p.name, p.events_relation::oid
            USING ERRCODE = 'undefined_table',
                  HINT = format('Point the profile at its events again: UPDATE engagement.scoring_profiles SET events_relation = ... WHERE name = %L;',
                                p.name);
    END IF;
END $$;

-- The role whose rights refresh_scores, fit_model and validate_model read a profile's events with,
-- or NULL for the caller's own: what they read must be what the role that set events_relation may
-- read, whoever runs them (a superuser's pg_cron job, say), through every view, function, policy or
-- user mapping the reading runs.  So they read as that role, the caller becoming it for the reading
-- statements (a superuser can, and a member of it with its privileges); when it is the caller, or a
-- superuser (the caller may read no more than it), or the relation is engagement_events (the
-- extension's own table: its grants decide), the caller reads as itself.  Any other caller is
-- refused (42501).
CREATE FUNCTION @extschema@._events_reader(p @extschema@.scoring_profiles) RETURNS name
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    setter name := nullif(p.events_relation_set_by, '');
BEGIN
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN NULL;
    END IF;
    PERFORM @extschema@._events_relation_exists_or_error(p);
    IF setter IS NULL OR NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = setter) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" was set by %', p.events_relation, p.name,
                        coalesce('role ' || quote_ident(setter) || ', which no longer exists', 'a role not recorded (before 1.3)')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('As a role that may read it: UPDATE engagement.scoring_profiles SET events_relation_set_by = current_user WHERE name = %L;',
                                p.name);
    END IF;
    IF setter = current_user OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = setter) THEN
        RETURN NULL;
    END IF;
    IF pg_has_role(current_user, setter, 'USAGE') AND pg_has_role(session_user, setter, 'MEMBER') THEN
        RETURN setter;
    END IF;
    RAISE EXCEPTION 'events_relation % of scoring profile "%" is read as role %, which set it, and role % cannot act as that role',
                    p.events_relation, p.name, quote_ident(setter), quote_ident(current_user)
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Run it as that role, a member of it or a superuser; or set events_relation again as this role.';
END $$;

-- The relation the per-contact functions (engagement_score, explain_score, profile_events) read for
-- their caller, checked: a view's functions, and a table's row-level security policies, would run
-- as the caller (perhaps a superuser), so such a relation must be the caller's or a superuser's.
-- A plain, partitioned or foreign table without row-level security runs nothing of its owner's.
-- Returns its name, quoted and qualified.
CREATE FUNCTION @extschema@._live_events_or_error(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad text;
BEGIN
    IF p.events_relation = '@extschema@.engagement_events'::regclass THEN
        RETURN p.events_relation::text;
    END IF;
    PERFORM @extschema@._events_relation_exists_or_error(p);
    SELECT c.oid::regclass::text INTO bad
      FROM (SELECT p.events_relation AS relid UNION SELECT t.relid FROM pg_partition_tree(p.events_relation) t) t
      JOIN pg_class c ON c.oid = t.relid JOIN pg_roles r ON r.oid = c.relowner
     WHERE (c.relkind = 'v' OR c.relrowsecurity) AND NOT r.rolsuper
       AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" is a view or has row-level security, owned by another role that is not a superuser: its code would run as you',
                        bad, p.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Read it as its owner or a superuser (stored scores: engagement_scores).';
    END IF;
    RETURN p.events_relation::text;
END $$;

-- A source is checked when it is written, by the role that writes it: it may read the relation,
-- the columns are there with types the model reads (pg_restore, a superuser, brings rows as they
-- were).  A changed source, or kind map, makes every profile reading the relation rescore.
CREATE FUNCTION @extschema@._source_check_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.relation = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is read as it is: it has no source to define' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.set_by IS NOT NULL AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN NEW;
    END IF;
    -- (only the tables feeding it changed, e.g. by untrack_event_changes: the relation is as it was checked)
    IF TG_OP = 'UPDATE' AND (NEW.relation, NEW.contact_column, NEW.kind_column, NEW.time_column, NEW.value_column,
                             NEW.kind_match, NEW.on_unmapped, NEW.set_by)
                            IS NOT DISTINCT FROM (OLD.relation, OLD.contact_column, OLD.kind_column, OLD.time_column,
                                                  OLD.value_column, OLD.kind_match, OLD.on_unmapped, OLD.set_by)
       AND NOT EXISTS (SELECT FROM unnest(NEW.changes_from) f(rel) WHERE NOT f.rel = ANY (OLD.changes_from)) THEN
        RETURN NEW;
    END IF;
    IF NOT @extschema@._role_may_read(current_user, NEW.relation) THEN
        RAISE EXCEPTION 'role "%" may not read %', current_user, NEW.relation USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = NEW.relation) NOT IN ('r', 'p', 'f', 'v') THEN
        RAISE EXCEPTION 'an event source must be a table (plain, partitioned or foreign) or a view, not %', NEW.relation
            USING ERRCODE = 'wrong_object_type';
    END IF;
    PERFORM @extschema@._source_check(NEW);
    IF NEW.kind_match = 'trim_lower' THEN
        PERFORM @extschema@._kind_map_unambiguous_or_error(NEW.relation);
    END IF;
    -- 4: the tracking triggers read the contact column they were made with
    IF TG_OP = 'UPDATE' AND NEW.contact_column <> OLD.contact_column AND EXISTS (
           SELECT FROM pg_trigger t WHERE t.tgrelid = NEW.relation AND t.tgname LIKE 'engagement\_track\_%') THEN
        RAISE EXCEPTION 'the change-tracking triggers of % read column %', NEW.relation, quote_ident(OLD.contact_column)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run engagement.untrack_event_changes on it first, then engagement.track_event_changes again.';
    END IF;
    IF EXISTS (SELECT FROM unnest(NEW.changes_from) f(rel) JOIN pg_class c ON c.oid = f.rel WHERE c.relkind NOT IN ('r', 'p', 'f')) THEN
        RAISE EXCEPTION 'changes_from lists tables whose changes are tracked, not views' USING ERRCODE = 'wrong_object_type';
    END IF;
    NEW.set_by := current_user;
    RETURN NEW;
END $$;
CREATE TRIGGER event_sources_check BEFORE INSERT OR UPDATE ON @extschema@.event_sources
    FOR EACH ROW EXECUTE FUNCTION @extschema@._source_check_row();

-- With kind_match trim_lower, two kinds of a map that are one once trimmed and lower-cased would be
-- ambiguous (the first would win): refused when the map is written, and when a source switches to
-- trim_lower (_source_check_row).
CREATE FUNCTION @extschema@._kind_map_unambiguous_or_error(rel regclass) RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kinds text;
BEGIN
    SELECT string_agg(quote_literal(m.kind), ' and ' ORDER BY m.kind) INTO kinds
      FROM @extschema@.event_kind_map m WHERE m.relation = rel
     GROUP BY lower(btrim(m.kind)) HAVING count(*) > 1
     ORDER BY 1 LIMIT 1;
    IF kinds IS NOT NULL THEN
        RAISE EXCEPTION 'kinds % of % are one kind once trimmed and lower-cased: kind_match trim_lower would be ambiguous',
                        kinds, rel
            USING ERRCODE = 'unique_violation';
    END IF;
END $$;

CREATE FUNCTION @extschema@._kind_maps_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT s.relation FROM @extschema@.event_sources s WHERE s.kind_match = 'trim_lower' LOOP
        PERFORM @extschema@._kind_map_unambiguous_or_error(rel);
    END LOOP;
    RETURN NULL;
END $$;
-- (once per statement, after it, so that the check sees the maps as they now are, however many
-- kinds the statement wrote)
CREATE TRIGGER event_kind_map_check AFTER INSERT OR UPDATE ON @extschema@.event_kind_map
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._kind_maps_check();

CREATE FUNCTION @extschema@._source_changed() RETURNS trigger
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
CREATE TRIGGER event_sources_changed_insert AFTER INSERT ON @extschema@.event_sources
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_sources_changed_update AFTER UPDATE ON @extschema@.event_sources
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_sources_changed_delete AFTER DELETE ON @extschema@.event_sources
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_kind_map_changed_insert AFTER INSERT ON @extschema@.event_kind_map
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_kind_map_changed_update AFTER UPDATE ON @extschema@.event_kind_map
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();
CREATE TRIGGER event_kind_map_changed_delete AFTER DELETE ON @extschema@.event_kind_map
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._source_changed();

-- define_event_source: a source in one call (its row of event_sources and its kind map, replaced).
-- A kind mapped to JSON null is ignored on purpose: counted, never warned about.
CREATE FUNCTION @extschema@.define_event_source(relation regclass, kinds jsonb DEFAULT NULL,
                                                contact_column name DEFAULT 'contact_id',
                                                kind_column name DEFAULT 'event_type',
                                                time_column name DEFAULT 'occurred_at',
                                                value_column name DEFAULT 'conversion_value',
                                                kind_match text DEFAULT 'exact',
                                                on_unmapped text DEFAULT 'count',
                                                changes_from regclass[] DEFAULT '{}',
                                                campaign_column name DEFAULT NULL)
RETURNS regclass
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad text;
BEGIN
    IF relation IS NULL OR contact_column IS NULL OR kind_column IS NULL OR time_column IS NULL
       OR kind_match IS NULL OR on_unmapped IS NULL OR changes_from IS NULL THEN
        RAISE EXCEPTION 'define_event_source: only kinds and value_column may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF kinds IS NOT NULL AND jsonb_typeof(kinds) <> 'object' THEN
        RAISE EXCEPTION 'kinds must be a JSON object of the CRM''s kinds and their event types, e.g. {"open": "opened"}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(format('%s: %s', k.key, k.value), ', ') INTO bad
      FROM jsonb_each(coalesce(kinds, '{}')) k
     WHERE jsonb_typeof(k.value) NOT IN ('string', 'null')
        OR NOT coalesce((k.value #>> '{}') = ANY (enum_range(NULL::@extschema@.event_type)::text[]), true);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'kinds maps to what is not an event type: %', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The event types: ' || array_to_string(enum_range(NULL::@extschema@.event_type)::text[], ', ')
                         || '; null ignores a kind.';
    END IF;
    -- (the old map goes first: the source's check of a trim_lower map reads the map, the new one)
    DELETE FROM @extschema@.event_kind_map m WHERE m.relation = define_event_source.relation;
    INSERT INTO @extschema@.event_sources AS s (relation, contact_column, kind_column, time_column, value_column,
                                                kind_match, on_unmapped, changes_from, campaign_column)
    VALUES (relation, contact_column, kind_column, time_column, value_column, kind_match, on_unmapped, changes_from,
            campaign_column)
    ON CONFLICT ON CONSTRAINT event_sources_pkey DO UPDATE
       SET contact_column = excluded.contact_column, kind_column = excluded.kind_column,
           time_column = excluded.time_column, value_column = excluded.value_column,
           kind_match = excluded.kind_match, on_unmapped = excluded.on_unmapped, changes_from = excluded.changes_from,
           campaign_column = excluded.campaign_column;
    INSERT INTO @extschema@.event_kind_map (relation, kind, event_type)
    SELECT define_event_source.relation, k.key, (k.value #>> '{}')::@extschema@.event_type
      FROM jsonb_each(coalesce(kinds, '{}')) k;
    RETURN relation;
END $$;
COMMENT ON FUNCTION @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[], name) IS
    'Defines (or replaces) how a CRM''s own events relation is read: its columns, its kinds mapped to event types ({"open": "opened", "sent": null, ...}: null ignores a kind), kind_match exact or trim_lower, on_unmapped count or reject, for a view the tables whose tracked changes feed it, and its campaign column (for the funnels)';
REVOKE EXECUTE ON FUNCTION @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[], name) FROM PUBLIC;

-- A profile's events relation, checked before a refresh or a fit reads it, by the role it is read
-- as (_events_reader): the role that chose it may still read it (privileges may have been revoked
-- since), no row-level security applies to the reading (a refresh would delete the scores of the
-- rows it hides), and it is a relation _events_relation_or_error accepts.  Returns its name, quoted
-- and qualified.
CREATE FUNCTION @extschema@._profile_events_or_error(p @extschema@.scoring_profiles) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p.events_relation <> '@extschema@.engagement_events'::regclass
       AND NOT @extschema@._role_may_read(p.events_relation_set_by, p.events_relation) THEN
        RAISE EXCEPTION 'events_relation % of scoring profile "%" was set by %, which may not read it',
                        p.events_relation, p.name,
                        coalesce('role ' || quote_ident(nullif(p.events_relation_set_by, '')), 'a role not recorded (before 1.3)')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('As a role that may read it: UPDATE engagement.scoring_profiles SET events_relation_set_by = current_user WHERE name = %L;',
                                p.name);
    END IF;
    -- (PostgreSQL says whether its policies apply to this role: owner, FORCE, BYPASSRLS, row_security)
    IF row_security_active(p.events_relation) THEN
        RAISE EXCEPTION 'row-level security of % applies to role %: scoring profile "%" would read only some of its rows',
                        p.events_relation, quote_ident(current_user), p.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A refresh would delete the scores of the rows it cannot see: read it as a role that bypasses row-level security (its owner, or one with BYPASSRLS).';
    END IF;
    RETURN @extschema@._events_relation_or_error(p.events_relation);
END $$;

-- The events a refresh or a fit reads, checked (_profile_events_or_error) and, for a relation of
-- the CRM's own, bound by OID for the rest of the transaction: a temporary view over it, so that a
-- schema renamed after the check cannot put another relation (or a view whose functions would run
-- as the refreshing role) under the same name.  Returns a FROM item of the columns contact_id,
-- event_type, occurred_at, conversion_value and kind (_source_select); the caller drops
-- pg_temp._es_events when that is what it got (_unbind_events_relation).  On Citus a temporary
-- view is this session's alone, not for Citus to propagate to the workers: DDL propagation is off
-- while this function runs (its SET clause; without Citus the setting is an inert placeholder).
CREATE FUNCTION @extschema@._bind_events_relation(p @extschema@.scoring_profiles) RETURNS text
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

-- Drops what _bind_events_relation made, if anything (not for Citus to propagate either).
CREATE FUNCTION @extschema@._unbind_events_relation(events text) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET citus.enable_ddl_propagation = off AS $$
BEGIN
    IF events = 'pg_temp._es_events' THEN
        DROP VIEW pg_temp._es_events;
    END IF;
END $$;

-- A read of a profile's events with the rights of the role that set its source (_events_reader):
-- _events_read_begin makes that role the current one, when it is not this one (granting it SELECT
-- on readable first, a temporary table of the caller's the read joins), and binds the events
-- relation; _events_read_end unbinds it and comes back to the caller's role.  Neither has a
-- SET clause, on purpose: a SET clause restores, when its function returns, every setting the
-- function changed, the role among them.  Every name in them is qualified, and they run within
-- their callers' pinned search_path (fit_model, _validation, _refresh).
CREATE FUNCTION @extschema@._events_read_begin(p @extschema@.scoring_profiles, readable regclass,
                                                OUT events text, OUT caller text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    reader pg_catalog.name := @extschema@._events_reader(p);
BEGIN
    IF reader IS NOT NULL THEN
        IF readable IS NOT NULL THEN
            EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', readable, reader);
        END IF;
        caller := pg_catalog.current_setting('role');
        PERFORM pg_catalog.set_config('role', reader, true);
    END IF;
    events := @extschema@._bind_events_relation(p);
END $$;

CREATE FUNCTION @extschema@._events_read_end(events text, caller text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM @extschema@._unbind_events_relation(events);
    IF caller IS NOT NULL THEN
        PERFORM pg_catalog.set_config('role', caller, true);
    END IF;
END $$;

------------------------------------------------------------------------------------------------
-- Change tracking of engagement_events, and of any table track_event_changes is given:
-- statement-level triggers with transition tables (row-level ones where foreign partitions cannot
-- collect transition tuples) log (contact, relation) in event_changes; a refresh hands each change
-- to the profiles whose source the relation feeds (_source_feeds).  The trigger functions run as
-- their owner (SECURITY DEFINER): the change log is written by them alone, never directly by the
-- roles that write events.  Their argument, on a relation other than engagement_events, names the
-- contact column.
------------------------------------------------------------------------------------------------
-- The trigger that fired a change-tracking function on a relation other than engagement_events.
-- The functions run as their owner, so nothing of the caller's may be evaluated in them: the
-- contact column must be of a built-in integer type itself (no user-defined type, cast or
-- operator), and a statement-level trigger must name its transition tables new_events and
-- old_events (were they missing, those names would find the caller's temporary views).
CREATE FUNCTION @extschema@._tracked_relation_check(rel oid, trigger_name name, transition_tables boolean,
                                                    contact_column name)
RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute a
                    WHERE a.attrelid = rel AND a.attname = contact_column AND NOT a.attisdropped
                      AND a.atttypid IN ('pg_catalog.int8'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int2'::regtype)) THEN
        RAISE EXCEPTION 'change tracking of % needs a contact column % of type bigint, integer or smallint',
                        rel::regclass, quote_ident(contact_column)
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
-- contact it touched.  An UPDATE of engagement_events marks the contacts of the rows whose
-- contact, kind, time or value changed.  Rows without a contact are not logged (nothing to
-- rescore; a full refresh counts them).  In C (src/glue/tracking.c): it runs once per writing
-- statement, and a single-row INSERT paid more for a PL/pgSQL call than for its own row.  It reads
-- the transition tables itself (the contact column must be a built-in integer type), qualifies
-- every name it writes, and writes the contacts straight into event_changes, or, when an INSERT
-- would do more than write them (an index, a trigger, Citus...), through one INSERT of them as an
-- array: with Citus loaded the change log may be distributed, and Citus would run the SELECT of an
-- INSERT into it without the transition tables.
CREATE FUNCTION @extschema@._track_event_changes() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_track_event_changes' LANGUAGE C SECURITY DEFINER;

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
-- turns off postgres_fdw's batch inserts while they exist; docs/scale-out.md).  They fire on the
-- partitions: the change is logged against the tracked relation, their second argument.
CREATE FUNCTION @extschema@._track_event_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact name := coalesce(TG_ARGV[0], 'contact_id');
    rel regclass := coalesce(TG_ARGV[1]::oid, TG_RELID);   -- the tracked relation, not the partition that fired
    old_contact bigint;
    new_contact bigint;
BEGIN
    IF TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION '_track_event_change is a row-level trigger function' USING ERRCODE = 'invalid_object_definition';
    END IF;
    PERFORM @extschema@._tracked_relation_check(TG_RELID, TG_NAME, false, contact);
    -- (the one column read, of a built-in integer type: nothing else of the row is evaluated)
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        EXECUTE format('SELECT ($1).%I', contact) INTO old_contact USING OLD;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        EXECUTE format('SELECT ($1).%I', contact) INTO new_contact USING NEW;
    END IF;
    IF old_contact IS NOT NULL THEN
        INSERT INTO @extschema@.event_changes (contact_id, relation) VALUES (old_contact, rel);
    END IF;
    IF new_contact IS NOT NULL AND new_contact IS DISTINCT FROM old_contact THEN
        INSERT INTO @extschema@.event_changes (contact_id, relation) VALUES (new_contact, rel);
    END IF;
    RETURN NULL;
END $$;
-- Only superusers and admins (grant_admin_access, for track_event_changes) may attach them to a
-- relation: attached to a table of its own, a role could otherwise write the change log.
REVOKE EXECUTE ON FUNCTION @extschema@._track_event_changes(), @extschema@._track_event_change() FROM PUBLIC;

-- The triggers track_event_changes makes (and untrack_event_changes removes).  (Citus lets a
-- distributed table's triggers be dropped only with citus.enable_unsafe_triggers on: for this
-- function only, by its SET clause.)
CREATE FUNCTION @extschema@._drop_tracking_triggers(events regclass) RETURNS integer
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

-- The statement-level triggers of change tracking on a table: after INSERT, UPDATE and DELETE,
-- with the transition tables the trigger functions read (new_events, old_events), calling func
-- (a qualified name) with args (its argument list, quoted).  One place for both kinds: a table's
-- here (_track_event_changes), a distributed table's shards (_track_shard_changes, citus.sql).
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

-- track_event_changes(events, for_source, contact_column): change-tracking triggers on a table of the
-- CRM's own (run it again after attaching partitions).  Its contact column is contact_column, or the
-- one its own source names, or for_source's; given for_source (a view over it, or another relation
-- reading it), the table is added to that source's changes_from, so its changes make the source's
-- scores stale.
CREATE FUNCTION @extschema@.track_event_changes(events regclass, for_source regclass DEFAULT NULL,
                                                contact_column name DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    contact      name;
    feed_hint    text;
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
    -- A table under a view source, neither a source nor a profile's relation itself: its changes
    -- feed the view's scores only when named for it.
    IF for_source IS NULL AND contact_column IS NULL
       AND NOT EXISTS (SELECT FROM @extschema@.event_sources s WHERE s.relation = events)
       AND NOT EXISTS (SELECT FROM @extschema@.scoring_profiles p WHERE p.events_relation = events) THEN
        SELECT string_agg(format('SELECT engagement.track_event_changes(%L, for_source => %L);',
                                 events::text, s.relation::text), ' ' ORDER BY s.relation::text)
          INTO feed_hint
          FROM @extschema@.event_sources s
         WHERE s.relation IN (SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                               WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                                 AND d.refobjid = events);
        IF feed_hint IS NOT NULL THEN
            RAISE EXCEPTION '% is read by a view source, not scored itself: name the source its changes feed', events
                USING ERRCODE = 'invalid_parameter_value', HINT = feed_hint;
        END IF;
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
COMMENT ON FUNCTION @extschema@.track_event_changes(regclass, regclass, name) IS
    'Adds (or replaces) change-tracking triggers on a table of the CRM''s own (run it again after attaching partitions), so incremental refreshes of the profiles reading it (or for_source, a view over it) see the changes written through this server';
REVOKE EXECUTE ON FUNCTION @extschema@.track_event_changes(regclass, regclass, name) FROM PUBLIC;

CREATE FUNCTION @extschema@.untrack_event_changes(events regclass) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped integer;
BEGIN
    PERFORM @extschema@._arguments_not_null('untrack_event_changes(events)', events IS NULL);
    IF events = '@extschema@.engagement_events'::regclass THEN
        RAISE EXCEPTION 'engagement_events is always tracked' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    dropped := @extschema@._drop_tracking_triggers(events);
    UPDATE @extschema@.event_sources s SET changes_from = array_remove(s.changes_from, events)
     WHERE events = ANY (s.changes_from);
    RETURN dropped;
END $$;
COMMENT ON FUNCTION @extschema@.untrack_event_changes(regclass) IS
    'Removes the change-tracking triggers track_event_changes made on a table (then DROP EXTENSION no longer depends on them); returns how many';
REVOKE EXECUTE ON FUNCTION @extschema@.untrack_event_changes(regclass) FROM PUBLIC;
