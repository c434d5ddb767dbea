-- presentation.sql: reads for people.  Scores rounded for psql (the raw float8 columns stay for
-- programs), a text histogram of the scores, and a campaign's funnel as a marketer reads it:
-- stages nested per contact and campaign, so no rate exceeds 1 (the independent per-stage counts
-- stay available as funnel_independent).

------------------------------------------------------------------------------------------------
-- Rounded scores
------------------------------------------------------------------------------------------------
-- readable_score rounds a score for people (the expectations named for what they are, over the
-- profile's horizon_days, not 30d): composite and components to 0.1, probabilities to 0.001,
-- expected engagement days and money to 0.01, tenure to 0.1 day, times to the second.
-- readable_scores rounds the stored ones the same way in its own query (below), which the planner
-- inlines; sql/presentation.sql checks each against the same rounding of the raw values.
CREATE FUNCTION @extschema@.readable_score(s @extschema@.score,
    OUT as_of timestamptz, OUT profile text, OUT composite numeric, OUT segment text,
    OUT recency numeric, OUT frequency numeric, OUT monetary numeric, OUT time_decay numeric,
    OUT diversity numeric, OUT engagement_probability numeric, OUT conversion_probability numeric,
    OUT churn_risk numeric, OUT expected_engagements_in_horizon numeric, OUT expected_conversion_value numeric,
    OUT expected_value_in_horizon numeric, OUT opted_out boolean, OUT event_count bigint, OUT engaging_count bigint,
    OUT conversion_total numeric, OUT first_event_at timestamptz, OUT last_engaged_at timestamptz,
    OUT undeliverable boolean, OUT tenure_days numeric)
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT date_trunc('second', s.as_of), s.profile, round(s.composite::numeric, 1), s.segment,
       round(s.recency::numeric, 1), round(s.frequency::numeric, 1), round(s.monetary::numeric, 1),
       round(s.time_decay::numeric, 1), round(s.diversity::numeric, 1),
       round(s.engagement_probability::numeric, 3), round(s.conversion_probability::numeric, 3),
       round(s.churn_risk::numeric, 3), round(s.expected_engagements_30d::numeric, 2),
       round(s.expected_conversion_value::numeric, 2), round(s.expected_value_30d::numeric, 2),
       s.opted_out, s.event_count, s.engaging_count, s.conversion_total,
       date_trunc('second', s.first_event_at), date_trunc('second', s.last_engaged_at),
       s.undeliverable, round(s.tenure_days::numeric, 1)
$$;
COMMENT ON FUNCTION @extschema@.readable_score(@extschema@.score) IS
    'A score rounded for people: composite and components to 0.1, probabilities to 0.001, expected days and values (over the profile''s horizon_days) to 0.01, times to the second; e.g. SELECT * FROM engagement.readable_score(engagement.engagement_score(42))';

-- readable_scores and readable_segments are SQL functions the planner inlines into the caller's
-- query, as predict is (predictions.sql): a caller's LIMIT, condition or ORDER BY plans over the
-- scores table itself (a condition on the contact or the segment reaches its scan; LIMIT n makes
-- the sort a top-n one), with no result set computed whole in between.  So their bodies have no
-- SET: every name is schema-qualified, operators and types included, so that the caller's
-- search_path cannot change what they call (sql/search_path.sql checks it), and the profile is
-- checked once per query (_profile_exists_or_error, a condition of constants the planner evaluates
-- before the scan).  They are not STRICT (that would stop the inlining): a NULL profile has no row,
-- as before.
--
-- readable_scores sorts the bare scores (the subquery) and computes what it shows of each in the
-- query above: the rounding (as readable_score rounds; sql/presentation.sql checks both against the
-- same rounding), is_stale and the horizon.  A caller's LIMIT then bounds the sort (a top-n sort: nothing
-- sits between them), and the planner computes is_stale's lookups after a caller's own sort, for
-- the rows it keeps.  is_stale is contact_scores' (queries.sql; sql/presentation.sql checks that
-- they agree), its profile's part (max_score_age, version, whether the source changed) computed
-- once per query: contact_scores' join to the profile would stand between the sort and the LIMIT.
CREATE FUNCTION @extschema@.readable_scores(profile text DEFAULT 'default')
RETURNS TABLE (contact_id bigint, composite numeric, percentile_rank numeric, segment text, recency numeric,
               frequency numeric, monetary numeric, time_decay numeric, diversity numeric,
               engagement_probability numeric, conversion_probability numeric, churn_risk numeric,
               expected_engagements_in_horizon numeric, expected_conversion_value numeric, expected_value_in_horizon numeric,
               opted_out boolean, event_count bigint, conversion_total numeric, last_engaged_at timestamptz,
               calculated_at timestamptz, is_stale boolean, undeliverable boolean, tenure_days numeric,
               horizon_days numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.contact_id, pg_catalog.round(s.composite::pg_catalog.numeric, 1),
           pg_catalog.round(s.percentile_rank::pg_catalog.numeric, 1), s.segment,
           pg_catalog.round(s.recency::pg_catalog.numeric, 1), pg_catalog.round(s.frequency::pg_catalog.numeric, 1),
           pg_catalog.round(s.monetary::pg_catalog.numeric, 1), pg_catalog.round(s.time_decay::pg_catalog.numeric, 1),
           pg_catalog.round(s.diversity::pg_catalog.numeric, 1),
           pg_catalog.round(s.engagement_probability::pg_catalog.numeric, 3),
           pg_catalog.round(s.conversion_probability::pg_catalog.numeric, 3),
           pg_catalog.round(s.churn_risk::pg_catalog.numeric, 3),
           pg_catalog.round(s.expected_engagements_30d::pg_catalog.numeric, 2),
           pg_catalog.round(s.expected_conversion_value::pg_catalog.numeric, 2),
           pg_catalog.round(s.expected_value_30d::pg_catalog.numeric, 2),
           s.opted_out, s.event_count, s.conversion_total, pg_catalog.date_trunc('second', s.last_engaged_at),
           pg_catalog.date_trunc('second', s.calculated_at),
           -- (OPERATOR() binds as any other operator does: left to right, hence the parentheses)
           (s.calculated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-)
                (SELECT sp.max_score_age FROM @extschema@.scoring_profiles sp WHERE sp.name OPERATOR(pg_catalog.=) $1))
            OR s.profile_version OPERATOR(pg_catalog.<>)
                (SELECT sp.version FROM @extschema@.scoring_profiles sp WHERE sp.name OPERATOR(pg_catalog.=) $1)
            OR s.model_version OPERATOR(pg_catalog.<>) @extschema@.model_version()
            -- (the fingerprints IS DISTINCT FROM each other, which would look its = up on the search_path)
            OR (SELECT NOT COALESCE(d.source_fingerprint OPERATOR(pg_catalog.=) f.fingerprint,
                                    d.source_fingerprint IS NULL AND f.fingerprint IS NULL)
                  FROM @extschema@.scoring_profiles sp
                 CROSS JOIN LATERAL (SELECT @extschema@._source_fingerprint(sp.events_relation) AS fingerprint) f
                  LEFT JOIN @extschema@.score_distributions d ON d.profile OPERATOR(pg_catalog.=) sp.name
                 WHERE sp.name OPERATOR(pg_catalog.=) $1)
            OR EXISTS (SELECT FROM @extschema@.pending_rescore pr
                        WHERE pr.profile OPERATOR(pg_catalog.=) s.profile AND pr.contact_id OPERATOR(pg_catalog.=) s.contact_id)
            OR EXISTS (SELECT FROM @extschema@.event_changes c WHERE c.contact_id OPERATOR(pg_catalog.=) s.contact_id)),
           s.undeliverable, pg_catalog.round(s.tenure_days::pg_catalog.numeric, 1),
           (SELECT sp.horizon_days FROM @extschema@.scoring_profiles sp
             WHERE sp.name OPERATOR(pg_catalog.=) $1)::pg_catalog.numeric
      FROM (SELECT sc.* FROM @extschema@.engagement_scores sc
             WHERE sc.profile OPERATOR(pg_catalog.=) COALESCE($1, '')
               AND @extschema@._profile_exists_or_error(
                       EXISTS (SELECT FROM @extschema@.scoring_profiles sp WHERE sp.name OPERATOR(pg_catalog.=) $1), $1)
             ORDER BY sc.composite DESC, sc.contact_id) s
