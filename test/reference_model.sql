-- test/reference_model.sql: docs/model.md (version 3) written independently in plain SQL, schema ref.
-- The regression tests compare the extension against it; it is also the plain-SQL baseline.
-- It follows the formulas literally (power(), 1 - exp()), unlike the C++ kernel's log-space forms.
CREATE SCHEMA IF NOT EXISTS ref;

-- a close to b: 1e-9 relative, or 1e-12 absolute for values at zero.  Never NULL: a NULL is
-- close only to a NULL (so that `WHERE NOT ref.close(got, expected)` also reports a missing value).
CREATE FUNCTION ref.close(a float8, b float8) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL OR b IS NULL THEN a IS NULL AND b IS NULL
                ELSE abs(a - b) <= greatest(1e-9 * greatest(abs(a), abs(b)), 1e-12) END
$$;

-- got fails the test against expected: '~' close (ref.close), '=' exactly equal (NULL = NULL),
-- '<', '<=', '>', '>=', 'within 0.001' (|got - expected| < 0.001), 'within 10%'
-- (|got / expected - 1| < 0.10);
-- NULL fails all but '~' and '='.  For checks that list their failures as rows of
-- (what, got, test, expected): WHERE ref.fails(got, test, expected).
CREATE FUNCTION ref.fails(got float8, test text, expected float8) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF test ~ '^within [0-9.e+-]+%$' THEN
        RETURN (abs(got / expected - 1) < rtrim(substr(test, 8), '%')::float8 / 100) IS NOT TRUE;
    ELSIF test ~ '^within [0-9.e+-]+$' THEN
        RETURN (abs(got - expected) < substr(test, 8)::float8) IS NOT TRUE;
    ELSIF test IS NULL OR test NOT IN ('~', '=', '<', '<=', '>', '>=') THEN
        RAISE EXCEPTION 'ref.fails: unknown test %', test;
    END IF;
    RETURN CASE test WHEN '~' THEN NOT ref.close(got, expected)
                     WHEN '=' THEN got IS DISTINCT FROM expected
                     WHEN '<' THEN (got < expected) IS NOT TRUE
                     WHEN '<=' THEN (got <= expected) IS NOT TRUE
                     WHEN '>' THEN (got > expected) IS NOT TRUE
                     WHEN '>=' THEN (got >= expected) IS NOT TRUE
           END;
END $$;

