-- refresh.sql: refresh_scores, the scheduled job that keeps engagement_scores current, in its steps:
-- drain the change log, choose the contacts to rescore, score them, update the score distribution,
-- write the scores (and their history), keep pending what could not be scored yet.  The steps share
-- the refresh's temporary tables (pg_temp._es_changed, _es_targets, _es_scored, _es_future), which
-- refresh_scores drops before it returns.  Like refresh_scores they run with the caller's
-- privileges, so the table grants decide what they may do; unlike it they are not revoked from
-- PUBLIC (a role allowed to refresh needs no grant of each step).

------------------------------------------------------------------------------------------------
-- Score distributions: the sorted composites of a profile, packed for binary search
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._pack_sorted(float8[]) RETURNS bytea
AS 'MODULE_PATHNAME', 'es_pack_sorted' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._count_below(bytea, float8) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_count_below' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@._merge_distribution(bytea, float8[], float8[]) RETURNS bytea
AS 'MODULE_PATHNAME', 'es_merge_distribution' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

------------------------------------------------------------------------------------------------
-- The steps of a refresh
------------------------------------------------------------------------------------------------
-- Drains the change log into pg_temp._es_changed (only the rows this snapshot sees: later ones
-- wait for the next refresh): the refreshed profile takes the changes of the relations its source
-- is fed by (_source_feeds), every other profile gets those of its own in its pending set
-- (pending_rescore has no unique key: nothing waits on another refresh's rows there).  Changes of
-- relations no profile reads are dropped.
CREATE FUNCTION @extschema@._refresh_drain_changes(p @extschema@.scoring_profiles) RETURNS void
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

-- The contacts to rescore, into pg_temp._es_targets: the profile's pending contacts (consumed
-- here) and the changed ones, and on an incremental refresh those whose score grew older than
-- max_score_age (the scores are scanned for those only when the oldest one may have: aged).
-- Returns how many targets; _refresh adds a full refresh's others.
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
     WHERE aged AND NOT full_refresh AND s.profile = p.name AND s.calculated_at < refresh_at - p.max_score_age;
    GET DIAGNOSTICS targets = ROW_COUNT;
    RETURN targets;
END $$;

