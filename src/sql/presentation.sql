-- presentation.sql: reads for people.  Scores rounded for psql (the raw float8 columns stay for
-- programs), a text histogram of the scores, and a campaign's funnel as a marketer reads it:
-- stages nested per contact and campaign, so no rate exceeds 1 (the independent per-stage counts
-- stay available as funnel_independent).

------------------------------------------------------------------------------------------------
-- Rounded scores
------------------------------------------------------------------------------------------------
-- One place for the rounding: components and composite to 0.1 point, probabilities to 0.001,
-- expected engagement days and money to 0.01, times to the second.
CREATE FUNCTION @extschema@.readable_score(s @extschema@.score,
    OUT as_of timestamptz, OUT profile text, OUT composite numeric, OUT segment text,
    OUT recency numeric, OUT frequency numeric, OUT monetary numeric, OUT time_decay numeric,
    OUT diversity numeric, OUT engagement_probability numeric, OUT conversion_probability numeric,
    OUT churn_risk numeric, OUT expected_engagements_30d numeric, OUT expected_conversion_value numeric,
    OUT expected_value_30d numeric, OUT opted_out boolean, OUT event_count bigint, OUT engaging_count bigint,
    OUT conversion_total numeric, OUT first_event_at timestamptz, OUT last_engaged_at timestamptz)
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT date_trunc('second', s.as_of), s.profile, round(s.composite::numeric, 1), s.segment,
       round(s.recency::numeric, 1), round(s.frequency::numeric, 1), round(s.monetary::numeric, 1),
       round(s.time_decay::numeric, 1), round(s.diversity::numeric, 1),
       round(s.engagement_probability::numeric, 3), round(s.conversion_probability::numeric, 3),
       round(s.churn_risk::numeric, 3), round(s.expected_engagements_30d::numeric, 2),
       round(s.expected_conversion_value::numeric, 2), round(s.expected_value_30d::numeric, 2),
       s.opted_out, s.event_count, s.engaging_count, s.conversion_total,
       date_trunc('second', s.first_event_at), date_trunc('second', s.last_engaged_at)
$$;
COMMENT ON FUNCTION @extschema@.readable_score(@extschema@.score) IS
    'A score rounded for people: composite and components to 0.1, probabilities to 0.001, expected days and values to 0.01, times to the second; e.g. SELECT * FROM engagement.readable_score(engagement.engagement_score(42))';

CREATE FUNCTION @extschema@.readable_scores(profile text DEFAULT 'default')
RETURNS TABLE (contact_id bigint, composite numeric, percentile_rank numeric, segment text, recency numeric,
               frequency numeric, monetary numeric, time_decay numeric, diversity numeric,
               engagement_probability numeric, conversion_probability numeric, churn_risk numeric,
               expected_engagements_30d numeric, expected_conversion_value numeric, expected_value_30d numeric,
               opted_out boolean, event_count bigint, conversion_total numeric, last_engaged_at timestamptz,
               calculated_at timestamptz, is_stale boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._profile_or_error(profile);
    RETURN QUERY
    SELECT s.contact_id, r.composite, round(s.percentile_rank::numeric, 1), r.segment, r.recency, r.frequency,
           r.monetary, r.time_decay, r.diversity, r.engagement_probability, r.conversion_probability,
           r.churn_risk, r.expected_engagements_30d, r.expected_conversion_value, r.expected_value_30d,
           r.opted_out, r.event_count, r.conversion_total, r.last_engaged_at, r.as_of, s.is_stale
      FROM @extschema@.contact_scores s,
           LATERAL @extschema@.readable_score(ROW(s.calculated_at, s.profile, s.composite, s.recency, s.frequency,
               s.monetary, s.time_decay, s.diversity, s.engagement_probability, s.conversion_probability,
               s.churn_risk, s.segment, s.opted_out, s.event_count, s.engaging_count, s.conversion_total,
               s.first_event_at, s.last_engaged_at, s.expected_engagements_30d, s.expected_conversion_value,
               s.expected_value_30d)::@extschema@.score) r
     WHERE s.profile = readable_scores.profile
     ORDER BY s.composite DESC, s.contact_id;
END $$;
COMMENT ON FUNCTION @extschema@.readable_scores(text) IS
    'The profile''s stored scores rounded as readable_score rounds them, with the percentile (0.1) and is_stale, best first; the raw values are in engagement_scores';

CREATE FUNCTION @extschema@.readable_segments(profile text DEFAULT 'default')
RETURNS TABLE (segment text, contacts bigint, share_pct numeric, mean_score numeric)
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT m.segment, m.contacts, round((100 * m.share)::numeric, 1), round(m.mean_score::numeric, 1)
  FROM @extschema@.segment_summary(profile) m
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
-- The events the funnels count: the default profile's events relation when it has the columns a
-- funnel reads (contact_id, campaign_id, event_type of type event_type, occurred_at: a CRM table
-- such as the one citus_distribute distributes), else engagement_events.  Read with the caller's
-- rights, as any query of it.
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

-- The marketer's funnel.  A (contact, campaign) pair reaches a stage of the chain delivered ->
-- opened -> clicked -> responded -> converted when it has events of that stage and of every earlier
-- one in the window (in any order of time); a contact counts at a stage when one of its campaigns
-- took it there.  So each stage's contacts are among the previous stage's, and no rate exceeds 1.
-- opted_out: contacts delivered and opting out in the same campaign; bounced: contacts with a
-- bounce (a message that was not delivered: no rate).  Events without a campaign are in no funnel.
CREATE FUNCTION @extschema@.funnel(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
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
COMMENT ON FUNCTION @extschema@.funnel(bigint, timestamptz, timestamptz) IS
    'The funnel delivered > opened > clicked > responded > converted of a campaign (or of every campaign), nested: a contact counts at a stage when, in one campaign, it has events of that stage and every earlier one in [since, until), so rates never exceed 1; then opted_out (of the delivered) and bounced (no rate). Independent per-stage counts: funnel_independent';

-- The per-stage counts of 1.1 to 1.3's funnel, each stage counted on its own.
CREATE FUNCTION @extschema@.funnel_independent(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
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
COMMENT ON FUNCTION @extschema@.funnel_independent(bigint, timestamptz, timestamptz) IS
    'Per stage, counted independently of the others: distinct contacts and events in [since, until) (of the campaign, or all events, those without a campaign included) and the contact rate from the previous stage and from delivered, which can exceed 1 (contacts converting without responding, say); the nested funnel is funnel';