$$;
COMMENT ON FUNCTION @extschema@.readable_scores(text) IS
    'The profile''s stored scores rounded as readable_score rounds them, with the percentile (0.1) and is_stale, best first; the expected engagement days and value are over the profile''s horizon_days, the last column; the raw values are in engagement_scores';

CREATE FUNCTION @extschema@.readable_segments(profile text DEFAULT 'default')
RETURNS TABLE (segment text, contacts bigint, share_pct numeric, mean_score numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT m.segment, m.contacts,
           pg_catalog.round((100 OPERATOR(pg_catalog.*) m.share)::pg_catalog.numeric, 1),
           pg_catalog.round(m.mean_score::pg_catalog.numeric, 1)
      FROM @extschema@.segment_summary($1) m
$$;
COMMENT ON FUNCTION @extschema@.readable_segments(text) IS
    'segment_summary for people: the share in percent and the mean score, both to 0.1';

------------------------------------------------------------------------------------------------
-- A text histogram of the scores
------------------------------------------------------------------------------------------------
CREATE FUNCTION @extschema@.score_histogram(profile text DEFAULT 'default', buckets integer DEFAULT 10)
RETURNS TABLE (score_range text, contacts bigint, share_pct numeric, bar text)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF buckets < 1 OR buckets > 100 THEN
        RAISE EXCEPTION 'buckets must be between 1 and 100, not %', buckets USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._profile_or_error(profile);
    -- Bucket i is [100 (i-1) / n, 100 i / n), the last one closed; a composite a rounding error
    -- above 100 falls in the last.  The longest bar is 40 characters; a bucket with contacts has at
    -- least one.
    RETURN QUERY
    WITH counts AS (
        SELECT least(width_bucket(s.composite, 0, 100, buckets), buckets) AS i, count(*) AS n
          FROM @extschema@.engagement_scores s
         WHERE s.profile = score_histogram.profile
         GROUP BY 1),
    filled AS (
        SELECT b.i, coalesce(c.n, 0) AS n FROM generate_series(1, buckets) b(i) LEFT JOIN counts c USING (i))
    SELECT format('[%s, %s%s', trim_scale(round(100.0 * (f.i - 1) / buckets, 1)),
                  trim_scale(round(100.0 * f.i / buckets, 1)), CASE WHEN f.i = buckets THEN ']' ELSE ')' END),
           f.n,
           round(100.0 * f.n / nullif(sum(f.n) OVER (), 0), 1),
           repeat('#', CASE WHEN f.n = 0 THEN 0
                            ELSE greatest(1, round(40.0 * f.n / max(f.n) OVER ())::integer) END)
      FROM filled f
     ORDER BY f.i;
END $$;
COMMENT ON FUNCTION @extschema@.score_histogram(text, integer) IS
    'A text histogram of the profile''s stored composites in psql: buckets (1..100) equal ranges of 0..100, each with its contacts, share in percent and a bar of # (40 for the largest)';

------------------------------------------------------------------------------------------------
-- Funnels
------------------------------------------------------------------------------------------------
-- The rows a profile's funnel counts, as the profile's source reads them (_source_select: the
-- CRM's kinds mapped, ignored and unreadable rows left out), with the caller's rights (as its
-- per-contact functions read them), in [since, until) and of the campaign; per_campaign: only rows
-- with a campaign (a funnel follows a campaign's messages), and then a source without a campaign
-- column has no funnel (55000).  A campaign without a row there: a NOTICE (its funnel is zeros).
CREATE FUNCTION @extschema@._funnel_rows(p @extschema@.scoring_profiles, campaign_id bigint, since timestamptz,
                                         until timestamptz, per_campaign boolean) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src   @extschema@.event_sources := @extschema@._source_of(p.events_relation);
    rows  text;
    empty boolean;
BEGIN
    IF since IS NULL OR until IS NULL THEN
        RAISE EXCEPTION 'since and until must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (per_campaign OR campaign_id IS NOT NULL) AND @extschema@._column_type(p.events_relation, src.campaign_column) IS NULL THEN
        RAISE EXCEPTION 'the source of scoring profile "%" (%) has no campaign column: its events are in no funnel',
                        p.name, p.events_relation
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Name it: SELECT engagement.define_event_source(%L, ..., campaign_column => ''<its campaign column>'');',
                                p.events_relation::text);
    END IF;
    rows := format('(SELECT e.contact_id, e.campaign_id, e.event_type FROM (%s) e
                      WHERE e.event_type IS NOT NULL AND e.occurred_at >= %L AND e.occurred_at < %L%s%s)',
                   @extschema@._source_select(src, @extschema@._live_events_or_error(p)), since, until,
                   CASE WHEN per_campaign THEN ' AND e.campaign_id IS NOT NULL' ELSE '' END,
                   CASE WHEN campaign_id IS NOT NULL THEN format(' AND e.campaign_id = %s', campaign_id) ELSE '' END);
    IF campaign_id IS NOT NULL THEN
        -- (a column to select: Citus plans a zero-column subquery of a distributed table wrongly)
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s r)', rows) INTO empty;
        IF empty THEN
            RAISE NOTICE 'campaign % has no events in [%, %) of the source of scoring profile "%" (%): its funnel is all zeros',
                         campaign_id, since, until, p.name, p.events_relation;
        END IF;
    END IF;
    RETURN rows;
