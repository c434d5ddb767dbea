-- queries.sql: reading stored scores (percentiles, staleness, cached scores, segments, trends) and
-- event pagination.

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

-- (each profile's source fingerprint computed once, not per score: OFFSET 0 keeps the subquery whole.
-- is_stale's condition is written again in cached_score, over a Citus node's placements, and in
-- readable_scores' own query: change the three together)
CREATE VIEW @extschema@.contact_scores WITH (security_invoker = true) AS
SELECT s.*,
       (s.calculated_at < now() - p.max_score_age
        OR s.profile_version <> p.version
        OR s.model_version <> @extschema@.model_version()
        OR p.source_changed
        OR EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = s.profile AND pr.contact_id = s.contact_id)
        OR EXISTS (SELECT FROM @extschema@.event_changes c WHERE c.contact_id = s.contact_id)) AS is_stale
  FROM @extschema@.engagement_scores s
  JOIN (SELECT sp.name, sp.max_score_age, sp.version,
               d.source_fingerprint IS DISTINCT FROM @extschema@._source_fingerprint(sp.events_relation) AS source_changed
          FROM @extschema@.scoring_profiles sp
          LEFT JOIN @extschema@.score_distributions d ON d.profile = sp.name
        OFFSET 0) p ON p.name = s.profile;
COMMENT ON VIEW @extschema@.contact_scores IS
    'Stored scores with is_stale: older than the profile''s max_score_age, scored under an older profile version or model version or from a source defined otherwise, or events changed since';
SELECT @extschema@._comment_score_columns('@extschema@.contact_scores');
COMMENT ON COLUMN @extschema@.contact_scores.is_stale IS
    'Older than max_score_age, of another profile or model version, or the contact''s events changed since';

CREATE FUNCTION @extschema@.cached_score(contact_id bigint, max_age interval DEFAULT '1 hour',
                                         profile text DEFAULT 'default')
RETURNS @extschema@.score
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r @extschema@.score;
BEGIN
    IF @extschema@._in_citus_shard_query() THEN
        -- In a Citus task, contact_scores' query over this node's placements (_citus_local_relation):
        -- the contact's shards of the scores and the change log, the reference tables' copies.
        EXECUTE format($q$
            SELECT j.*
              FROM %1$s s
              JOIN %2$s sp ON sp.name = s.profile
              LEFT JOIN %3$s d ON d.profile = sp.name,
                   LATERAL jsonb_populate_record(NULL::@extschema@.score, to_jsonb(s) || jsonb_build_object('as_of', s.calculated_at)) j
             WHERE s.profile = $1 AND s.contact_id = $2 AND s.calculated_at >= now() - $3
               AND NOT (s.calculated_at < now() - sp.max_score_age
                        OR s.profile_version <> sp.version
                        OR s.model_version <> @extschema@.model_version()
                        OR d.source_fingerprint IS DISTINCT FROM @extschema@._source_fingerprint(sp.events_relation)
                        OR EXISTS (SELECT FROM %4$s pr WHERE pr.profile = s.profile AND pr.contact_id = s.contact_id)
                        OR EXISTS (SELECT FROM %5$s c WHERE c.contact_id = s.contact_id))$q$,
            @extschema@._citus_local_relation('@extschema@.engagement_scores', contact_id),
            @extschema@._citus_local_relation('@extschema@.scoring_profiles', NULL),
            @extschema@._citus_local_relation('@extschema@.score_distributions', NULL),
            @extschema@._citus_local_relation('@extschema@.pending_rescore', NULL),
            @extschema@._citus_local_relation('@extschema@.event_changes', contact_id))
          INTO r USING profile, contact_id, max_age;
        IF r.as_of IS NOT NULL THEN   -- (EXECUTE does not set FOUND; a stored score has its calculated_at)
            RETURN r;
        END IF;
        RETURN @extschema@.engagement_score(contact_id, now(), profile);
    END IF;
    -- (the stored row's fields by name: the score's fields are the table's columns, as_of its calculated_at)
    SELECT j.* INTO r
      FROM @extschema@.contact_scores s,
           LATERAL jsonb_populate_record(NULL::@extschema@.score, to_jsonb(s) || jsonb_build_object('as_of', s.calculated_at)) j
     WHERE s.profile = cached_score.profile AND s.contact_id = cached_score.contact_id
       AND NOT s.is_stale AND s.calculated_at >= now() - max_age;
    IF FOUND THEN
        RETURN r;
    END IF;
    RETURN @extschema@.engagement_score(contact_id, now(), profile);
END $$;
COMMENT ON FUNCTION @extschema@.cached_score(bigint, interval, text) IS
    'The stored score when it is fresh (not stale, and computed within max_age), else a live one';

-- (an SQL function the planner inlines into the caller's query, as readable_scores is: every name
-- schema-qualified, operators and types included, the profile checked once, presentation.sql)
CREATE FUNCTION @extschema@.segment_summary(profile text DEFAULT 'default')
RETURNS TABLE (segment text, contacts bigint, share float8, mean_score float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.segment, pg_catalog.count(*),
           pg_catalog.count(*)::pg_catalog.float8
               OPERATOR(pg_catalog./) (pg_catalog.sum(pg_catalog.count(*)) OVER ())::pg_catalog.float8,
           pg_catalog.avg(s.composite)
      FROM @extschema@.engagement_scores s
     WHERE s.profile OPERATOR(pg_catalog.=) COALESCE($1, '')
       AND @extschema@._profile_exists_or_error(
               EXISTS (SELECT FROM @extschema@.scoring_profiles sp WHERE sp.name OPERATOR(pg_catalog.=) $1), $1)
     GROUP BY s.segment
     ORDER BY pg_catalog.avg(s.composite) DESC, s.segment
$$;
COMMENT ON FUNCTION @extschema@.segment_summary(text) IS
    'Per segment of the profile''s stored scores: contacts, their share of all scored contacts (0..1) and the mean composite, best segments first';

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
-- Event pagination (the funnels are in presentation.sql)
------------------------------------------------------------------------------------------------
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

-- One contact's events as a profile's source reads them (engagement_events or the CRM's own
-- relation): newest first, a page at a time, with the CRM's own kind beside the event type it maps
-- to (NULL: unmapped, not scored).
CREATE FUNCTION @extschema@.profile_events(contact_id bigint, profile text DEFAULT 'default',
                                           before timestamptz DEFAULT 'infinity', page_size integer DEFAULT 50)
RETURNS TABLE (occurred_at timestamptz, event_type @extschema@.event_type, kind text, conversion_value numeric)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles := @extschema@._profile_or_error(profile);
BEGIN
    IF page_size < 1 OR page_size > 10000 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 10000, not %', page_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format('SELECT e.occurred_at, e.event_type, e.kind, e.conversion_value FROM (%s) e
                                  WHERE e.contact_id = $1 AND e.occurred_at < $2
                                  ORDER BY e.occurred_at DESC LIMIT $3',
                                @extschema@._source_select(@extschema@._source_of(p.events_relation),
                                                           @extschema@._contact_events_relation(p, contact_id)))
      USING contact_id, before, page_size;
END $$;
COMMENT ON FUNCTION @extschema@.profile_events(bigint, text, timestamptz, integer) IS
    'One contact''s events as the profile reads them (its events_relation through its source), newest first, before a time (pass the oldest occurred_at of a page for the next), with the CRM''s own kind and the event type it maps to (NULL: unmapped)';
