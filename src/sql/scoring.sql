-- scoring.sql: the score type, the scoring aggregates (score_events, explain_events, time_decay) and
-- the per-contact API (engagement_score, explain_score).

------------------------------------------------------------------------------------------------
-- Scores
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.score AS (
    as_of                  timestamptz,
    profile                text,
    composite              float8,
    recency                float8,
    frequency              float8,
    monetary               float8,
    time_decay             float8,
    diversity              float8,
    engagement_probability float8,
    conversion_probability float8,
    churn_risk             float8,
    segment                text,
    opted_out              boolean,
    event_count            bigint,
    engaging_count         bigint,
    conversion_total       numeric,
    first_event_at         timestamptz,
    last_engaged_at        timestamptz,
    expected_engagements_30d float8,
    expected_conversion_value float8,
    expected_value_30d     float8,
    undeliverable          boolean,
    tenure_days            float8,
    birth_at               timestamptz,
    x                      bigint,
    t_x                    bigint,
    t_c                    bigint,
    n_days                 bigint,
    conv_days              bigint,
    x_v                    bigint,
    m_v                    float8
);
COMMENT ON TYPE @extschema@.score IS
    'One contact''s engagement score: composite and components 0..100, predictions 0..1, segment and facts';
SELECT @extschema@._comment_score_columns('@extschema@.score');