END $$;

-- The marketer's funnel over the profile's chain of stages (funnel_stages; delivered -> opened ->
-- clicked -> responded -> converted by default).  A (contact, campaign) pair reaches a stage of
-- the chain when it has events of that stage and of every earlier one in the window (in any order
-- of time); a contact counts at a stage when one of its campaigns took it there.  So each stage's
-- contacts are among the previous stage's, and no rate exceeds 1.  Then opted_out and opted_in:
-- contacts that reached the first stage and opted out (in) in the same campaign; bounced: contacts
-- with a bounce (a message that was not delivered: no rate).
CREATE FUNCTION @extschema@.funnel(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
                                   until timestamptz DEFAULT 'infinity', profile text DEFAULT 'default')
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles := @extschema@._profile_or_error(profile);
BEGIN
    -- EXECUTE plans with the actual values: without a campaign the filter folds away, with one
    -- the source's campaign index (engagement_events has one) is used.  $1 the chain, $2 every event
    -- type in the order of the counts n.
    RETURN QUERY EXECUTE format($q$
    WITH stages(stage, ord, in_chain) AS (
        SELECT c.t::text, c.i::int, true FROM unnest($1) WITH ORDINALITY c(t, i)
        UNION ALL VALUES ('opted_out', cardinality($1) + 1, false), ('opted_in', cardinality($1) + 2, false),
                         ('bounced', cardinality($1) + 3, false)),
    pairs AS (   -- per (contact, campaign): the events of each type
        SELECT e.contact_id, ARRAY[%2$s] AS n FROM %1$s e GROUP BY e.contact_id, e.campaign_id),
    depths AS (  -- how many stages of the chain, from the first on, the pair reached
        SELECT p.contact_id, p.n,
               coalesce((SELECT min(c.i) - 1 FROM unnest($1) WITH ORDINALITY c(t, i)
                          WHERE p.n[array_position($2, c.t::text)] = 0), cardinality($1)) AS depth
          FROM pairs p),
    counted AS (
        SELECT st.stage, st.ord, st.in_chain, count(DISTINCT d.contact_id) AS contacts,
               coalesce(sum(d.n[array_position($2, st.stage)]), 0)::bigint AS events
          FROM stages st
          LEFT JOIN depths d ON d.n[array_position($2, st.stage)] > 0
                            AND CASE st.stage WHEN 'opted_out' THEN d.depth >= 1 WHEN 'opted_in' THEN d.depth >= 1
                                              WHEN 'bounced' THEN true
                                              ELSE d.depth >= st.ord END
         GROUP BY st.stage, st.ord, st.in_chain)
    SELECT c.stage, c.contacts, c.events,
           CASE WHEN c.in_chain AND c.ord > 1
                THEN c.contacts::float8 / nullif(lag(c.contacts) OVER (PARTITION BY c.in_chain ORDER BY c.ord), 0) END,
           CASE WHEN c.stage <> 'bounced'
                THEN c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.ord = 1), 0) END
      FROM counted c ORDER BY c.ord
    $q$, @extschema@._funnel_rows(p, campaign_id, since, until, true),
         (SELECT string_agg(format('count(*) FILTER (WHERE e.event_type = %L)', t), ', ')
            FROM unnest(enum_range(NULL::@extschema@.event_type)) t))
    USING p.funnel_stages, enum_range(NULL::@extschema@.event_type)::text[];