-- Scores the targets (every contact of the events relation on a full refresh) as of refresh_at
-- into pg_temp._es_scored, one column per score field, and accounts for the rows it could not
-- score (_skip_reason): unmapped rows with their kinds, ignored rows, and rows the model cannot
-- read, by reason (on a full refresh also rows without a time, and, as contact NULL, without a
-- contact).  Every contact, or many targets: one scan of the events grouped by contact (CREATE
-- TABLE AS may run it in parallel).  A few targets (at most a tenth of the scored contacts): each
-- one's events through the (contact_id, occurred_at) index, which the planner would price as random
-- reads and forgo although they are cached.  Scoring engagement_events looks the profile up by
-- name; any other relation (partitioned, foreign, another server's) gets the profile's values with
-- the query, as a document.  Lists in pg_temp._es_future the targets with events after refresh_at.
-- Runs as the role the events are read as (_events_reader).
CREATE FUNCTION @extschema@._refresh_score_contacts(p @extschema@.scoring_profiles, events text,
                                                    refresh_at timestamptz, full_refresh boolean,
                                                    few_targets boolean, OUT unmapped bigint,
                                                    OUT unmapped_kinds jsonb, OUT ignored bigint,
                                                    OUT invalid jsonb)
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    skipped    bigint := 0;   -- rows not scored (ignored, unmapped or invalid)
    rows_read  text;          -- the condition of the rows a refresh reads
    src        @extschema@.event_sources := @extschema@._source_of(p.events_relation);
    typed_kind boolean := @extschema@._column_type(p.events_relation, src.kind_column) = '@extschema@.event_type'::regtype;
    -- A source whose kind is an event_type and whose contact and time are NOT NULL (engagement_events)
    -- has no row it could not score: nothing to count, and the scoring statement counts nothing.
    counted    boolean := NOT (typed_kind AND coalesce((SELECT bool_and(a.attnotnull) FROM pg_attribute a
                                                         WHERE a.attrelid = p.events_relation
                                                           AND a.attname IN (src.contact_column, src.time_column)), false));
BEGIN
    -- (Citus cannot run the lateral form on the workers: there the targets go in as a list)
    few_targets := few_targets AND @extschema@._citus_method(p.events_relation) IS NULL;
    rows_read := CASE WHEN NOT full_refresh THEN 'e.occurred_at <= $1 AND e.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t)'
                      WHEN counted THEN '(e.occurred_at <= $1 OR e.occurred_at IS NULL)'
                      ELSE 'e.occurred_at <= $1' END;
    EXECUTE format(CASE WHEN few_targets AND NOT full_refresh THEN $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT t.contact_id, (c.s).*, c.skipped
          FROM pg_temp._es_targets t,
               LATERAL (SELECT @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s,
                               %4$s
                          FROM %1$s e
                         WHERE e.contact_id = t.contact_id AND e.occurred_at <= $1) c
        $q$ ELSE $q$
        CREATE TEMP TABLE _es_scored ON COMMIT DROP AS
        SELECT q.contact_id, (q.s).*, q.skipped
          FROM (SELECT e.contact_id,
                       @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s,
                       %4$s
                  FROM %1$s e
                 WHERE %3$s
                 GROUP BY e.contact_id) q
        $q$ END,
        events,
        CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$2' ELSE '$3' END,
        rows_read,
        -- (one count, which combines across parallel workers where array_agg cannot before
        -- PostgreSQL 16, and reads e.skip once: each reading evaluates its CASE, the kind's
        -- mapping with it; which rows and why, below, only when there are such rows)
        CASE WHEN NOT counted THEN '0::bigint AS skipped' ELSE 'count(e.skip) AS skipped' END)
    USING refresh_at, p.name, to_jsonb(p);
    -- The targets with events after refresh_at, which _refresh_keep_pending keeps pending.  (The
    -- events in an uncorrelated subquery, which Citus can run on the workers.)
    EXECUTE format($q$
        CREATE TEMP TABLE _es_future ON COMMIT DROP AS
        SELECT t.contact_id FROM pg_temp._es_targets t
         WHERE t.contact_id IN (SELECT e.contact_id FROM %s e
                                 WHERE e.occurred_at > $1 AND e.contact_id IN (SELECT u.contact_id FROM pg_temp._es_targets u))
        $q$, events)
    USING refresh_at;
    unmapped := 0;
    ignored := 0;
    IF counted THEN
        SELECT coalesce(sum(s.skipped), 0) INTO skipped FROM pg_temp._es_scored s;
    END IF;
    IF skipped > 0 THEN
        -- Which: the ignored rows, every unmapped kind with its rows (the 100 with the most), the
        -- other rows by reason.  (The rows the scoring statement read; the skip codes are integers
        -- and the kinds a column: postgres_fdw ships aggregates of those, not of a constant of a
        -- collatable type.)
        EXECUTE format($q$
            WITH r AS MATERIALIZED (SELECT e.kind, e.skip, count(*) AS n FROM %1$s e
                                     WHERE %2$s AND e.skip IS NOT NULL GROUP BY 1, 2)
            SELECT (SELECT coalesce(sum(r.n), 0) FROM r WHERE r.skip = 1),
                   (SELECT coalesce(sum(r.n), 0) FROM r WHERE r.skip = 2),
                   (SELECT jsonb_object_agg(k.kind, k.n)
                      FROM (SELECT @extschema@._shown_kind(r.kind) AS kind, sum(r.n) AS n FROM r WHERE r.skip = 2
                             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 100) k),
                   (SELECT jsonb_object_agg(@extschema@._skip_reason(c.skip), c.n)
                      FROM (SELECT r.skip, sum(r.n) AS n FROM r WHERE r.skip > 2 GROUP BY 1) c)
            $q$, events, rows_read) INTO ignored, unmapped, unmapped_kinds, invalid USING refresh_at;
    END IF;
    -- (contacts whose every row was skipped, rows without a contact, and targets without events
    -- have no score)
    IF counted OR (few_targets AND NOT full_refresh) THEN
        DELETE FROM pg_temp._es_scored s WHERE s.contact_id IS NULL OR s.event_count IS NULL;
    END IF;
    ALTER TABLE pg_temp._es_scored DROP COLUMN skipped;
    -- Indexed, so that no join with it can go quadratic when the statistics of engagement_scores
    -- know nothing of this profile yet (a new profile's rows estimated at one).  Only the join
    -- column's statistics are of use to the plans that read it (all ~30 columns: 5x the time).
    CREATE UNIQUE INDEX ON pg_temp._es_scored (contact_id);
    ANALYZE pg_temp._es_scored (contact_id);
END $$;

-- Whether an incremental refresh targets at most a tenth of the profile's contacts.  Its write then
-- reads the targets' stored scores through the (profile, contact_id) key, with hash and merge joins
-- off for that statement: the planner prices those index reads as random reads and would rather
-- hash every score of the profile (a full scan: 200,000 rows for 2,000 targets), although the pages
-- are cached.
CREATE FUNCTION @extschema@._refresh_few_targets(p @extschema@.scoring_profiles) RETURNS boolean
LANGUAGE plpgsql STABLE STRICT PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT count(*) FROM pg_temp._es_targets) * 10
           <= coalesce((SELECT d.contacts FROM @extschema@.score_distributions d WHERE d.profile = p.name), 0);
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
        -- (the row exists: the refresh holds it as its lock)
        UPDATE @extschema@.score_distributions d
           SET sorted_composites = @extschema@._pack_sorted(added), contacts = cardinality(added),
               profile_version = p.version, refreshed_at = refresh_at, oldest_score_at = refresh_at,
               model_version = @extschema@.model_version()
         WHERE d.profile = p.name;
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

-- Writes the scores of pg_temp._es_scored with their percentiles: UPDATE the contacts already
-- scored, INSERT the new ones (only a refresh writes this table, under its lock, so no upsert is
-- needed), keep the history of the moves worth keeping (and of every first score), and remove
-- the scores of contacts that no longer have any event (their composites already left the
-- distribution).  Returns how many contacts were scored.
-- One join of the new scores with the stored ones feeds all of it (on a full refresh a FULL JOIN,
-- whose unmatched stored rows are the scores to remove): the history reads the previous values
-- from it instead of joining what the UPDATE returns.  The percentile is the composite's rank in
-- the distribution _refresh_distribution just wrote (a binary search, not a sort of the scores):
-- on a full refresh that is 100 * percent_rank() OVER (ORDER BY composite), the same float8
-- arithmetic, bit for bit.
CREATE FUNCTION @extschema@._refresh_write_scores(p @extschema@.scoring_profiles, refresh_at timestamptz,
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
          %1$s (SELECT * FROM @extschema@.engagement_scores s0 WHERE s0.profile = ($1).name) s ON s.contact_id = n.contact_id
          LEFT JOIN @extschema@.score_distributions d ON d.profile = ($1).name),
    upd AS (
        UPDATE @extschema@.engagement_scores cur
           SET %2$s, percentile_rank = n.pct, score_version = cur.score_version + 1, profile_version = ($1).version,
               model_version = @extschema@.model_version(), calculated_at = $2
          FROM joined n
         WHERE n.contact_id IS NOT NULL AND n.prev_version IS NOT NULL
           AND cur.profile = ($1).name AND cur.contact_id = n.contact_id
        RETURNING 1),
    ins AS (
        INSERT INTO @extschema@.engagement_scores (profile, contact_id, %3$s, percentile_rank,
               score_version, profile_version, model_version, calculated_at)
        SELECT ($1).name, n.contact_id, %4$s, n.pct, 1, ($1).version, @extschema@.model_version(), $2
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
        -- (full refresh: the stored scores of contacts no longer scored, found by their key, and
        -- their history: a contact whose events are all gone leaves nothing behind)
        DELETE FROM @extschema@.engagement_scores s
         WHERE s.profile = ($1).name
           AND s.contact_id = ANY (ARRAY(SELECT n.gone_contact_id FROM joined n WHERE n.contact_id IS NULL))),
    gone_history AS (
        DELETE FROM @extschema@.engagement_score_history h
         WHERE h.profile = ($1).name
           AND h.contact_id = ANY (ARRAY(SELECT n.gone_contact_id FROM joined n WHERE n.contact_id IS NULL)))
    SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)
    $q$, CASE WHEN full_refresh THEN 'FULL JOIN' ELSE 'LEFT JOIN' END, @extschema@._stored_score_list('%1$I = n.%1$I'),
         @extschema@._stored_score_list('%I'), @extschema@._stored_score_list('n.%I'))
    INTO rescored USING p, refresh_at, full_refresh;
    PERFORM set_config('enable_nestloop', nestloop, true), set_config('enable_hashjoin', hashjoin, true),
            set_config('enable_mergejoin', mergejoin, true);

    -- (uncorrelated subqueries of the temporary tables: on Citus they become intermediate results)
    IF NOT full_refresh THEN
        DELETE FROM @extschema@.engagement_scores s
         WHERE s.profile = p.name
           AND s.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t
                                 WHERE NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = t.contact_id));
        DELETE FROM @extschema@.engagement_score_history h
         WHERE h.profile = p.name
           AND h.contact_id IN (SELECT t.contact_id FROM pg_temp._es_targets t
                                 WHERE NOT EXISTS (SELECT FROM pg_temp._es_scored n WHERE n.contact_id = t.contact_id));
    END IF;
    RETURN rescored;