-- A statement's plan (EXPLAIN (COSTS OFF)) in the words every supported PostgreSQL uses: 17 stopped
-- naming what an InitPlan returns ("InitPlan 1 (returns $1)" became "InitPlan 1"), 18 marks the
-- nodes an enable_* setting turned off but the plan needs ("Disabled: true").
CREATE FUNCTION ref.plan(stmt text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || stmt LOOP
        CONTINUE WHEN line ~ '^ *Disabled: true$';
        RETURN NEXT regexp_replace(line, '^( *InitPlan \d+) \(returns [$\d,]+\)$', '\1');
    END LOOP;
END $$;

-- A stored score as the score it was stored from: the fields by name, as_of its calculated_at.
CREATE FUNCTION ref.as_score(s engagement.engagement_scores) RETURNS engagement.score LANGUAGE sql STABLE AS $$
    SELECT jsonb_populate_record(NULL::engagement.score, to_jsonb(s) || jsonb_build_object('as_of', s.calculated_at))
$$;

-- The SQLSTATE and message of a statement, or 'ok'.
CREATE FUNCTION ref.sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE TYPE ref.score AS (
    composite float8, recency float8, frequency float8, monetary float8, time_decay float8,
    diversity float8, engagement_probability float8, conversion_probability float8,
    churn_risk float8, segment text, opted_out boolean, event_count bigint, engaging_count bigint,
    -- Gamma-Gamma: the next conversion day's value, and expected_value_30d per expected engagement day
    -- (the reference has no 2F1: expected_engagements_30d is checked against lifetimes' closed form
    -- in the kernel's unit tests)
    expected_conversion_value float8, value_per_engagement_day float8,
    -- version 3: the undeliverable flag, the tenure, and the stored summary
    undeliverable boolean, tenure_days float8, birth_at timestamptz, x bigint, t_x bigint, t_c bigint,
    n_days bigint, conv_days bigint, x_v bigint, m_v float8);

-- The score of every contact of an events rowset, as of a time.  events is a FROM item
-- (a table name or a parenthesised query) with contact_id, event_type, occurred_at, conversion_value.
CREATE FUNCTION ref.scores(events text, as_of timestamptz, profile text DEFAULT 'default')
RETURNS TABLE (contact_id bigint, s ref.score) LANGUAGE plpgsql STABLE AS $fn$
BEGIN
RETURN QUERY EXECUTE format($q$
WITH p AS (SELECT * FROM engagement.scoring_profiles WHERE name = $2),
ev AS (
    SELECT e.contact_id::bigint, e.event_type::text AS type, e.occurred_at AS at,
           coalesce(e.conversion_value, 0)::float8 AS value,
           ((extract(epoch FROM $1) - extract(epoch FROM e.occurred_at)) / 86400)::float8 AS age,
           floor(extract(epoch FROM e.occurred_at) / 86400)::bigint AS day,
           e.event_type::text IN ('opened', 'clicked', 'responded', 'converted') AS engaging
      FROM %s e
     WHERE e.occurred_at <= $1),
-- the birth day b0: the day of the contact's first event
born AS (SELECT ev.*, min(ev.day) OVER (PARTITION BY ev.contact_id) AS b0 FROM ev),
-- conversion days and their values (the sum of the day's conversions)
cday AS (SELECT contact_id, day, sum(value) AS day_value FROM ev WHERE type = 'converted' GROUP BY contact_id, day),
val AS (SELECT contact_id, count(*) FILTER (WHERE day_value > 0) AS x_v,
               coalesce(avg(day_value) FILTER (WHERE day_value > 0), 0) AS m_v
          FROM cday GROUP BY contact_id),
win AS (SELECT ev.* FROM ev, p WHERE ev.age <= p.lookback_days),
w AS (
    SELECT win.contact_id,
           min(age) FILTER (WHERE engaging) AS d,
           count(*) FILTER (WHERE engaging) AS n,
           max(age) AS oldest,
           sum(value) FILTER (WHERE type = 'converted') AS v,
           sum(CASE type WHEN 'delivered' THEN p.decay_weight_delivered WHEN 'opened' THEN p.decay_weight_opened
                         WHEN 'clicked' THEN p.decay_weight_clicked WHEN 'responded' THEN p.decay_weight_responded
                         WHEN 'converted' THEN p.decay_weight_converted WHEN 'opted_out' THEN p.decay_weight_opted_out
                         WHEN 'opted_in' THEN p.decay_weight_opted_in
                         ELSE p.decay_weight_bounced END * power(2::float8, -age / p.half_life_days)) AS raw
      FROM win, p GROUP BY win.contact_id),
ent AS (
    SELECT contact_id, -sum((c::float8 / n) * ln(c::float8 / n)) AS h
      FROM (SELECT contact_id, count(*) AS c, sum(count(*)) OVER (PARTITION BY contact_id) AS n
              FROM win WHERE engaging GROUP BY contact_id, type) t
     GROUP BY contact_id),
-- the latest time the contact was reached (a delivery or an engagement), beside each event
reach AS (SELECT born.*, max(at) FILTER (WHERE type = 'delivered' OR engaging) OVER (PARTITION BY contact_id) AS last_reached
            FROM born),
allt AS (
    SELECT contact_id,
           count(*) AS event_count,
           count(*) FILTER (WHERE engaging) AS engaging_count,
           -- the latest of the opt-outs and opt-ins is an opt-out (the opt-out wins a tie)
           coalesce(max(at) FILTER (WHERE type = 'opted_out') >= max(at) FILTER (WHERE type = 'opted_in'),
                    bool_or(type = 'opted_out')) AS opted,
           count(*) FILTER (WHERE type = 'bounced' AND (last_reached IS NULL OR at > last_reached)) AS bounces_since,
           max(age) AS tenure,
           min(b0) AS b0,
           count(DISTINCT day) FILTER (WHERE engaging) AS n_days,
           count(DISTINCT day) FILTER (WHERE engaging AND day > b0) AS x,
           max(day) FILTER (WHERE engaging AND day > b0) AS last_day,
           count(DISTINCT day) FILTER (WHERE type = 'converted') AS conv_days
      FROM reach GROUP BY contact_id),
comp AS (
    SELECT a.contact_id, a.event_count, a.engaging_count, a.opted, a.x, a.n_days, a.conv_days,
           a.bounces_since >= p.undeliverable_after AS undeliverable, a.tenure, a.b0,
           coalesce(val.x_v, 0) AS x_v, coalesce(val.m_v, 0) AS m_v,
           CASE WHEN a.x > 0 THEN a.last_day - a.b0 ELSE 0 END::float8 AS t_x,
           (floor(extract(epoch FROM $1) / 86400) - a.b0)::float8 AS tc,
           CASE WHEN w.d IS NULL THEN 0 ELSE 100 * exp(-w.d / p.recency_tau_days) END AS r,
           CASE WHEN w.contact_id IS NULL THEN 0
                ELSE 100 * (1 - exp(-(w.n / least(greatest(w.oldest, p.frequency_min_days), p.lookback_days))
                                    / p.frequency_ref_rate)) END AS f,
           CASE WHEN coalesce(w.v, 0) <= 0 THEN 0
                ELSE least(100, 100 * ln(1 + w.v) / ln(1 + p.monetary_ref_value)) END AS m,
           100 * (1 - exp(-greatest(coalesce(w.raw, 0), 0) / p.time_decay_ref)) AS td,
           coalesce(100 * ent.h / ln(4), 0) AS dv
      FROM allt a CROSS JOIN p
      LEFT JOIN w ON w.contact_id = a.contact_id
      LEFT JOIN ent ON ent.contact_id = a.contact_id
      LEFT JOIN val ON val.contact_id = a.contact_id),
pred AS (
    SELECT comp.*,
           1 / (1 + (p.model_a / (p.model_b + x)) * power((p.model_alpha + tc) / (p.model_alpha + t_x), p.model_r + x)) AS p_alive,
           p.weight_recency * r + p.weight_frequency * f + p.weight_monetary * m
             + p.weight_time_decay * td + p.weight_diversity * dv AS s,
           least(5, 1 + floor(r / 20))::int AS rq, least(5, 1 + floor(f / 20))::int AS fq,
           least(5, 1 + floor(m / 20))::int AS mq
      FROM comp, p),
fin AS (
    SELECT pred.*,
           p_alive * (1 - power((p.model_alpha + tc) / (p.model_alpha + tc + p.horizon_days), p.model_r + x)) AS ep,
           (conv_days + p.conv_prior_a) / (n_days + p.conv_prior_a + p.conv_prior_b) AS q,
           p.gg_p * (p.gg_v + x_v * m_v) / (p.gg_p * x_v + p.gg_q - 1) AS ecv,
           floor((fq + mq) / 2.0 + 0.5)::int AS fmq,
           CASE WHEN opted THEN 1 - p.opt_out_penalty ELSE 1 END
             * CASE WHEN undeliverable THEN 1 - p.undeliverable_penalty ELSE 1 END AS keep,
           tenure < p.new_contact_days AS is_new
      FROM pred, p)
SELECT contact_id, ROW(
    s * keep, r, f, m, td, dv, ep * keep, ep * q * keep, 1 - (1 - (1 - p_alive)) * keep,
    CASE WHEN opted THEN 'opted_out'
         WHEN undeliverable THEN 'undeliverable'
         WHEN is_new THEN 'new'
         WHEN rq >= 4 AND fmq >= 4 THEN 'champions'
         WHEN rq >= 3 AND fmq >= 4 THEN 'loyal'
         WHEN rq >= 4 AND fmq >= 2 THEN 'potential_loyalist'
         WHEN rq >= 3 AND fmq <= 2 THEN 'promising'
         WHEN rq = 3 AND fmq = 3 THEN 'need_attention'
         WHEN rq = 2 AND fmq >= 3 THEN 'at_risk'
         WHEN rq = 1 AND fmq >= 4 THEN 'cannot_lose'
         WHEN rq = 2 AND fmq <= 2 THEN 'about_to_sleep'
         WHEN rq = 1 AND fmq >= 2 THEN 'hibernating'
         ELSE 'lost' END,
    opted, event_count, engaging_count, ecv, q * ecv,
    undeliverable, tenure, to_timestamp(b0 * 86400), x, t_x::bigint, tc::bigint, n_days, conv_days, x_v, m_v)::ref.score
  FROM fin
$q$, events) USING as_of, profile;
END $fn$;

-- The fields of an extension score that differ from the reference's, one row each, none when all
-- agree: (field, got, expected) as text, got from a, expected from b.  Floats within ref.close, the
-- others exactly.  Not strict: a score missing on one side (NULL) differs in every field.  PL/pgSQL,
-- so that it is not inlined: an argument such as engagement_score(...) is evaluated once.
CREATE FUNCTION ref.reference_mismatches(a engagement.score, b ref.score)
RETURNS TABLE (field text, got text, expected text) LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT f.field, f.g::text, f.e::text
      FROM (VALUES ('composite', a.composite, b.composite),
                   ('recency', a.recency, b.recency),
                   ('frequency', a.frequency, b.frequency),
                   ('monetary', a.monetary, b.monetary),
                   ('time_decay', a.time_decay, b.time_decay),
                   ('diversity', a.diversity, b.diversity),
                   ('engagement_probability', a.engagement_probability, b.engagement_probability),
                   ('conversion_probability', a.conversion_probability, b.conversion_probability),
                   ('churn_risk', a.churn_risk, b.churn_risk),
                   ('expected_conversion_value', a.expected_conversion_value, b.expected_conversion_value),
                   ('expected_value_30d', a.expected_value_30d,
                    a.expected_engagements_30d * b.value_per_engagement_day),
                   ('tenure_days', a.tenure_days, b.tenure_days),
                   ('m_v', a.m_v, b.m_v)) f(field, g, e)
     WHERE NOT ref.close(f.g, f.e)
    UNION ALL
    SELECT f.field, f.g, f.e
      FROM (VALUES ('segment', a.segment, b.segment),
                   ('opted_out', a.opted_out::text, b.opted_out::text),
                   ('undeliverable', a.undeliverable::text, b.undeliverable::text),
                   ('event_count', a.event_count::text, b.event_count::text),
                   ('engaging_count', a.engaging_count::text, b.engaging_count::text),
                   ('birth_at', a.birth_at::text, b.birth_at::text),
                   ('x', a.x::text, b.x::text), ('t_x', a.t_x::text, b.t_x::text), ('t_c', a.t_c::text, b.t_c::text),
                   ('n_days', a.n_days::text, b.n_days::text), ('conv_days', a.conv_days::text, b.conv_days::text),
                   ('x_v', a.x_v::text, b.x_v::text)) f(field, g, e)
     WHERE f.g IS DISTINCT FROM f.e;
END $$;

-- Two extension scores field by field: the fields that differ, one row each, none when all agree:
-- (field, got, expected) as text, got from a, expected from b.  how = 'close': floats within
-- ref.close, the others exactly; 'exact': every field exactly (as the row comparison
-- `a IS DISTINCT FROM b` does); 'text': every field's text form (as `a::text IS DISTINCT FROM
-- b::text` does, under the session's extra_float_digits).  Not strict: a score missing on one
-- side differs in every field.
CREATE FUNCTION ref.score_mismatches(a engagement.score, b engagement.score, how text DEFAULT 'close')
RETURNS TABLE (field text, got text, expected text) LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF how IS NULL OR how NOT IN ('close', 'exact', 'text') THEN
        RAISE EXCEPTION 'ref.score_mismatches: how must be close, exact or text, not %', how;
    END IF;
    RETURN QUERY
    SELECT f.field, f.g::text, f.e::text
      FROM (VALUES ('composite', a.composite, b.composite),
                   ('recency', a.recency, b.recency),
                   ('frequency', a.frequency, b.frequency),
                   ('monetary', a.monetary, b.monetary),
                   ('time_decay', a.time_decay, b.time_decay),
                   ('diversity', a.diversity, b.diversity),
                   ('engagement_probability', a.engagement_probability, b.engagement_probability),
                   ('conversion_probability', a.conversion_probability, b.conversion_probability),
                   ('churn_risk', a.churn_risk, b.churn_risk),
                   ('expected_engagements_30d', a.expected_engagements_30d, b.expected_engagements_30d),
                   ('expected_conversion_value', a.expected_conversion_value, b.expected_conversion_value),
                   ('expected_value_30d', a.expected_value_30d, b.expected_value_30d),
                   ('tenure_days', a.tenure_days, b.tenure_days),
                   ('m_v', a.m_v, b.m_v)
           ) f(field, g, e)
     WHERE CASE how WHEN 'close' THEN NOT ref.close(f.g, f.e)
                    WHEN 'exact' THEN f.g IS DISTINCT FROM f.e
                    ELSE f.g::text IS DISTINCT FROM f.e::text END
    UNION ALL
    SELECT f.field, f.g, f.e
      FROM (VALUES ('as_of', a.as_of::text, b.as_of::text, a.as_of IS NOT DISTINCT FROM b.as_of),
                   ('profile', a.profile, b.profile, a.profile IS NOT DISTINCT FROM b.profile),
                   ('segment', a.segment, b.segment, a.segment IS NOT DISTINCT FROM b.segment),
                   ('opted_out', a.opted_out::text, b.opted_out::text,
                    a.opted_out IS NOT DISTINCT FROM b.opted_out),
                   ('event_count', a.event_count::text, b.event_count::text,
                    a.event_count IS NOT DISTINCT FROM b.event_count),
                   ('engaging_count', a.engaging_count::text, b.engaging_count::text,
                    a.engaging_count IS NOT DISTINCT FROM b.engaging_count),
                   ('conversion_total', a.conversion_total::text, b.conversion_total::text,
                    a.conversion_total IS NOT DISTINCT FROM b.conversion_total),
                   ('first_event_at', a.first_event_at::text, b.first_event_at::text,
                    a.first_event_at IS NOT DISTINCT FROM b.first_event_at),
                   ('last_engaged_at', a.last_engaged_at::text, b.last_engaged_at::text,
                    a.last_engaged_at IS NOT DISTINCT FROM b.last_engaged_at),
                   ('undeliverable', a.undeliverable::text, b.undeliverable::text,
                    a.undeliverable IS NOT DISTINCT FROM b.undeliverable),
                   ('birth_at', a.birth_at::text, b.birth_at::text, a.birth_at IS NOT DISTINCT FROM b.birth_at),
                   ('summary', ROW(a.x, a.t_x, a.t_c, a.n_days, a.conv_days, a.x_v)::text,
                    ROW(b.x, b.t_x, b.t_c, b.n_days, b.conv_days, b.x_v)::text,
                    ROW(a.x, a.t_x, a.t_c, a.n_days, a.conv_days, a.x_v) IS NOT DISTINCT FROM
                    ROW(b.x, b.t_x, b.t_c, b.n_days, b.conv_days, b.x_v))) f(field, g, e, same)
     WHERE CASE how WHEN 'text' THEN f.g IS DISTINCT FROM f.e ELSE NOT f.same END;
END $$;

-- A deterministic events table of a few thousand contacts, rows in scattered order (so parallel
-- workers each see part of most contacts).  Hash-based pseudo-randomness: no random(), no seed state.
CREATE FUNCTION ref.u01(k bigint, salt bigint) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT (hashint8extended(k, salt) & 2147483647)::float8 / 2147483648
$$;

-- Gauss's hypergeometric series 2F1(a, b; c; z) for 0 <= z < 1 and positive a, b, c (every term
-- positive: summed until a term is below 1e-17 of the sum), and the MBG/NBD expectation of
-- engagement days in (Tc, Tc + h] given (x, t_x, Tc) by lifetimes' closed form
-- (ModifiedBetaGeoFitter.conditional_expected_number_of_purchases_up_to_time).
CREATE FUNCTION ref.hyp2f1(a float8, b float8, c float8, z float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    WITH RECURSIVE s(n, term, total) AS (
        SELECT 0, 1::float8, 1::float8
        UNION ALL
        SELECT n + 1, term * (a + n) * (b + n) / ((c + n) * (n + 1)) * z,
               total + term * (a + n) * (b + n) / ((c + n) * (n + 1)) * z
          FROM s WHERE n < 200000 AND term > 1e-17 * total)
    SELECT total FROM s ORDER BY n DESC LIMIT 1
$$;
CREATE FUNCTION ref.expected_engagements(h float8, x float8, t_x float8, tc float8, r float8, alpha float8,
                                         a float8, b float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT (a + b + x) / (a - 1)
           * (1 - ref.hyp2f1(r + x, b + x + 1, a + b + x, h / (alpha + tc + h)) * power((alpha + tc) / (alpha + tc + h), r + x))
           / (1 + (a / (b + x)) * power((alpha + tc) / (alpha + t_x), r + x))
$$;