-- The fields of a score that engagement_scores stores, in the type's order: all but as_of (stored
-- as calculated_at) and profile (the table's key).  The one list the code that writes or reads
-- stored scores builds its column lists from (_stored_score_list): a field added to the type and
-- the table needs no other list.
CREATE FUNCTION @extschema@._stored_score_fields() RETURNS name[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT array_agg(a.attname ORDER BY a.attnum)
      FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
     WHERE t.oid = '@extschema@.score'::regtype AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT IN ('as_of', 'profile')
$$;

-- Those fields as a list for SQL text: each through format(item, field), ', ' between, e.g.
-- '%1$I = n.%1$I' for an UPDATE's SET.
CREATE FUNCTION @extschema@._stored_score_list(item text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(format(item, f.field), ', ' ORDER BY f.i)
      FROM unnest(@extschema@._stored_score_fields()) WITH ORDINALITY f(field, i)
$$;

-- The version of docs/model.md the library computes (stored with every score).
CREATE FUNCTION @extschema@.model_version() RETURNS integer
AS 'MODULE_PATHNAME', 'es_model_version' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.model_version() IS
    'The version of the scoring model (docs/model.md) the extension computes; stored scores of another are stale';

-- score_events(event_type, occurred_at, conversion_value, as_of [, profile]): the aggregate over any rowset.
-- The transition function reads the profile table once per query, hence STABLE.
CREATE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz, text)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_combinefn(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_serialfn(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'es_score_events_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_deserialfn(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._score_events_finalfn(internal)
RETURNS @extschema@.score AS 'MODULE_PATHNAME', 'es_score_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@._explain_events_finalfn(internal)
RETURNS text AS 'MODULE_PATHNAME', 'es_explain_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;

-- The final functions only sort the state's day keys in place (same set), so READ_ONLY holds.
-- SSPACE: the state is 256 bytes with its first 14 day keys (more keys get an array of their own);
-- without it the planner assumes a large internal state and prices hashed aggregation over many
-- contacts as spilling.
CREATE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Scores one contact''s events (the rows of a group) as of a time under a named profile';
COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'Scores one contact''s events (the rows of a group) as of a time under the default profile';

CREATE AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._explain_events_finalfn, SSPACE = 384, PARALLEL = SAFE);
COMMENT ON AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Explains, in words, the score of one contact''s events (the rows of a group)';

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
-- time_decay(weight, occurred_at, as_of, half_life_days): sum of weight * 2^(-age / half_life) up
-- to as_of.  Its state is a type with a text form, so Citus can split the aggregate.
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.decay_state;
CREATE FUNCTION @extschema@.decay_state_in(cstring) RETURNS @extschema@.decay_state
AS 'MODULE_PATHNAME', 'es_decay_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.decay_state_out(@extschema@.decay_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_decay_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE @extschema@.decay_state (
    INPUT = @extschema@.decay_state_in, OUTPUT = @extschema@.decay_state_out,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = double, STORAGE = plain);
COMMENT ON FUNCTION @extschema@.decay_state_in(cstring) IS
    'Text input of decay_state: (sum,compensation,as_of,half_life_days,rows)';
COMMENT ON FUNCTION @extschema@.decay_state_out(@extschema@.decay_state) IS
    'Text output of decay_state, every double in its shortest exact form';
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
-- Per-contact API: over the profile's events (engagement_events, or the CRM's own relation)
------------------------------------------------------------------------------------------------
-- The functions that act (refresh, fit, validate, grant, distribute, untrack, unschedule) refuse a
-- NULL argument with 22004 instead of silently doing nothing: one flag per argument, in order.
CREATE FUNCTION @extschema@._arguments_not_null(function_name text, VARIADIC is_null boolean[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF true = ANY (is_null) THEN
        RAISE EXCEPTION '%: argument % is NULL', function_name, array_position(is_null, true)
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave an argument out to take its default.';
    END IF;
END $$;

-- Whether this backend runs a Citus task: a query Citus pushed down to a shard (its connections
-- carry application_name 'citus_internal gpid=...', Citus's own test, IsCitusInternalBackend).
-- There Citus refuses any query of a distributed or reference table ("cannot execute a distributed
-- query from a query on a shard"), so the functions that read such tables per contact read the
-- local placements instead (_citus_local_relation; docs/scale-out.md, "Per-row calls").  Inlined,
-- so no SET clause and every name qualified.
CREATE FUNCTION @extschema@._in_citus_shard_query() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.starts_with(pg_catalog.current_setting('application_name'), 'citus_internal gpid=')
           AND pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL   -- (a name any session can set)
$$;

-- In a Citus task (_in_citus_shard_query): the local placement a function reads instead of rel, a
-- table Citus distributes: a reference table's placement (every node has one), or the shard of a
-- hash-distributed table holding contact, which must be on this node.  It is when contact is the
-- distribution value of the row being processed and rel is co-located with the table scanned: Citus
-- keeps co-located shards on one node through moves and rebalances, and sends a transaction's
-- work on a group of co-located shards over one connection, so the placement read is the one the
-- pushed-down query sees, with that transaction's writes.  Else 0A000, saying why.  The name, quoted
-- and qualified.
CREATE FUNCTION @extschema@._citus_local_relation(rel regclass, contact bigint, contact_column name DEFAULT 'contact_id')
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    method "char" := @extschema@._citus_method(rel);
    shard  bigint;
    placed text;
BEGIN
    IF method IS NULL THEN
        RAISE EXCEPTION '% is not a Citus table: called in a query Citus pushed down to a shard, this node''s % is not the coordinator''s', rel, rel
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Call the function at the top level of a query on the coordinator (e.g. over a list of contacts), or read a distributed events table (citus_distribute).';
    END IF;
    IF method = 'n' THEN
        EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = $1' INTO shard USING rel;
    ELSE
        IF contact IS NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = rel AND d.partmethod = 'h'
                                             AND pg_catalog.column_to_column_name(d.logicalrelid, d.partkey) = contact_column
                                             AND d.colocationid = (SELECT s.colocationid FROM pg_catalog.pg_dist_partition s
                                                                    WHERE s.logicalrelid = '@extschema@.engagement_scores'::regclass)) THEN
            RAISE EXCEPTION '% is not hash-distributed by its contact column % and co-located with engagement_scores', rel,
                            quote_ident(contact_column)
                USING ERRCODE = 'feature_not_supported';
        END IF;
        shard := pg_catalog.get_shard_id_for_distribution_column(rel, contact);
    END IF;
    -- (shard_name leaves public's shards unqualified; this function's search_path would not find them)
    placed := pg_catalog.shard_name(rel, shard);
    IF cardinality(pg_catalog.parse_ident(placed)) = 1 THEN
        placed := pg_catalog.format('%I.%s', (SELECT n.nspname FROM pg_catalog.pg_class c
                                                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel),
                                    placed);
    END IF;
    -- an active placement of this node's group: not a copy a shard move left behind for cleanup
    IF to_regclass(placed) IS NULL
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_dist_placement pl
                       WHERE pl.shardid = shard AND pl.groupid = (SELECT lg.groupid FROM pg_catalog.pg_dist_local_group lg)) THEN
        RAISE EXCEPTION 'contact %: its rows of % are not on this node, where Citus runs this part of the query', contact, rel
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Called per row of a query over a distributed table, a per-contact function must be given the row''s own contact, of a table co-located with the events (create_distributed_table(..., colocate_with => ''engagement.engagement_scores'')).';
    END IF;
    RETURN placed;
END $$;

-- The profile row, or 42704 (_profile_exists_or_error).  In a Citus task, from this node's
-- placement of the reference table.
CREATE FUNCTION @extschema@._profile_or_error(profile text) RETURNS @extschema@.scoring_profiles
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
BEGIN
    IF @extschema@._in_citus_shard_query() THEN
        EXECUTE format('SELECT * FROM %s sp WHERE sp.name = $1',
                       @extschema@._citus_local_relation('@extschema@.scoring_profiles', NULL))
           INTO p USING profile;
    ELSE
        SELECT * INTO p FROM @extschema@.scoring_profiles sp WHERE sp.name = profile;
    END IF;
    IF p.name IS NULL THEN   -- (the key: NULL only when no row was found)
        -- (a NULL profile names none: an error here, where the inlined reads have no row; '<NULL>'
        -- is how RAISE prints a NULL)
        PERFORM @extschema@._profile_exists_or_error(false, coalesce(profile, '<NULL>'));
    END IF;
    RETURN p;
END $$;

-- 42704 for a profile that does not exist: the one place SQL reports it (the C lookup of the
-- aggregates says the same).  Also the one-time check of the profile of a read the planner inlines
-- into its caller's query (readable_scores, segment_summary, readable_segments): profile_exists is
-- the EXISTS of its row, which the caller's query evaluates once (a function here that read
-- scoring_profiles itself would be sent to the shards on Citus, where a query of a reference table
-- is refused).  A NULL profile is no error here: those reads were STRICT, and their queries have no
-- row for it.  Always true when it returns.
CREATE FUNCTION @extschema@._profile_exists_or_error(profile_exists boolean, profile text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT profile_exists AND profile IS NOT NULL THEN
        RAISE EXCEPTION 'scoring profile "%" does not exist', profile
            USING ERRCODE = 'undefined_object', HINT = 'The profiles are the rows of engagement.scoring_profiles.';
    END IF;
    RETURN true;
END $$;

-- Checks what the aggregates cannot check when a contact has no events (no row reaches them).
CREATE FUNCTION @extschema@._check_scoring_args(as_of timestamptz, profile text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite timestamp, not %', as_of
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._profile_or_error(profile);
END $$;

-- The relation the per-contact functions read a contact's events from, for their caller
-- (_live_events_or_error): the profile's events relation or, in a Citus task
-- (_in_citus_shard_query), its shard holding the contact, on this node (_citus_local_relation).
-- There the relation is read with the columns of its source as this node knows it: the sources are
-- defined on the coordinator, so a kind column that is not engagement.event_type, whose kind map
-- only the coordinator has, is refused (0A000).
CREATE FUNCTION @extschema@._contact_events_relation(p @extschema@.scoring_profiles, contact_id bigint) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel    text := @extschema@._live_events_or_error(p);
    src    @extschema@.event_sources;
    stored text;
BEGIN
    IF NOT @extschema@._in_citus_shard_query() THEN
        RETURN rel;
    END IF;
    src := @extschema@._source_of(p.events_relation);
    -- The coordinator's last refresh stored its source's fingerprint (the columns it reads among
    -- them): one this node cannot make again is a source renaming columns it does not know of.
    EXECUTE format('SELECT d.source_fingerprint FROM %s d WHERE d.profile = $1',
                   @extschema@._citus_local_relation('@extschema@.score_distributions', NULL))
       INTO stored USING p.name;
    IF @extschema@._column_type(p.events_relation, src.kind_column) IS DISTINCT FROM '@extschema@.event_type'::regtype
       OR (stored IS NOT NULL AND stored IS DISTINCT FROM @extschema@._source_fingerprint(p.events_relation)) THEN
        RAISE EXCEPTION 'profile "%": the source of % (its kinds or its columns) is defined on the coordinator, not in a query Citus pushed down to a shard',
                        p.name, p.events_relation
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Call the function at the top level of a query on the coordinator (e.g. over a list of contacts).';
    END IF;
    RETURN @extschema@._citus_local_relation(p.events_relation, contact_id, src.contact_column);
END $$;

-- One contact's events as the profile's source reads them (engagement_events, or the CRM's own
-- relation through _source_select), from rel (_contact_events_relation), at or before as_of, into
-- an aggregate (score_events or explain_events), with the rows it could not score: the query, with
-- $1 the contact, $2 as_of, $3 the profile's name.  The contact's filter reaches the relation's own
-- contact column, so its index serves when it has one.
CREATE FUNCTION @extschema@._source_contact_query(p @extschema@.scoring_profiles, aggregate text, rel text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('SELECT @extschema@.%s(e.event_type, e.occurred_at, e.conversion_value, $2, $3) AS result,
                          count(*) FILTER (WHERE e.skip = 2) AS unmapped, min(e.kind) FILTER (WHERE e.skip = 2) AS kind,
                          count(*) FILTER (WHERE e.skip > 2) AS invalid, min(e.skip) FILTER (WHERE e.skip > 2) AS reason
                     FROM (%s) e WHERE e.contact_id = $1 AND e.occurred_at <= $2',
                  aggregate, @extschema@._source_select(@extschema@._source_of(p.events_relation), rel))
$$;

-- A CRM's kind as messages and refresh_runs show it: at most 64 characters, and how long it was.
CREATE FUNCTION @extschema@._shown_kind(kind text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN length(kind) <= 64 THEN kind ELSE left(kind, 64) || '... (' || length(kind) || ' characters)' END
$$;

-- Rows of a contact not scored (_source_contact_query): of a kind the source does not map, an
-- error naming it (on_unmapped reject) or a WARNING; rows the model cannot read, a WARNING with the
-- reason; rows of a kind mapped to NULL are ignored on purpose.
CREATE FUNCTION @extschema@._report_skipped(p @extschema@.scoring_profiles, contact_id bigint, r record) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF r.unmapped > 0 AND (@extschema@._source_of(p.events_relation)).on_unmapped = 'reject' THEN
        RAISE EXCEPTION 'contact %: % rows of % have a kind its source does not map, e.g. %', contact_id, r.unmapped,
                        p.events_relation, quote_literal(@extschema@._shown_kind(r.kind))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map it in engagement.event_kind_map (define_event_source; a kind mapped to null is ignored).';
    END IF;
    IF r.unmapped > 0 THEN
        RAISE WARNING 'contact %: % rows of % not scored: a kind the source does not map, e.g. %', contact_id, r.unmapped,
                      p.events_relation, quote_literal(@extschema@._shown_kind(r.kind))
            USING HINT = 'Map it in engagement.event_kind_map (define_event_source; a kind mapped to null is ignored).';
    END IF;
    IF r.invalid > 0 THEN
        RAISE WARNING 'contact %: % rows of % not scored: the model cannot read them, e.g. %', contact_id, r.invalid,
                      p.events_relation, @extschema@._skip_reason(r.reason)
            USING HINT = 'A row needs a finite time and a finite, non-negative value.';
    END IF;
END $$;

CREATE FUNCTION @extschema@.engagement_score(contact_id bigint, as_of timestamptz DEFAULT now(),
                                             profile text DEFAULT 'default')
RETURNS @extschema@.score
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
    r record;
BEGIN
    PERFORM @extschema@._check_scoring_args(as_of, profile);
    p := @extschema@._profile_or_error(profile);
    IF p.events_relation = '@extschema@.engagement_events'::regclass AND NOT @extschema@._in_citus_shard_query() THEN
        RETURN (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value,
                                                engagement_score.as_of, engagement_score.profile)
                  FROM @extschema@.engagement_events e
                 WHERE e.contact_id = engagement_score.contact_id
                   AND e.occurred_at <= engagement_score.as_of);
    END IF;
    EXECUTE @extschema@._source_contact_query(p, 'score_events', @extschema@._contact_events_relation(p, contact_id))
       INTO r USING contact_id, as_of, p.name;
    PERFORM @extschema@._report_skipped(p, contact_id, r);
    RETURN r.result;
END $$;
COMMENT ON FUNCTION @extschema@.engagement_score(bigint, timestamptz, text) IS
    'The live score of one contact from the profile''s events (engagement_events or its events_relation), NULL when it has no event at or before as_of';

CREATE FUNCTION @extschema@.explain_score(contact_id bigint, as_of timestamptz DEFAULT now(),
                                          profile text DEFAULT 'default')
RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p        @extschema@.scoring_profiles;
    body     text;
    r        record;
    unmapped bigint := 0;
    kind     text;
BEGIN
    PERFORM @extschema@._check_scoring_args(as_of, profile);
    p := @extschema@._profile_or_error(profile);
    IF p.events_relation = '@extschema@.engagement_events'::regclass AND NOT @extschema@._in_citus_shard_query() THEN
        SELECT @extschema@.explain_events(e.event_type, e.occurred_at, e.conversion_value,
                                          explain_score.as_of, explain_score.profile)
          INTO body
          FROM @extschema@.engagement_events e
         WHERE e.contact_id = explain_score.contact_id
           AND e.occurred_at <= explain_score.as_of;
    ELSE
        EXECUTE @extschema@._source_contact_query(p, 'explain_events', @extschema@._contact_events_relation(p, contact_id))
           INTO r USING contact_id, as_of, p.name;
        PERFORM @extschema@._report_skipped(p, contact_id, r);
        body := r.result;
        unmapped := r.unmapped;
        kind := r.kind;
    END IF;
    IF body IS NULL THEN
        RETURN format('Contact %s has no events at or before %s: no score.', contact_id, as_of);
    END IF;
    RETURN format('Contact %s, profile %s, as of %s: %s%s', contact_id, profile, as_of, body,
                  CASE WHEN unmapped > 0 THEN format(E'\n  %s rows of %s not scored: a kind the source does not map, e.g. %L',
                                                     unmapped, p.events_relation, kind) ELSE '' END);
END $$;
COMMENT ON FUNCTION @extschema@.explain_score(bigint, timestamptz, text) IS
    'Explains one contact''s score: each component with its value, weight and contribution, the facts and predictions';