END $$;
COMMENT ON FUNCTION @extschema@.funnel(bigint, timestamptz, timestamptz, text) IS
    'The funnel of a campaign (or of every campaign) over the profile''s source and its chain of stages (funnel_stages: delivered > opened > clicked > responded > converted by default), nested: a contact counts at a stage when, in one campaign, it has events of that stage and every earlier one in [since, until), so rates never exceed 1; then opted_out and opted_in (of the first stage) and bounced (no rate); rate_from_delivered is from the first stage. Independent per-stage counts: funnel_independent';

-- Per stage, counted on its own: distinct contacts and events of that type.
CREATE FUNCTION @extschema@.funnel_independent(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
                                               until timestamptz DEFAULT 'infinity', profile text DEFAULT 'default')
RETURNS TABLE (stage text, contacts bigint, events bigint, rate_from_previous float8, rate_from_delivered float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles := @extschema@._profile_or_error(profile);
BEGIN
    RETURN QUERY EXECUTE format($q$
    WITH counts AS (
        SELECT e.event_type::text AS stage, count(DISTINCT e.contact_id) AS contacts, count(*) AS events
          FROM %s e GROUP BY e.event_type),
    stages(stage, ord, in_funnel) AS (
        SELECT c.t::text, c.i::int, true FROM unnest($1) WITH ORDINALITY c(t, i)
        UNION ALL VALUES ('opted_out', cardinality($1) + 1, false), ('opted_in', cardinality($1) + 2, false),
                         ('bounced', cardinality($1) + 3, false)),
    counted AS (
        SELECT st.stage, st.ord, st.in_funnel, coalesce(c.contacts, 0) AS contacts, coalesce(c.events, 0) AS events
          FROM stages st LEFT JOIN counts c USING (stage))
    SELECT c.stage, c.contacts, c.events,
           CASE WHEN c.in_funnel AND c.ord > 1
                THEN c.contacts::float8 / nullif(lag(c.contacts) OVER (PARTITION BY c.in_funnel ORDER BY c.ord), 0) END,
           c.contacts::float8 / nullif((SELECT d.contacts FROM counted d WHERE d.ord = 1), 0)
      FROM counted c ORDER BY c.ord
    $q$, @extschema@._funnel_rows(p, campaign_id, since, until, false)) USING p.funnel_stages;
END $$;
COMMENT ON FUNCTION @extschema@.funnel_independent(bigint, timestamptz, timestamptz, text) IS
    'Per stage of the profile''s funnel (and opted_out, opted_in, bounced), counted independently of the others over its source: distinct contacts and events in [since, until) (of the campaign, or all events, those without a campaign included), and the contact rate from the previous stage and from the first, which can exceed 1 (contacts converting without responding, say); the nested funnel is funnel';