END $$;

-- A target (a changed or pending contact) may have events after refresh_at (dated in the future,
-- or committed after this transaction started): they were not scored now, so it stays pending,
-- however many refreshes come before those events are due.  _refresh_score_contacts listed those
-- targets in pg_temp._es_future, reading the events as it read them.
CREATE FUNCTION @extschema@._refresh_keep_pending(p @extschema@.scoring_profiles) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT p.name, f.contact_id FROM pg_temp._es_future f
     WHERE NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = p.name AND pr.contact_id = f.contact_id);
END $$;

-- {key: count, ...} as text for a message: 'key: count, ...', the largest counts first.
CREATE FUNCTION @extschema@._counts_text(counts jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(format('%s: %s', j.key, j.value), ', ' ORDER BY j.value::bigint DESC, j.key)
      FROM jsonb_each_text(counts) j
$$;

------------------------------------------------------------------------------------------------
-- refresh_scores: _refresh does the work; refresh_scores records it in refresh_runs
------------------------------------------------------------------------------------------------
-- The share of a profile's scored contacts above which an incremental refresh runs as a full one:
-- the setting engagement.incremental_max_fraction (0..1; ALTER DATABASE ... SET it for the
-- scheduled refreshes, 1 never switches, 0 always does), 0.5 when it is not set.  Above a tenth of
-- the contacts an incremental refresh scans the events as a full one does and scores and writes only
-- its targets: on 200,000 contacts it costs 0.7-0.8x a full refresh at 40% of them, and from 60% to
-- 80% about as much (0.87-0.90x on engagement_events; over a view source, 70%: medians of 23.1 s
-- against 19.4 s for the full refresh), where the full refresh also leaves every percentile current
-- (test/bench/run_benchmarks.sh sections 18 and 19, docs/performance.md).
CREATE FUNCTION @extschema@._incremental_max_fraction() RETURNS float8
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    setting  text := current_setting('engagement.incremental_max_fraction', true);
    fraction float8;
BEGIN
    IF setting IS NULL OR setting = '' THEN
        RETURN 0.5;
    END IF;
    BEGIN
        fraction := setting::float8;
    EXCEPTION WHEN invalid_text_representation THEN
        fraction := NULL;
    END;
    IF NOT (fraction >= 0 AND fraction <= 1) OR fraction IS NULL THEN   -- (NaN too)
        RAISE EXCEPTION 'engagement.incremental_max_fraction must be a number between 0 and 1, not %', quote_literal(setting)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN fraction;
END $$;

-- One refresh: rescored is NULL when another refresh of the profile held its lock (skipped);
-- mode_reason says why it ran full or incremental (refresh_runs.mode_reason).
CREATE FUNCTION @extschema@._refresh(profile text, "full" boolean, OUT rescored bigint, OUT full_refresh boolean,
                                     OUT unmapped bigint, OUT unmapped_kinds jsonb, OUT ignored bigint,
                                     OUT invalid jsonb, OUT mode_reason text)
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
    rd         record;                 -- the read of the events (_events_read_begin)
    last       record;                 -- the distribution of the last refresh
    aged       boolean;
    targets    bigint;
    max_share  float8 := @extschema@._incremental_max_fraction();   -- (checked before any work)
    fingerprint text;                  -- the source's definition (_source_fingerprint)
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
    -- profile's distribution row, made with the profile, which only roles that may write
    -- score_distributions can lock: no other role can hold refreshes off.
    PERFORM FROM @extschema@.score_distributions d WHERE d.profile = p.name FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND AND NOT EXISTS (SELECT FROM @extschema@.score_distributions d WHERE d.profile = p.name) THEN
        -- (deleted by hand: made again; a refresh doing the same meanwhile waits for this one)
        INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version, model_version)
        VALUES (p.name, '', 0, 0, 0) ON CONFLICT DO NOTHING;
        PERFORM FROM @extschema@.score_distributions d WHERE d.profile = p.name FOR NO KEY UPDATE SKIP LOCKED;
    END IF;
    IF NOT FOUND THEN
        RAISE NOTICE 'a refresh of scoring profile "%" (or forget_contact) is running; this refresh does nothing', p.name;
        RETURN;
    END IF;
    PERFORM @extschema@._events_reader(p);   -- (42501 before any work when the caller may not read the source)

    PERFORM @extschema@._refresh_drain_changes(p);

    -- A profile changed since the last refresh (or never refreshed), scores of another version of
    -- the model, or a source defined otherwise (a view replaced), rescore everyone.
    SELECT d.profile_version, d.model_version, d.oldest_score_at, d.contacts, d.source_fingerprint INTO last
      FROM @extschema@.score_distributions d WHERE d.profile = p.name;
    fingerprint := @extschema@._source_fingerprint(p.events_relation);
    mode_reason := CASE WHEN full_refresh THEN 'requested'
                        WHEN coalesce(last.profile_version, 0) = 0 THEN 'never refreshed'
                        WHEN last.profile_version IS DISTINCT FROM p.version THEN 'profile changed'
                        WHEN last.model_version IS DISTINCT FROM @extschema@.model_version() THEN 'model changed'
                        WHEN last.source_fingerprint IS DISTINCT FROM fingerprint THEN 'source changed' END;
    full_refresh := mode_reason IS NOT NULL;
    aged := last.oldest_score_at < refresh_at - p.max_score_age;

    targets := @extschema@._refresh_choose_targets(p, refresh_at, full_refresh, aged);
    -- An incremental refresh with more targets than max_share of the scored contacts runs as a
    -- full one, cheaper then (_incremental_max_fraction).
    IF NOT full_refresh THEN
        full_refresh := targets > max_share * coalesce(last.contacts, 0);
        mode_reason := format('%s of %s contacts to rescore: %s %s', targets, coalesce(last.contacts, 0),
                              CASE WHEN full_refresh THEN 'above' ELSE 'at most' END, max_share);
    END IF;
    -- A full refresh rescores every contact; its targets are only what _refresh_keep_pending must
    -- look at again, and include the other profiles' pending contacts: every contact with events
    -- not yet due is pending for some profile (or still in the change log), also those drained
    -- before this profile existed.
    IF full_refresh THEN
        INSERT INTO pg_temp._es_targets
        SELECT DISTINCT pr.contact_id FROM @extschema@.pending_rescore pr WHERE pr.profile <> p.name
        ON CONFLICT DO NOTHING;
    END IF;
    ANALYZE pg_temp._es_targets;
    -- The events are read with the rights of the role that set the source (_events_read_begin): this
    -- role becomes it for the reading statements alone, which fill the temporary tables the
    -- writing steps read (the targets' table granted to it).
    rd := @extschema@._events_read_begin(p, 'pg_temp._es_targets');
    SELECT c.unmapped, c.unmapped_kinds, c.ignored, c.invalid INTO unmapped, unmapped_kinds, ignored, invalid
      FROM @extschema@._refresh_score_contacts(p, rd.events, refresh_at, full_refresh,
                                               coalesce(targets * 10 <= last.contacts, false)) c;
    PERFORM @extschema@._events_read_end(rd.events, rd.caller);
    -- Rows not scored, each for its true reason: unmapped kinds an error naming them (on_unmapped
    -- reject) or a WARNING with them; rows the model cannot read a WARNING by reason; ignored kinds
    -- nothing but their count (in refresh_runs).  For an SMS CRM an opt-out is a compliance matter:
    -- never lost silently.
    IF unmapped > 0 AND (@extschema@._source_of(p.events_relation)).on_unmapped = 'reject' THEN
        RAISE EXCEPTION 'profile "%": % rows of % have a kind its source does not map: %', p.name, unmapped,
                        p.events_relation, @extschema@._counts_text(unmapped_kinds)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map them in engagement.event_kind_map (define_event_source; a kind mapped to null is ignored), or set on_unmapped = ''count''.';
    END IF;
    IF unmapped > 0 OR invalid IS NOT NULL THEN
        RAISE WARNING 'profile "%": % rows of % were not scored: %', p.name,
                      unmapped + coalesce((SELECT sum(v::bigint) FROM jsonb_each_text(invalid) j(k, v)), 0), p.events_relation,
                      concat_ws('; ', CASE WHEN unmapped > 0 THEN 'kinds not mapped (' || @extschema@._counts_text(unmapped_kinds) || ')' END,
                                      @extschema@._counts_text(invalid))
            USING HINT = concat_ws(' ', CASE WHEN unmapped > 0 THEN 'Map the kinds in engagement.event_kind_map (define_event_source; a kind mapped to null is ignored).' END,
                                   CASE WHEN invalid IS NOT NULL THEN 'A row is scored when it has a contact, a finite time and a finite, non-negative value (or none).' END);
    END IF;
    PERFORM @extschema@._refresh_distribution(p, refresh_at, full_refresh);
    rescored := @extschema@._refresh_write_scores(p, refresh_at, full_refresh);
    PERFORM @extschema@._refresh_keep_pending(p);

    IF last.source_fingerprint IS DISTINCT FROM fingerprint THEN
        UPDATE @extschema@.score_distributions d SET source_fingerprint = fingerprint WHERE d.profile = p.name;
    END IF;
    -- oldest_score_at stays a lower bound of calculated_at (scores only get newer); after the
    -- age check rescored the old ones, it is recomputed.
    IF aged AND NOT full_refresh THEN
        UPDATE @extschema@.score_distributions d
           SET oldest_score_at = coalesce((SELECT min(s.calculated_at) FROM @extschema@.engagement_scores s
                                            WHERE s.profile = p.name), refresh_at)
         WHERE d.profile = p.name;
    END IF;

    -- Leave nothing behind for the rest of the transaction (another role may refresh in it).
    DROP TABLE pg_temp._es_scored, pg_temp._es_future, pg_temp._es_changed, pg_temp._es_targets;
END $$;

-- Every refresh is recorded in refresh_runs: what it did, skipped, or (on_error => 'record', what
-- a scheduled refresh uses) the error that stopped it, its work rolled back.  By hand (on_error
-- 'raise') an error propagates, and rolls its record back with everything else.
CREATE FUNCTION @extschema@.refresh_scores(profile text DEFAULT 'default', "full" boolean DEFAULT false,
                                           on_error text DEFAULT 'raise')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    started timestamptz := clock_timestamp();
    r       record;
    state   text;
    message text;
BEGIN
    PERFORM @extschema@._arguments_not_null('refresh_scores(profile, full, on_error)',
                                            profile IS NULL, "full" IS NULL, on_error IS NULL);
    IF on_error NOT IN ('raise', 'record') THEN
        RAISE EXCEPTION 'on_error must be ''raise'' or ''record'', not %', quote_literal(on_error)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        SELECT * INTO r FROM @extschema@._refresh(profile, "full");
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        IF on_error = 'raise' OR NOT EXISTS (SELECT FROM @extschema@.scoring_profiles sp WHERE sp.name = profile) THEN
            RAISE;
        END IF;
        INSERT INTO @extschema@.refresh_runs (profile, mode, started_at, finished_at, error)
        VALUES (profile, CASE WHEN "full" THEN 'full' ELSE 'incremental' END, started, clock_timestamp(),
                state || ': ' || message);
        RAISE WARNING 'the refresh of profile "%" failed and did nothing: %: %', profile, state, message;
        RETURN NULL;
    END;
    INSERT INTO @extschema@.refresh_runs (profile, mode, started_at, finished_at, contacts_rescored, unmapped_rows,
                                          unmapped_kinds, ignored_rows, invalid_rows, skipped, mode_reason)
    VALUES (profile, CASE WHEN r.full_refresh THEN 'full' ELSE 'incremental' END, started, clock_timestamp(),
            r.rescored, r.unmapped, r.unmapped_kinds, r.ignored, r.invalid, r.rescored IS NULL, r.mode_reason);
    DELETE FROM @extschema@.refresh_runs rr
     WHERE rr.profile = refresh_scores.profile
       AND rr.started_at < started - (SELECT sp.refresh_log_retention FROM @extschema@.scoring_profiles sp
                                       WHERE sp.name = refresh_scores.profile);
    RETURN r.rescored;
END $$;
COMMENT ON FUNCTION @extschema@.refresh_scores(text, boolean, text) IS
    'Rescores a profile''s contacts (from its events_relation) as of now(): all of them (full, or after a profile change, or when more than engagement.incremental_max_fraction (0.5) of the scored contacts are to be rescored), else those whose events changed or whose score is older than max_score_age; records the run in refresh_runs; returns how many, or NULL when another refresh of the profile is running (or, with on_error => ''record'', when it failed: recorded, with a WARNING)';
REVOKE EXECUTE ON FUNCTION @extschema@.refresh_scores(text, boolean, text) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Erasure: everything the extension holds about a contact
------------------------------------------------------------------------------------------------
-- The right to erasure: removes the contact from every profile's scores (and their
-- distributions), history and pending sets, from the change log, and its rows of engagement_events;
-- returns what it removed, per table.  A CRM's own events relation is the CRM's to erase: a refresh
-- after that removes nothing more, and one before it would score the contact again.  Admin only
-- (grant_admin_access).
CREATE FUNCTION @extschema@.forget_contact(contact_id bigint)
RETURNS TABLE ("table" text, rows bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('forget_contact(contact_id)', contact_id IS NULL);
    -- Every profile's refresh lock: a refresh running now has read the contact's events and would
    -- write its score back; one starting later sees them gone (or skips while this holds the lock).
    PERFORM FROM @extschema@.score_distributions FOR NO KEY UPDATE;
    -- (its composites leave each profile's distribution, as a refresh that removed them would)
    UPDATE @extschema@.score_distributions d
       SET sorted_composites = @extschema@._merge_distribution(d.sorted_composites, g.composites, '{}'),
           contacts = d.contacts - cardinality(g.composites)
      FROM (SELECT s.profile, array_agg(s.composite) AS composites FROM @extschema@.engagement_scores s
             WHERE s.contact_id = forget_contact.contact_id GROUP BY s.profile) g
     WHERE d.profile = g.profile;
    -- (event_changes after the events: their deletion logged the contact)
    FOREACH "table" IN ARRAY ARRAY['engagement_scores', 'engagement_score_history', 'engagement_events',
                                   'pending_rescore', 'event_changes'] LOOP
        EXECUTE format('DELETE FROM @extschema@.%I t WHERE t.contact_id = $1', "table") USING contact_id;
        GET DIAGNOSTICS rows = ROW_COUNT;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@.forget_contact(bigint) IS
    'Erasure: removes everything the extension holds about a contact, in every profile (scores, history, pending and change-log rows, its rows of engagement_events) and returns the rows removed per table; a CRM''s own events are the CRM''s to delete';
REVOKE EXECUTE ON FUNCTION @extschema@.forget_contact(bigint) FROM PUBLIC;
