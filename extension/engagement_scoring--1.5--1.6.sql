-- engagement_scoring 1.5 -> 1.6: model version 3 (every stored score stale: the next refresh of each
-- profile rescores everyone), funnels on sources, row accounting, source fingerprints, erasure.
-- Written by `make update-script` from src/sql/updates/1.5--1.6.sql (what is written by hand: the
-- ALTERs and data moves) and the functions of src/sql/.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.6'" to load this file. \quit

-- A role's grants on an object, given again on another (a view made again keeps its readers).
CREATE FUNCTION @extschema@._upgrade_copy_grants(from_acl aclitem[], object_kind text, object_name text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(from_acl) a
              WHERE a.grantee <> (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'engagement_scoring')
    LOOP
        EXECUTE format('GRANT %s ON %s %s TO %s%s', g.privilege_type, object_kind, object_name,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.grantee::regrole::text) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END $$;

------------------------------------------------------------------------------------------------
-- The scoring model, version 3 (docs/model.md): opt-ins, undeliverable contacts, tenure and the
-- new segment, the summary stored with each score.  Every stored score is of version 2, so stale:
-- the next refresh of each profile rescores everyone (model_version() is 3).  Profiles keep the
-- values their users set; only the defaults change (frequency_min_days 30).
------------------------------------------------------------------------------------------------
ALTER TYPE @extschema@.event_type ADD VALUE 'opted_in' BEFORE 'bounced';
COMMENT ON TYPE @extschema@.event_type IS
    'SMS CRM engagement event types; opened, clicked, responded and converted are the engaging ones; opted_in (an SMS START) lifts an earlier opt-out';
COMMENT ON COLUMN @extschema@.engagement_events.event_type IS 'What happened: delivered, opened, clicked, responded, converted, opted_out, opted_in or bounced';

ALTER TABLE @extschema@.scoring_profiles
    ALTER COLUMN frequency_min_days SET DEFAULT 30,
    ADD COLUMN decay_weight_opted_in float8 NOT NULL DEFAULT 0 CHECK (decay_weight_opted_in BETWEEN -1e6 AND 1e6),
    ADD COLUMN undeliverable_after integer NOT NULL DEFAULT 3 CHECK (undeliverable_after BETWEEN 1 AND 10),
    ADD COLUMN undeliverable_penalty float8 NOT NULL DEFAULT 0.9 CHECK (undeliverable_penalty BETWEEN 0 AND 1),
    ADD COLUMN new_contact_days float8 NOT NULL DEFAULT 30 CHECK (new_contact_days BETWEEN 1e-6 AND 1e9);
COMMENT ON COLUMN @extschema@.scoring_profiles.frequency_min_days IS 'Frequency: the shortest observation, so a new contact''s rate is not inflated (30)';
COMMENT ON COLUMN @extschema@.scoring_profiles.decay_weight_opted_in IS 'Time-decay weight of an opt-in (0)';
COMMENT ON COLUMN @extschema@.scoring_profiles.undeliverable_after IS 'Bounces since the last delivery or engagement that make a contact undeliverable (3; 1..10)';
COMMENT ON COLUMN @extschema@.scoring_profiles.undeliverable_penalty IS 'An undeliverable contact''s composite and predictions are multiplied by 1 - this (0.9)';
COMMENT ON COLUMN @extschema@.scoring_profiles.new_contact_days IS 'A contact known for fewer days than this is in segment new (30)';

ALTER TYPE @extschema@.score
    ADD ATTRIBUTE undeliverable boolean, ADD ATTRIBUTE tenure_days float8, ADD ATTRIBUTE birth_at timestamptz,
    ADD ATTRIBUTE x bigint, ADD ATTRIBUTE t_x bigint, ADD ATTRIBUTE t_c bigint, ADD ATTRIBUTE n_days bigint,
    ADD ATTRIBUTE conv_days bigint, ADD ATTRIBUTE x_v bigint, ADD ATTRIBUTE m_v float8;
ALTER TABLE @extschema@.engagement_scores
    ADD COLUMN undeliverable boolean, ADD COLUMN tenure_days float8 CHECK (tenure_days >= 0),
    ADD COLUMN birth_at timestamptz, ADD COLUMN x bigint CHECK (x >= 0),
    ADD COLUMN t_x bigint, ADD COLUMN t_c bigint CHECK (t_c >= 0), ADD COLUMN n_days bigint, ADD COLUMN conv_days bigint,
    ADD COLUMN x_v bigint, ADD COLUMN m_v float8 CHECK (m_v >= 0),
    ADD CONSTRAINT engagement_scores_t_x_check CHECK (t_x BETWEEN 0 AND t_c),
    ADD CONSTRAINT engagement_scores_n_days_check CHECK (n_days >= x),
    ADD CONSTRAINT engagement_scores_conv_days_check CHECK (conv_days BETWEEN 0 AND n_days),
    ADD CONSTRAINT engagement_scores_x_v_check CHECK (x_v BETWEEN 0 AND conv_days),
    DROP CONSTRAINT engagement_scores_segment_check,
    ADD CONSTRAINT engagement_scores_segment_check CHECK (segment IN ('opted_out', 'undeliverable', 'new', 'champions',
        'loyal', 'potential_loyalist', 'promising', 'need_attention', 'at_risk', 'cannot_lose', 'about_to_sleep',
        'hibernating', 'lost'));

------------------------------------------------------------------------------------------------
-- Sources: a campaign column (funnels read a profile's source), kinds mapped to NULL (ignored on
-- purpose), skipped rows counted per reason, a changed definition noticed (the fingerprint each
-- refresh stores).
------------------------------------------------------------------------------------------------
ALTER TABLE @extschema@.event_sources ADD COLUMN campaign_column name;
COMMENT ON TABLE @extschema@.event_sources IS
    'How to read a CRM''s own events relation: its contact, kind, time, value and campaign columns, how its kinds are matched (exact, or trim_lower: trimmed and lower-cased on both sides) and what happens to rows of an unmapped kind (count: skipped, counted and warned about; reject: an error naming the kind)';
COMMENT ON COLUMN @extschema@.event_sources.campaign_column IS 'Its campaign column, for the funnels (an integer; NULL: none)';
ALTER TABLE @extschema@.event_kind_map ALTER COLUMN event_type DROP NOT NULL;
COMMENT ON TABLE @extschema@.event_kind_map IS
    'A source''s kinds and the event type each stands for (NULL: ignored on purpose, counted but never warned about); a kind not listed is unmapped (see event_sources.on_unmapped)';
COMMENT ON COLUMN @extschema@.event_kind_map.event_type IS 'The event type it stands for (NULL: ignored on purpose)';
CREATE FUNCTION pg_temp._es_kinds_object(kinds text[]) RETURNS jsonb LANGUAGE sql IMMUTABLE AS
$$ SELECT jsonb_object_agg(k, NULL) FROM unnest(kinds) k $$;   -- (1.5 kept the first kinds, not their rows)
ALTER TABLE @extschema@.refresh_runs
    ALTER COLUMN unmapped_kinds TYPE jsonb USING pg_temp._es_kinds_object(unmapped_kinds),
    ADD COLUMN ignored_rows bigint CHECK (ignored_rows >= 0),
    ADD COLUMN invalid_rows jsonb,
    ADD COLUMN mode_reason text;
DROP FUNCTION pg_temp._es_kinds_object(text[]);
COMMENT ON COLUMN @extschema@.refresh_runs.mode IS 'full or incremental (an incremental call runs full after a profile change, or when it has more contacts to rescore than engagement.incremental_max_fraction of the scored ones: mode_reason)';
COMMENT ON TABLE @extschema@.refresh_runs IS
    'Every refresh_scores: profile, mode and why (mode_reason), when, contacts rescored, rows it could not score, skipped (another refresh held the lock) or failed (with the error)';
COMMENT ON COLUMN @extschema@.refresh_runs.mode_reason IS 'Why it ran in its mode: requested, never refreshed, profile changed, model changed, source changed, or (an incremental call) ''<n> of <m> contacts to rescore: above|at most <fraction>''; NULL for a run that was skipped or failed';
COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_rows IS 'Rows of a kind the source does not map';
COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_kinds IS '{kind: rows} of those kinds, the 100 with the most rows, each kind cut to 64 characters (with its length)';
COMMENT ON COLUMN @extschema@.refresh_runs.ignored_rows IS 'Rows of kinds the source maps to NULL: ignored on purpose';
COMMENT ON COLUMN @extschema@.refresh_runs.invalid_rows IS '{reason: rows}: rows skipped for another reason (no contact, no time, an infinite time, a negative, infinite or NaN value)';
ALTER TABLE @extschema@.score_distributions ADD COLUMN source_fingerprint text;
COMMENT ON COLUMN @extschema@.score_distributions.source_fingerprint IS 'The definition of the profile''s source at the last refresh (another, e.g. a view replaced: the next refresh is full)';
-- (needed by contact_scores, made below; the same as the function part makes it)
CREATE FUNCTION @extschema@._source_fingerprint(rel regclass) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$ SELECT NULL::text $$;

-- Functions whose arguments or results changed, made again in the function part.
CREATE TEMP TABLE _es_source_acl ON COMMIT DROP AS
SELECT p.proacl FROM pg_proc p
 WHERE p.oid = '@extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[])'::regprocedure;
DROP FUNCTION @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[]);
DROP FUNCTION @extschema@.funnel(bigint, timestamptz, timestamptz);
DROP FUNCTION @extschema@.funnel_independent(bigint, timestamptz, timestamptz);
DROP FUNCTION @extschema@._funnel_events();
DROP FUNCTION @extschema@._source_kind_expr(@extschema@.event_sources);
DROP FUNCTION @extschema@._report_unmapped(@extschema@.scoring_profiles, bigint, bigint, text);
DROP FUNCTION @extschema@._refresh_score_contacts(@extschema@.scoring_profiles, text, timestamptz, boolean, boolean);
DROP FUNCTION @extschema@._refresh(text, boolean);
DROP FUNCTION @extschema@._source_contact_query(@extschema@.scoring_profiles, text);   -- (the relation to read is given)

-- contact_scores is s.* of the scores: made again with the new columns, for the roles it had.
CREATE TEMP TABLE _es_view_acl ON COMMIT DROP AS
SELECT c.relacl FROM pg_class c WHERE c.oid = '@extschema@.contact_scores'::regclass;
DROP FUNCTION @extschema@.readable_score(@extschema@.score);   -- (two more fields, read from contact_scores)
DROP FUNCTION @extschema@.readable_scores(text);
DROP VIEW @extschema@.contact_scores;
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
COMMENT ON COLUMN @extschema@.contact_scores.is_stale IS
    'Older than max_score_age, of another profile or model version, or the contact''s events changed since';
SELECT @extschema@._upgrade_copy_grants(relacl, 'TABLE', '@extschema@.contact_scores') FROM pg_temp._es_view_acl;
DROP TABLE pg_temp._es_view_acl;

-- Every profile has its distribution row from the moment it exists (the lock of its refreshes):
-- empty (refreshed_at NULL) until its first refresh.
ALTER TABLE @extschema@.score_distributions ALTER COLUMN refreshed_at DROP NOT NULL;
COMMENT ON TABLE @extschema@.score_distributions IS
    'Per profile, the sorted composites as of the last refresh (for score_percentile); the row is also the lock of the profile''s refreshes';
COMMENT ON COLUMN @extschema@.score_distributions.refreshed_at IS 'When the last refresh ran (NULL: never)';

------------------------------------------------------------------------------------------------
-- scoring_profiles: every parameter has a range (issue 29).  A parameter of 1.5 could be any finite
-- number, and some (a time-decay weight of 1e308, say) gave scores of NaN or made every refresh
-- fail; an interval of millions of years made refresh_scores and readable_scores fail (22008).
-- The ranges keep every score finite (docs/model.md, "Profile parameters").  The update stops if a
-- profile is outside them: its values are the user's to choose.
------------------------------------------------------------------------------------------------
DO $$
DECLARE
    bad  text;
    hint text;
BEGIN
    SELECT string_agg(format('profile %I: %s', b.name, b.what), '; ' ORDER BY b.name),
           min(b.fix)
      INTO bad, hint
      FROM (SELECT sp.name,
                   string_agg(format('%s = %s (must be %s)', c.col, c.val, c.allowed), ', ' ORDER BY c.ord) AS what,
                   format('UPDATE @extschema@.scoring_profiles SET %s WHERE name = %L;',
                          string_agg(format('%I = %s', c.col, c.fix), ', ' ORDER BY c.ord), sp.name) AS fix
              FROM @extschema@.scoring_profiles sp,
                   LATERAL (VALUES
        (1, 'lookback_days', sp.lookback_days::text, sp.lookback_days BETWEEN 1e-6 AND 1e9, 'between 1e-6 and 1e9', CASE WHEN sp.lookback_days > 1e9 THEN '1e9' ELSE '1e-6' END),
        (2, 'recency_tau_days', sp.recency_tau_days::text, sp.recency_tau_days BETWEEN 1e-6 AND 1e9, 'between 1e-6 and 1e9', CASE WHEN sp.recency_tau_days > 1e9 THEN '1e9' ELSE '1e-6' END),
        (3, 'frequency_min_days', sp.frequency_min_days::text, sp.frequency_min_days BETWEEN 1e-6 AND 1e9, 'between 1e-6 and 1e9', CASE WHEN sp.frequency_min_days > 1e9 THEN '1e9' ELSE '1e-6' END),
        (4, 'frequency_ref_rate', sp.frequency_ref_rate::text, sp.frequency_ref_rate BETWEEN 1e-9 AND 1e18, 'between 1e-9 and 1e18', CASE WHEN sp.frequency_ref_rate > 1e18 THEN '1e18' ELSE '1e-9' END),
        (5, 'monetary_ref_value', sp.monetary_ref_value::text, sp.monetary_ref_value BETWEEN 1e-9 AND 1e18, 'between 1e-9 and 1e18', CASE WHEN sp.monetary_ref_value > 1e18 THEN '1e18' ELSE '1e-9' END),
        (6, 'half_life_days', sp.half_life_days::text, sp.half_life_days BETWEEN 1e-6 AND 1e9, 'between 1e-6 and 1e9', CASE WHEN sp.half_life_days > 1e9 THEN '1e9' ELSE '1e-6' END),
        (7, 'time_decay_ref', sp.time_decay_ref::text, sp.time_decay_ref BETWEEN 1e-9 AND 1e18, 'between 1e-9 and 1e18', CASE WHEN sp.time_decay_ref > 1e18 THEN '1e18' ELSE '1e-9' END),
        (8, 'decay_weight_delivered', sp.decay_weight_delivered::text, sp.decay_weight_delivered BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_delivered > 1e6 THEN '1e6' ELSE '-1e6' END),
        (9, 'decay_weight_opened', sp.decay_weight_opened::text, sp.decay_weight_opened BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_opened > 1e6 THEN '1e6' ELSE '-1e6' END),
        (10, 'decay_weight_clicked', sp.decay_weight_clicked::text, sp.decay_weight_clicked BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_clicked > 1e6 THEN '1e6' ELSE '-1e6' END),
        (11, 'decay_weight_responded', sp.decay_weight_responded::text, sp.decay_weight_responded BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_responded > 1e6 THEN '1e6' ELSE '-1e6' END),
        (12, 'decay_weight_converted', sp.decay_weight_converted::text, sp.decay_weight_converted BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_converted > 1e6 THEN '1e6' ELSE '-1e6' END),
        (13, 'decay_weight_opted_out', sp.decay_weight_opted_out::text, sp.decay_weight_opted_out BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_opted_out > 1e6 THEN '1e6' ELSE '-1e6' END),
        (14, 'decay_weight_bounced', sp.decay_weight_bounced::text, sp.decay_weight_bounced BETWEEN -1e6 AND 1e6, 'between -1e6 and 1e6', CASE WHEN sp.decay_weight_bounced > 1e6 THEN '1e6' ELSE '-1e6' END),
        (15, 'model_r', sp.model_r::text, sp.model_r BETWEEN 1e-9 AND 1e9, 'between 1e-9 and 1e9', CASE WHEN sp.model_r > 1e9 THEN '1e9' ELSE '1e-9' END),
        (16, 'model_alpha', sp.model_alpha::text, sp.model_alpha BETWEEN 1e-9 AND 1e18, 'between 1e-9 and 1e18', CASE WHEN sp.model_alpha > 1e18 THEN '1e18' ELSE '1e-9' END),
        (17, 'model_a', sp.model_a::text, sp.model_a BETWEEN 1e-9 AND 1e9, 'between 1e-9 and 1e9', CASE WHEN sp.model_a > 1e9 THEN '1e9' ELSE '1e-9' END),
        (18, 'model_b', sp.model_b::text, sp.model_b BETWEEN 1e-9 AND 1e9, 'between 1e-9 and 1e9', CASE WHEN sp.model_b > 1e9 THEN '1e9' ELSE '1e-9' END),
        (19, 'horizon_days', sp.horizon_days::text, sp.horizon_days BETWEEN 1e-6 AND 1e9, 'between 1e-6 and 1e9', CASE WHEN sp.horizon_days > 1e9 THEN '1e9' ELSE '1e-6' END),
        (20, 'conv_prior_a', sp.conv_prior_a::text, sp.conv_prior_a BETWEEN 1e-9 AND 1e9, 'between 1e-9 and 1e9', CASE WHEN sp.conv_prior_a > 1e9 THEN '1e9' ELSE '1e-9' END),
        (21, 'conv_prior_b', sp.conv_prior_b::text, sp.conv_prior_b BETWEEN 1e-9 AND 1e9, 'between 1e-9 and 1e9', CASE WHEN sp.conv_prior_b > 1e9 THEN '1e9' ELSE '1e-9' END),
        (22, 'gg_p', sp.gg_p::text, sp.gg_p BETWEEN 1e-9 AND 1e9, 'between 1e-9 and 1e9', CASE WHEN sp.gg_p > 1e9 THEN '1e9' ELSE '1e-9' END),
        (23, 'gg_q', sp.gg_q::text, sp.gg_q > 1 AND sp.gg_q <= 1e9, 'greater than 1 and at most 1e9', CASE WHEN sp.gg_q > 1e9 THEN '1e9' ELSE '1.01' END),
        (24, 'gg_v', sp.gg_v::text, sp.gg_v BETWEEN 1e-18 AND 1e18, 'between 1e-18 and 1e18', CASE WHEN sp.gg_v > 1e18 THEN '1e18' ELSE '1e-18' END),
        (25, 'max_score_age', quote_literal(sp.max_score_age), sp.max_score_age > interval '0' AND sp.max_score_age <= interval '100 years' AND abs(extract(year FROM sp.max_score_age)) <= 100 AND abs(extract(day FROM sp.max_score_age)) <= 36525 AND abs(extract(hour FROM sp.max_score_age)) <= 876600,
         'more than 0 and at most 100 years, as must each of its years, days and hours', '''1 day'''),
        (26, 'refresh_log_retention', quote_literal(sp.refresh_log_retention), sp.refresh_log_retention >= interval '0' AND sp.refresh_log_retention <= interval '100 years' AND abs(extract(year FROM sp.refresh_log_retention)) <= 100 AND abs(extract(day FROM sp.refresh_log_retention)) <= 36525 AND abs(extract(hour FROM sp.refresh_log_retention)) <= 876600,
         'from 0 to 100 years, as must each of its years, days and hours', '''14 days''')
                           ) c(ord, col, val, ok, allowed, fix)
             WHERE c.ok IS NOT TRUE
             GROUP BY sp.name) b;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'scoring profiles outside the ranges that keep every score finite: %', bad
            USING ERRCODE = 'check_violation',
                  HINT = format('Set each within its range (docs/model.md, "Profile parameters"), e.g. %s then run ALTER EXTENSION engagement_scoring UPDATE again.', hint);
    END IF;
END $$;
ALTER TABLE @extschema@.scoring_profiles
    DROP CONSTRAINT scoring_profiles_lookback_days_check,
    ADD CONSTRAINT scoring_profiles_lookback_days_check CHECK (lookback_days BETWEEN 1e-6 AND 1e9),
    DROP CONSTRAINT scoring_profiles_recency_tau_days_check,
    ADD CONSTRAINT scoring_profiles_recency_tau_days_check CHECK (recency_tau_days BETWEEN 1e-6 AND 1e9),
    DROP CONSTRAINT scoring_profiles_frequency_min_days_check,
    ADD CONSTRAINT scoring_profiles_frequency_min_days_check CHECK (frequency_min_days BETWEEN 1e-6 AND 1e9),
    DROP CONSTRAINT scoring_profiles_frequency_ref_rate_check,
    ADD CONSTRAINT scoring_profiles_frequency_ref_rate_check CHECK (frequency_ref_rate BETWEEN 1e-9 AND 1e18),
    DROP CONSTRAINT scoring_profiles_monetary_ref_value_check,
    ADD CONSTRAINT scoring_profiles_monetary_ref_value_check CHECK (monetary_ref_value BETWEEN 1e-9 AND 1e18),
    DROP CONSTRAINT scoring_profiles_half_life_days_check,
    ADD CONSTRAINT scoring_profiles_half_life_days_check CHECK (half_life_days BETWEEN 1e-6 AND 1e9),
    DROP CONSTRAINT scoring_profiles_time_decay_ref_check,
    ADD CONSTRAINT scoring_profiles_time_decay_ref_check CHECK (time_decay_ref BETWEEN 1e-9 AND 1e18),
    DROP CONSTRAINT scoring_profiles_decay_weight_delivered_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_delivered_check CHECK (decay_weight_delivered BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_decay_weight_opened_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_opened_check CHECK (decay_weight_opened BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_decay_weight_clicked_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_clicked_check CHECK (decay_weight_clicked BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_decay_weight_responded_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_responded_check CHECK (decay_weight_responded BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_decay_weight_converted_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_converted_check CHECK (decay_weight_converted BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_decay_weight_opted_out_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_opted_out_check CHECK (decay_weight_opted_out BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_decay_weight_bounced_check,
    ADD CONSTRAINT scoring_profiles_decay_weight_bounced_check CHECK (decay_weight_bounced BETWEEN -1e6 AND 1e6),
    DROP CONSTRAINT scoring_profiles_model_r_check,
    ADD CONSTRAINT scoring_profiles_model_r_check CHECK (model_r BETWEEN 1e-9 AND 1e9),
    DROP CONSTRAINT scoring_profiles_model_alpha_check,
    ADD CONSTRAINT scoring_profiles_model_alpha_check CHECK (model_alpha BETWEEN 1e-9 AND 1e18),
    DROP CONSTRAINT scoring_profiles_model_a_check,
    ADD CONSTRAINT scoring_profiles_model_a_check CHECK (model_a BETWEEN 1e-9 AND 1e9),
    DROP CONSTRAINT scoring_profiles_model_b_check,
    ADD CONSTRAINT scoring_profiles_model_b_check CHECK (model_b BETWEEN 1e-9 AND 1e9),
    DROP CONSTRAINT scoring_profiles_horizon_days_check,
    ADD CONSTRAINT scoring_profiles_horizon_days_check CHECK (horizon_days BETWEEN 1e-6 AND 1e9),
    DROP CONSTRAINT scoring_profiles_conv_prior_a_check,
    ADD CONSTRAINT scoring_profiles_conv_prior_a_check CHECK (conv_prior_a BETWEEN 1e-9 AND 1e9),
    DROP CONSTRAINT scoring_profiles_conv_prior_b_check,
    ADD CONSTRAINT scoring_profiles_conv_prior_b_check CHECK (conv_prior_b BETWEEN 1e-9 AND 1e9),
    DROP CONSTRAINT scoring_profiles_gg_p_check,
    ADD CONSTRAINT scoring_profiles_gg_p_check CHECK (gg_p BETWEEN 1e-9 AND 1e9),
    DROP CONSTRAINT scoring_profiles_gg_q_check,
    ADD CONSTRAINT scoring_profiles_gg_q_check CHECK (gg_q > 1 AND gg_q <= 1e9),
    DROP CONSTRAINT scoring_profiles_gg_v_check,
    ADD CONSTRAINT scoring_profiles_gg_v_check CHECK (gg_v BETWEEN 1e-18 AND 1e18),
    DROP CONSTRAINT scoring_profiles_max_score_age_check,
    ADD CONSTRAINT scoring_profiles_max_score_age_check CHECK (max_score_age > interval '0' AND max_score_age <= interval '100 years'
        AND abs(extract(year FROM max_score_age)) <= 100 AND abs(extract(day FROM max_score_age)) <= 36525
        AND abs(extract(hour FROM max_score_age)) <= 876600),
    DROP CONSTRAINT scoring_profiles_refresh_log_retention_check,
    ADD CONSTRAINT scoring_profiles_refresh_log_retention_check CHECK (refresh_log_retention >= interval '0'
        AND refresh_log_retention <= interval '100 years' AND abs(extract(year FROM refresh_log_retention)) <= 100
        AND abs(extract(day FROM refresh_log_retention)) <= 36525 AND abs(extract(hour FROM refresh_log_retention)) <= 876600);

-- Sources are read as the role that set them: the refresh's step that kept contacts pending reads
-- what the scoring step listed instead of the events (another signature).  The kind maps' check
-- runs once per statement (a map of thousands of kinds checked once, not once per kind).
DROP FUNCTION @extschema@._refresh_keep_pending(@extschema@.scoring_profiles, text, timestamptz);
DROP TRIGGER event_kind_map_check ON @extschema@.event_kind_map;
DROP FUNCTION @extschema@._kind_map_check_row();

-- Validation checks the value too (issue 25): validate_model and validate_model_summary have more
-- columns, and their shared step returns the Gamma-Gamma parameters beside the MBG/NBD ones.
DROP FUNCTION @extschema@.validate_model(timestamptz, timestamptz, text, boolean);
DROP FUNCTION @extschema@.validate_model_summary(timestamptz, timestamptz, text, boolean);
DROP FUNCTION @extschema@._validation(timestamptz, timestamptz, text, boolean);


-- Predictions at any horizon from the stored summary (predict, customer_lifetime_value).
------------------------------------------------------------------------------------------------
-- Predictions at any horizon and lifetime value, from the summary each stored score keeps
-- (docs/model.md "Stored summary and any horizon"), with the profile's current parameters,
-- without reading events.
--
-- predict and customer_lifetime_value are SQL functions the planner inlines into the caller's
-- query (so a caller's LIMIT, join or ORDER BY plans over the scores table itself, with no
-- result set materialised in between).  Inlining needs a body without SET: every name in these
-- bodies is schema-qualified, operators included, so the caller's search_path cannot change
-- what they call (sql/search_path.sql checks it).  Their arguments are checked once per query by
-- _prediction_arguments (_lifetime_arguments), a constant condition the planner evaluates before
-- the scan (the profile is compared as COALESCE(profile, ''), a construct, not a function: a NULL
-- would fold the scan's condition to false and the check, which reports it, would never run).  A
-- NULL contact_id has no row.
------------------------------------------------------------------------------------------------
CREATE TYPE @extschema@.prediction AS (
    engagement_probability float8,
    conversion_probability float8,
    expected_engagements   float8,
    expected_value         float8
);
COMMENT ON TYPE @extschema@.prediction IS
    'A stored score''s predictions over a horizon of days after its calculated_at (predict)';
COMMENT ON COLUMN @extschema@.prediction.engagement_probability IS 'Probability of at least one engagement day within the horizon (MBG/NBD), penalised';
COMMENT ON COLUMN @extschema@.prediction.conversion_probability IS 'engagement_probability x the conversion share q';
COMMENT ON COLUMN @extschema@.prediction.expected_engagements IS 'Expected engagement days within the horizon (MBG/NBD), penalised';
COMMENT ON COLUMN @extschema@.prediction.expected_value IS 'Expected conversion value within the horizon: expected engagement days x q x expected conversion value (Gamma-Gamma), penalised';

-- fit_model's penalty ladder (issue 25): a fit that does not converge with the profile's
-- fit_penalizer is tried with larger penalties; model_fits.penalizer is the one used.
COMMENT ON COLUMN @extschema@.scoring_profiles.fit_penalizer IS
    'fit_model maximises the mean log-likelihood minus fit_penalizer * the sum of squared log-parameters (both models); when a fit with it does not converge, fit_model tries the penalty ladder above it (0.001, 0.01, 0.1, 1)';
COMMENT ON COLUMN @extschema@.model_fits.penalizer IS 'The L2 penalty on the log-parameters used: the profile''s fit_penalizer, or the penalty of the ladder that made the fit converge';

-- Every function and aggregate of this version, as the install script creates them (written
-- by scripts/build_update.py from src/sql; edit those, not this part).

-- ----- from src/sql/schema.sql

------------------------------------------------------------------------------------------------
-- Scoring profiles: every parameter of the model (docs/model.md), one row per named profile
------------------------------------------------------------------------------------------------
-- A funnel's stages: 1 to 5 distinct stages of delivered, opened, clicked, responded, converted.
CREATE OR REPLACE FUNCTION @extschema@._funnel_stages_valid(stages @extschema@.event_type[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT cardinality(stages) BETWEEN 1 AND 5 AND array_position(stages, NULL) IS NULL
       AND stages <@ '{delivered,opened,clicked,responded,converted}'::@extschema@.event_type[]
       AND (SELECT count(DISTINCT s) FROM unnest(stages) s) = cardinality(stages)
$$;

-- Whether this server is a Citus worker (a node other than the coordinator, group 0), where the
-- extension's distributed and reference tables are placements of the coordinator's (docs/scale-out.md).
CREATE OR REPLACE FUNCTION @extschema@._on_citus_worker() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN false;
    END IF;
    RETURN coalesce((SELECT g.groupid <> 0 FROM pg_catalog.pg_dist_local_group g), false);
END $$;

-- Every change of a profile bumps its version, so stored scores can tell they are stale.
CREATE OR REPLACE FUNCTION @extschema@._profile_bump_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

-- Who chose a profile's events relation, checked when it is written: a refresh may run as a
-- superuser (pg_cron) and must not read for a less privileged role what that role cannot read
-- itself (refresh_scores checks the role again: _profile_events_or_error).
CREATE OR REPLACE FUNCTION @extschema@._profile_check_events_relation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.events_relation IS NULL THEN
        RETURN NEW;   -- (the column's NOT NULL says so: 23502)
    END IF;
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

-- CREATE EXTENSION inserts the built-in `default` profile.  pg_restore then loads the dumped
-- profiles, `default` among them, into the same table: an untouched built-in default (version 1,
-- no scores yet) gives way to the incoming row, so a changed default survives dump/restore
-- without a duplicate-key error.  Any other duplicate still fails as usual.
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

-- A profile's distribution row exists from the moment the profile does, empty until its first
-- refresh.  It is the lock a refresh takes (FOR NO KEY UPDATE SKIP LOCKED), so a second refresh,
-- even of a profile never refreshed, finds it held and returns at once instead of waiting on an
-- uncommitted insert.  On Citus both tables are reference tables whose placements (one per node)
-- each fire this: each fills the placement of the distributions on its own node.  (While
-- citus_distribute copies the profiles into their placements, the distributions are not yet a
-- reference table: their rows, the empty ones included, are copied when they become one.)
CREATE OR REPLACE FUNCTION @extschema@._profile_create_distribution() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    distributions text := '@extschema@.score_distributions';
BEGIN
    IF TG_RELID <> '@extschema@.scoring_profiles'::regclass THEN
        EXECUTE 'SELECT pg_catalog.shard_name($1, s.shardid) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = $1'
           INTO distributions USING distributions::regclass;
        IF distributions IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    EXECUTE format('INSERT INTO %s (profile, sorted_composites, contacts, profile_version, model_version) '
                   'VALUES ($1, ''\x'', 0, 0, 0) ON CONFLICT DO NOTHING', distributions)
      USING NEW.name;
    RETURN NULL;
END $$;

-- pg_restore loads the dumped distributions after the profiles, whose rows have just made empty
-- ones: a dumped row replaces the empty row of its profile.
CREATE OR REPLACE FUNCTION @extschema@._distribution_replace_empty() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_RELID = '@extschema@.score_distributions'::regclass THEN   -- (not a Citus placement)
        DELETE FROM @extschema@.score_distributions d WHERE d.profile = NEW.profile AND d.refreshed_at IS NULL;
    END IF;
    RETURN NEW;
END $$;

------------------------------------------------------------------------------------------------
-- What \d+ says of each column.  The fields of a score are described once here and given to every
-- relation that carries them (engagement_scores, the score type, contact_scores): _comment_columns.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@._score_field_comments() RETURNS TABLE (field name, description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('as_of', 'The time the score is computed as of (events after it are ignored)'),
           ('profile', 'The scoring profile that computed it'),
           ('contact_id', 'The contact'),
           ('composite', 'The score, 0..100: the weighted components, times (1 - opt_out_penalty) when opted out and (1 - undeliverable_penalty) when undeliverable'),
           ('recency', 'Recency component, 0..100: 100 exp(-days since the last engagement / recency_tau_days)'),
           ('frequency', 'Frequency component, 0..100: from engaging events per day in the window (observed at least frequency_min_days)'),
           ('monetary', 'Monetary component, 0..100: log of the conversion value in the window against monetary_ref_value'),
           ('time_decay', 'Time-decay component, 0..100: event weights halved every half_life_days'),
           ('diversity', 'Diversity component, 0..100: entropy of the four engaging types'),
           ('engagement_probability', 'Probability of at least one engagement day in the next horizon_days (MBG/NBD), 0..1'),
           ('conversion_probability', 'engagement_probability times the contact''s smoothed share of conversion days, 0..1'),
           ('churn_risk', 'Probability the contact has dropped out: 1 - P(alive) (MBG/NBD), 0..1'),
           ('segment', 'Segment: opted_out, undeliverable, new (known for less than new_contact_days), then by RFM quintiles champions, loyal, potential_loyalist, promising, need_attention, at_risk, cannot_lose, about_to_sleep, hibernating or lost'),
           ('opted_out', 'Whether the latest of the contact''s opted_out and opted_in events at or before as_of is an opt-out (at the same time the opt-out wins)'),
           ('event_count', 'Events at or before as_of, any type'),
           ('engaging_count', 'Engaging events (opened, clicked, responded, converted) at or before as_of'),
           ('conversion_total', 'Sum of conversion values at or before as_of (exact cents)'),
           ('first_event_at', 'The contact''s first event: its birth day starts the MBG/NBD summary'),
           ('last_engaged_at', 'The last engaging event (NULL: never engaged)'),
           ('expected_engagements_30d', 'Expected engagement days in the next horizon_days of the profile (30 by default; MBG/NBD), opt-out and undeliverable penalised'),
           ('expected_conversion_value', 'Expected value of the next conversion day (Gamma-Gamma)'),
           ('expected_value_30d', 'Expected conversion value in the next horizon_days of the profile (30 by default): expected engagement days x conversion share x expected conversion value, opt-out and undeliverable penalised'),
           ('undeliverable', 'Whether at least undeliverable_after bounces came after the last delivery or engagement (at or before as_of)'),
           ('tenure_days', 'Days since the contact''s first event of any type: how long the CRM has known it'),
           ('birth_at', 'The start (UTC) of the day of the contact''s first event: the birth b0 of its MBG/NBD summary'),
           ('x', 'Repeat engagement days: days after the birth day holding an engaging event (MBG/NBD x)'),
           ('t_x', 'The last of them, in days after the birth day (0 when x = 0)'),
           ('t_c', 'Days from the birth day to as_of''s day (MBG/NBD Tc)'),
           ('n_days', 'Days holding an engaging event, the birth day included'),
           ('conv_days', 'Days holding a converted event, the birth day included'),
           ('x_v', 'Conversion days whose value is above 0 (Gamma-Gamma x)'),
           ('m_v', 'The mean value of those days (Gamma-Gamma m; 0 when x_v = 0)'),
           ('percentile_rank', 'The composite''s percentile among the profile''s scored contacts at the refresh, 0..100'),
           ('score_version', 'How many times the contact has been rescored under the profile'),
           ('profile_version', 'The profile''s version the score was computed with (another: stale)'),
           ('calculated_at', 'When the refresh computed it (its as_of)'),
           ('model_version', 'The version of the scoring model that computed it (another than model_version(): stale)')
$$;

COMMENT ON FUNCTION @extschema@._score_field_comments() IS
    'The description of each field of a score, given to every relation that carries them';

-- Comments each column of rel that _score_field_comments describes.
CREATE OR REPLACE FUNCTION @extschema@._comment_score_columns(rel regclass) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT f.field, f.description FROM @extschema@._score_field_comments() f
              WHERE EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = f.field AND NOT a.attisdropped)
    LOOP
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', rel, c.field, c.description);
    END LOOP;
END $$;

COMMENT ON FUNCTION @extschema@._comment_score_columns(regclass) IS
    'Comments the score fields of a relation (install and update scripts)';

-- ----- from src/sql/scoring.sql

-- The fields of a score that engagement_scores stores, in the type's order: all but as_of (stored
-- as calculated_at) and profile (the table's key).  The one list the code that writes or reads
-- stored scores builds its column lists from (_stored_score_list): a field added to the type and
-- the table needs no other list.
CREATE OR REPLACE FUNCTION @extschema@._stored_score_fields() RETURNS name[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT array_agg(a.attname ORDER BY a.attnum)
      FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
     WHERE t.oid = '@extschema@.score'::regtype AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT IN ('as_of', 'profile')
$$;

-- Those fields as a list for SQL text: each through format(item, field), ', ' between, e.g.
-- '%1$I = n.%1$I' for an UPDATE's SET.
CREATE OR REPLACE FUNCTION @extschema@._stored_score_list(item text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(format(item, f.field), ', ' ORDER BY f.i)
      FROM unnest(@extschema@._stored_score_fields()) WITH ORDINALITY f(field, i)
$$;

-- The version of docs/model.md the library computes (stored with every score).
CREATE OR REPLACE FUNCTION @extschema@.model_version() RETURNS integer
AS 'MODULE_PATHNAME', 'es_model_version' LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.model_version() IS
    'The version of the scoring model (docs/model.md) the extension computes; stored scores of another are stale';

-- score_events(event_type, occurred_at, conversion_value, as_of [, profile]): the aggregate over any rowset.
-- The transition function reads the profile table once per query, hence STABLE.
CREATE OR REPLACE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz, text)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._score_events_combinefn(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._score_events_serialfn(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'es_score_events_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._score_events_deserialfn(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._score_events_finalfn(internal)
RETURNS @extschema@.score AS 'MODULE_PATHNAME', 'es_score_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._explain_events_finalfn(internal)
RETURNS text AS 'MODULE_PATHNAME', 'es_explain_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;

-- The final functions only sort the state's day keys in place (same set), so READ_ONLY holds.
-- SSPACE: the state is 256 bytes with its first 14 day keys (more keys get an array of their own);
-- without it the planner assumes a large internal state and prices hashed aggregation over many
-- contacts as spilling.
CREATE OR REPLACE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) IS
    'Scores one contact''s events (the rows of a group) as of a time under a named profile';

COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'Scores one contact''s events (the rows of a group) as of a time under the default profile';

CREATE OR REPLACE AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, text) (
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
CREATE OR REPLACE FUNCTION @extschema@._score_events_transfn(internal, @extschema@.event_type, timestamptz, numeric,
                                                  timestamptz, jsonb)
RETURNS internal AS 'MODULE_PATHNAME', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._score_events_finalfn, SSPACE = 384, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) (
    SFUNC = @extschema@._score_events_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._explain_events_finalfn, SSPACE = 384, PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.score_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) IS
    'Scores one contact''s events (the rows of a group) as of a time under a profile given as to_jsonb(profile row)';

COMMENT ON AGGREGATE @extschema@.explain_events(@extschema@.event_type, timestamptz, numeric, timestamptz, jsonb) IS
    'Explains the score of one contact''s events under a profile given as to_jsonb(profile row)';

CREATE OR REPLACE FUNCTION @extschema@.decay_state_in(cstring) RETURNS @extschema@.decay_state
AS 'MODULE_PATHNAME', 'es_decay_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@.decay_state_out(@extschema@.decay_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_decay_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.decay_state_in(cstring) IS
    'Text input of decay_state: (sum,compensation,as_of,half_life_days,rows)';

COMMENT ON FUNCTION @extschema@.decay_state_out(@extschema@.decay_state) IS
    'Text output of decay_state, every double in its shortest exact form';

CREATE OR REPLACE FUNCTION @extschema@._time_decay_transfn(@extschema@.decay_state, float8, timestamptz, timestamptz, float8)
RETURNS @extschema@.decay_state AS 'MODULE_PATHNAME', 'es_decay_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._time_decay_combinefn(@extschema@.decay_state, @extschema@.decay_state)
RETURNS @extschema@.decay_state AS 'MODULE_PATHNAME', 'es_decay_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._time_decay_finalfn(@extschema@.decay_state)
RETURNS float8 AS 'MODULE_PATHNAME', 'es_decay_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.time_decay(float8, timestamptz, timestamptz, float8) (
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
CREATE OR REPLACE FUNCTION @extschema@._arguments_not_null(function_name text, VARIADIC is_null boolean[]) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._in_citus_shard_query() RETURNS boolean
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
CREATE OR REPLACE FUNCTION @extschema@._citus_local_relation(rel regclass, contact bigint, contact_column name DEFAULT 'contact_id')
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
CREATE OR REPLACE FUNCTION @extschema@._profile_or_error(profile text) RETURNS @extschema@.scoring_profiles
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
CREATE OR REPLACE FUNCTION @extschema@._profile_exists_or_error(profile_exists boolean, profile text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT profile_exists AND profile IS NOT NULL THEN
        RAISE EXCEPTION 'scoring profile "%" does not exist', profile
            USING ERRCODE = 'undefined_object', HINT = 'The profiles are the rows of engagement.scoring_profiles.';
    END IF;
    RETURN true;
END $$;

-- Checks what the aggregates cannot check when a contact has no events (no row reaches them).
CREATE OR REPLACE FUNCTION @extschema@._check_scoring_args(as_of timestamptz, profile text) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._contact_events_relation(p @extschema@.scoring_profiles, contact_id bigint) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._source_contact_query(p @extschema@.scoring_profiles, aggregate text, rel text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('SELECT @extschema@.%s(e.event_type, e.occurred_at, e.conversion_value, $2, $3) AS result,
                          count(*) FILTER (WHERE e.skip = 2) AS unmapped, min(e.kind) FILTER (WHERE e.skip = 2) AS kind,
                          count(*) FILTER (WHERE e.skip > 2) AS invalid, min(e.skip) FILTER (WHERE e.skip > 2) AS reason
                     FROM (%s) e WHERE e.contact_id = $1 AND e.occurred_at <= $2',
                  aggregate, @extschema@._source_select(@extschema@._source_of(p.events_relation), rel))
$$;

-- A CRM's kind as messages and refresh_runs show it: at most 64 characters, and how long it was.
CREATE OR REPLACE FUNCTION @extschema@._shown_kind(kind text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN length(kind) <= 64 THEN kind ELSE left(kind, 64) || '... (' || length(kind) || ' characters)' END
$$;

-- Rows of a contact not scored (_source_contact_query): of a kind the source does not map, an
-- error naming it (on_unmapped reject) or a WARNING; rows the model cannot read, a WARNING with the
-- reason; rows of a kind mapped to NULL are ignored on purpose.
CREATE OR REPLACE FUNCTION @extschema@._report_skipped(p @extschema@.scoring_profiles, contact_id bigint, r record) RETURNS void
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

CREATE OR REPLACE FUNCTION @extschema@.engagement_score(contact_id bigint, as_of timestamptz DEFAULT now(),
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

CREATE OR REPLACE FUNCTION @extschema@.explain_score(contact_id bigint, as_of timestamptz DEFAULT now(),
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

-- ----- from src/sql/tracking.sql

------------------------------------------------------------------------------------------------
-- The events relation of a profile: engagement_events, or a CRM's own table (plain, partitioned,
-- foreign) or view, read as its row of event_sources says (without one: the columns contact_id,
-- event_type engagement.event_type, occurred_at and conversion_value).  Every reader of events
-- (refresh_scores, fit_model, validate_model, the per-contact functions) goes through
-- _source_select, so they all read the same rows the same way.
------------------------------------------------------------------------------------------------
-- Whether a role (that exists) may read a relation: SELECT on it and USAGE on its schema.
CREATE OR REPLACE FUNCTION @extschema@._role_may_read(role_name text, rel regclass) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role_name)
                    AND has_schema_privilege(role_name, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = rel), 'USAGE')
                    AND has_table_privilege(role_name, rel, 'SELECT'), false)
$$;

-- The source of a relation: its row of event_sources, or the defaults (engagement_events' columns).
CREATE OR REPLACE FUNCTION @extschema@._source_of(events regclass) RETURNS @extschema@.event_sources
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
CREATE OR REPLACE FUNCTION @extschema@._source_feeds(events regclass) RETURNS regclass[]
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN c.relkind = 'v' THEN s.changes_from ELSE events || s.changes_from END
      FROM pg_class c, @extschema@._source_of(events) s
     WHERE c.oid = events
$$;

-- The column of a relation, or NULL.
CREATE OR REPLACE FUNCTION @extschema@._column_type(rel regclass, col name) RETURNS regtype
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.atttypid::regtype FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0
       AND NOT a.attisdropped
$$;

-- A source checked against its relation: the columns exist with types the model can read
-- without running anything of the relation owner's (built-in integer, timestamptz and numeric
-- types; the kind as engagement.event_type or through the kind map).  Raises 42703 or 42804.
CREATE OR REPLACE FUNCTION @extschema@._source_check(src @extschema@.event_sources) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._map_kind(kind text, kinds text[], types @extschema@.event_type[])
RETURNS @extschema@.event_type
AS 'MODULE_PATHNAME', 'es_map_kind' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The kind column as an event type: the column itself when it is engagement.event_type, else a
-- lookup in the source's kind map (_map_kind, the map as constants; trim_lower compares trimmed,
-- lower-cased kinds), NULL for a kind the map lacks or ignores.  And the condition that a row's
-- kind is one the map ignores (mapped to NULL), 'false' when it ignores none.
CREATE OR REPLACE FUNCTION @extschema@._source_kind_expr(src @extschema@.event_sources, OUT event_type text, OUT ignored text)
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
CREATE OR REPLACE FUNCTION @extschema@._skip_reason(code integer) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._source_select(src @extschema@.event_sources, rel text) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._source_fingerprint(rel regclass) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._events_relation_or_error(events regclass) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._events_relation_exists_or_error(p @extschema@.scoring_profiles) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._events_reader(p @extschema@.scoring_profiles) RETURNS name
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
CREATE OR REPLACE FUNCTION @extschema@._live_events_or_error(p @extschema@.scoring_profiles) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._source_check_row() RETURNS trigger
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

-- With kind_match trim_lower, two kinds of a map that are one once trimmed and lower-cased would be
-- ambiguous (the first would win): refused when the map is written, and when a source switches to
-- trim_lower (_source_check_row).
CREATE OR REPLACE FUNCTION @extschema@._kind_map_unambiguous_or_error(rel regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION @extschema@._kind_maps_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT s.relation FROM @extschema@.event_sources s WHERE s.kind_match = 'trim_lower' LOOP
        PERFORM @extschema@._kind_map_unambiguous_or_error(rel);
    END LOOP;
    RETURN NULL;
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

-- define_event_source: a source in one call (its row of event_sources and its kind map, replaced).
-- A kind mapped to JSON null is ignored on purpose: counted, never warned about.
CREATE OR REPLACE FUNCTION @extschema@.define_event_source(relation regclass, kinds jsonb DEFAULT NULL,
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
CREATE OR REPLACE FUNCTION @extschema@._profile_events_or_error(p @extschema@.scoring_profiles) RETURNS text
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

-- Drops what _bind_events_relation made, if anything (not for Citus to propagate either).
CREATE OR REPLACE FUNCTION @extschema@._unbind_events_relation(events text) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._events_read_begin(p @extschema@.scoring_profiles, readable regclass,
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

CREATE OR REPLACE FUNCTION @extschema@._events_read_end(events text, caller text) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._tracked_relation_check(rel oid, trigger_name name, transition_tables boolean,
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
CREATE OR REPLACE FUNCTION @extschema@._track_event_changes() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_track_event_changes' LANGUAGE C SECURITY DEFINER;

-- Foreign partitions cannot hand rows to transition tables ("cannot collect transition tuples
-- from child foreign tables"): a relation with any gets row-level triggers instead (which also
-- turns off postgres_fdw's batch inserts while they exist; docs/scale-out.md).  They fire on the
-- partitions: the change is logged against the tracked relation, their second argument.
CREATE OR REPLACE FUNCTION @extschema@._track_event_change() RETURNS trigger
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

-- The statement-level triggers of change tracking on a table: after INSERT, UPDATE and DELETE,
-- with the transition tables the trigger functions read (new_events, old_events), calling func
-- (a qualified name) with args (its argument list, quoted).  One place for both kinds: a table's
-- here (_track_event_changes), a distributed table's shards (_track_shard_changes, citus.sql).
CREATE OR REPLACE FUNCTION @extschema@._create_statement_tracking_triggers(events regclass, func text, args text) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@.track_event_changes(events regclass, for_source regclass DEFAULT NULL,
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

CREATE OR REPLACE FUNCTION @extschema@.untrack_event_changes(events regclass) RETURNS integer
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

-- ----- from src/sql/refresh.sql

------------------------------------------------------------------------------------------------
-- Score distributions: the sorted composites of a profile, packed for binary search
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@._pack_sorted(float8[]) RETURNS bytea
AS 'MODULE_PATHNAME', 'es_pack_sorted' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._count_below(bytea, float8) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_count_below' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._merge_distribution(bytea, float8[], float8[]) RETURNS bytea
AS 'MODULE_PATHNAME', 'es_merge_distribution' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

------------------------------------------------------------------------------------------------
-- The steps of a refresh
------------------------------------------------------------------------------------------------
-- Drains the change log into pg_temp._es_changed (only the rows this snapshot sees: later ones
-- wait for the next refresh): the refreshed profile takes the changes of the relations its source
-- is fed by (_source_feeds), every other profile gets those of its own in its pending set
-- (pending_rescore has no unique key: nothing waits on another refresh's rows there).  Changes of
-- relations no profile reads are dropped.
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

-- The contacts to rescore, into pg_temp._es_targets: the profile's pending contacts (consumed
-- here) and the changed ones, and on an incremental refresh those whose score grew older than
-- max_score_age (the scores are scanned for those only when the oldest one may have: aged).
-- Returns how many targets; _refresh adds a full refresh's others.
CREATE OR REPLACE FUNCTION @extschema@._refresh_choose_targets(p @extschema@.scoring_profiles, refresh_at timestamptz,
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
CREATE OR REPLACE FUNCTION @extschema@._refresh_score_contacts(p @extschema@.scoring_profiles, events text,
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
CREATE OR REPLACE FUNCTION @extschema@._refresh_few_targets(p @extschema@.scoring_profiles) RETURNS boolean
LANGUAGE plpgsql STABLE STRICT PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT count(*) FROM pg_temp._es_targets) * 10
           <= coalesce((SELECT d.contacts FROM @extschema@.score_distributions d WHERE d.profile = p.name), 0);
END $$;

-- The distribution as of this refresh, before the scores are written so that they can carry
-- their percentiles: all composites after a full refresh, else the last distribution with the
-- targets' old composites replaced by their new ones (a linear merge).
CREATE OR REPLACE FUNCTION @extschema@._refresh_distribution(p @extschema@.scoring_profiles, refresh_at timestamptz,
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
CREATE OR REPLACE FUNCTION @extschema@._refresh_keep_pending(p @extschema@.scoring_profiles) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO @extschema@.pending_rescore (profile, contact_id)
    SELECT p.name, f.contact_id FROM pg_temp._es_future f
     WHERE NOT EXISTS (SELECT FROM @extschema@.pending_rescore pr WHERE pr.profile = p.name AND pr.contact_id = f.contact_id);
END $$;

-- {key: count, ...} as text for a message: 'key: count, ...', the largest counts first.
CREATE OR REPLACE FUNCTION @extschema@._counts_text(counts jsonb) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._incremental_max_fraction() RETURNS float8
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
CREATE OR REPLACE FUNCTION @extschema@._refresh(profile text, "full" boolean, OUT rescored bigint, OUT full_refresh boolean,
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
CREATE OR REPLACE FUNCTION @extschema@.refresh_scores(profile text DEFAULT 'default', "full" boolean DEFAULT false,
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
CREATE OR REPLACE FUNCTION @extschema@.forget_contact(contact_id bigint)
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

-- ----- from src/sql/queries.sql

------------------------------------------------------------------------------------------------
-- Reading scores
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.score_percentile(score float8, profile text DEFAULT 'default') RETURNS float8
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

CREATE OR REPLACE FUNCTION @extschema@.cached_score(contact_id bigint, max_age interval DEFAULT '1 hour',
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
CREATE OR REPLACE FUNCTION @extschema@.segment_summary(profile text DEFAULT 'default')
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

CREATE OR REPLACE FUNCTION @extschema@.score_trend(contact_id bigint, since timestamptz, profile text DEFAULT 'default',
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
CREATE OR REPLACE FUNCTION @extschema@.contact_events(contact_id bigint, before_id bigint DEFAULT NULL, page_size integer DEFAULT 50)
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
CREATE OR REPLACE FUNCTION @extschema@.profile_events(contact_id bigint, profile text DEFAULT 'default',
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

-- ----- from src/sql/presentation.sql

------------------------------------------------------------------------------------------------
-- Rounded scores
------------------------------------------------------------------------------------------------
-- readable_score rounds a score for people (the expectations named for what they are, over the
-- profile's horizon_days, not 30d): composite and components to 0.1, probabilities to 0.001,
-- expected engagement days and money to 0.01, tenure to 0.1 day, times to the second.
-- readable_scores rounds the stored ones the same way in its own query (below), which the planner
-- inlines; sql/presentation.sql checks each against the same rounding of the raw values.
CREATE OR REPLACE FUNCTION @extschema@.readable_score(s @extschema@.score,
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
CREATE OR REPLACE FUNCTION @extschema@.readable_scores(profile text DEFAULT 'default')
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

CREATE OR REPLACE FUNCTION @extschema@.readable_segments(profile text DEFAULT 'default')
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
CREATE OR REPLACE FUNCTION @extschema@.score_histogram(profile text DEFAULT 'default', buckets integer DEFAULT 10)
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
CREATE OR REPLACE FUNCTION @extschema@._funnel_rows(p @extschema@.scoring_profiles, campaign_id bigint, since timestamptz,
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
CREATE OR REPLACE FUNCTION @extschema@.funnel(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
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
CREATE OR REPLACE FUNCTION @extschema@.funnel_independent(campaign_id bigint DEFAULT NULL, since timestamptz DEFAULT '-infinity',
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

-- ----- from src/sql/models.sql

-- btyd_summary(event_type, occurred_at, as_of): the contact's (x, t_x, t) as docs/model.md
-- defines them.  It shares score_events' state, combine and (de)serialize functions.
CREATE OR REPLACE FUNCTION @extschema@._btyd_summary_transfn(internal, @extschema@.event_type, timestamptz, timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_btyd_summary_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._btyd_summary_finalfn(internal)
RETURNS @extschema@.btyd_summary AS 'MODULE_PATHNAME', 'es_btyd_summary_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.btyd_summary(@extschema@.event_type, timestamptz, timestamptz) (
    SFUNC = @extschema@._btyd_summary_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._btyd_summary_finalfn, SSPACE = 384, PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.btyd_summary(@extschema@.event_type, timestamptz, timestamptz) IS
    'One contact''s (x, t_x, t) in days since its first event (the birth day): engagement days after the birth day, the last of them, and as_of';

CREATE OR REPLACE FUNCTION @extschema@._model_summary_transfn(internal, @extschema@.event_type, timestamptz, numeric, timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'es_btyd_summary_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._model_summary_finalfn(internal)
RETURNS @extschema@.model_summary AS 'MODULE_PATHNAME', 'es_model_summary_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.model_summary(@extschema@.event_type, timestamptz, numeric, timestamptz) (
    SFUNC = @extschema@._model_summary_transfn, STYPE = internal,
    COMBINEFUNC = @extschema@._score_events_combinefn,
    SERIALFUNC = @extschema@._score_events_serialfn, DESERIALFUNC = @extschema@._score_events_deserialfn,
    FINALFUNC = @extschema@._model_summary_finalfn, SSPACE = 384, PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.model_summary(@extschema@.event_type, timestamptz, numeric, timestamptz) IS
    'One contact''s summaries for both models as of a time: (x, t_x, t) for MBG/NBD, (value_days, mean_value) for Gamma-Gamma';

CREATE OR REPLACE FUNCTION @extschema@.btyd_fit_state_in(cstring) RETURNS @extschema@.btyd_fit_state
AS 'MODULE_PATHNAME', 'es_btyd_fit_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@.btyd_fit_state_out(@extschema@.btyd_fit_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_btyd_fit_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._fit_transfn(@extschema@.btyd_fit_state, integer, float8, float8)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._fit_transfn(@extschema@.btyd_fit_state, integer, float8, float8, float8)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._fit_combinefn(@extschema@.btyd_fit_state, @extschema@.btyd_fit_state)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._fit_mbgnbd_finalfn(@extschema@.btyd_fit_state)
RETURNS @extschema@.model_fit AS 'MODULE_PATHNAME', 'es_btyd_fit_mbgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._fit_bgnbd_finalfn(@extschema@.btyd_fit_state)
RETURNS @extschema@.model_fit AS 'MODULE_PATHNAME', 'es_btyd_fit_bgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8, weight float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8, weight float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);

-- With an L2 penalty on the log-parameters (the same for every row).
CREATE OR REPLACE FUNCTION @extschema@._fit_transfn(@extschema@.btyd_fit_state, integer, float8, float8, float8, float8)
RETURNS @extschema@.btyd_fit_state AS 'MODULE_PATHNAME', 'es_btyd_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.fit_mbgnbd(x integer, t_x float8, t float8, weight float8, penalizer float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_mbgnbd_finalfn, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.fit_bgnbd(x integer, t_x float8, t float8, weight float8, penalizer float8) (
    SFUNC = @extschema@._fit_transfn, STYPE = @extschema@.btyd_fit_state,
    COMBINEFUNC = @extschema@._fit_combinefn, FINALFUNC = @extschema@._fit_bgnbd_finalfn, PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8, float8) IS
    'MBG/NBD parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';

COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8, float8) IS
    'BG/NBD parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';

CREATE OR REPLACE FUNCTION @extschema@.gammagamma_fit_state_in(cstring) RETURNS @extschema@.gammagamma_fit_state
AS 'MODULE_PATHNAME', 'es_gammagamma_fit_state_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@.gammagamma_fit_state_out(@extschema@.gammagamma_fit_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'es_gammagamma_fit_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.gammagamma_fit_state_in(cstring) IS
    'Text input of gammagamma_fit_state: [(x,m,weight),...], after {penalizer} when not 0';

COMMENT ON FUNCTION @extschema@.gammagamma_fit_state_out(@extschema@.gammagamma_fit_state) IS
    'Text output of gammagamma_fit_state, its rows collapsed and sorted';

CREATE OR REPLACE FUNCTION @extschema@._gammagamma_transfn(@extschema@.gammagamma_fit_state, integer, float8)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._gammagamma_transfn(@extschema@.gammagamma_fit_state, integer, float8, float8)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._gammagamma_transfn(@extschema@.gammagamma_fit_state, integer, float8, float8, float8)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._gammagamma_combinefn(@extschema@.gammagamma_fit_state, @extschema@.gammagamma_fit_state)
RETURNS @extschema@.gammagamma_fit_state AS 'MODULE_PATHNAME', 'es_gammagamma_fit_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@._gammagamma_finalfn(@extschema@.gammagamma_fit_state)
RETURNS @extschema@.gammagamma_fit AS 'MODULE_PATHNAME', 'es_gammagamma_fit_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE AGGREGATE @extschema@.fit_gammagamma(x integer, m float8) (
    SFUNC = @extschema@._gammagamma_transfn, STYPE = @extschema@.gammagamma_fit_state,
    COMBINEFUNC = @extschema@._gammagamma_combinefn, FINALFUNC = @extschema@._gammagamma_finalfn, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.fit_gammagamma(x integer, m float8, weight float8) (
    SFUNC = @extschema@._gammagamma_transfn, STYPE = @extschema@.gammagamma_fit_state,
    COMBINEFUNC = @extschema@._gammagamma_combinefn, FINALFUNC = @extschema@._gammagamma_finalfn, PARALLEL = SAFE);

CREATE OR REPLACE AGGREGATE @extschema@.fit_gammagamma(x integer, m float8, weight float8, penalizer float8) (
    SFUNC = @extschema@._gammagamma_transfn, STYPE = @extschema@.gammagamma_fit_state,
    COMBINEFUNC = @extschema@._gammagamma_combinefn, FINALFUNC = @extschema@._gammagamma_finalfn, PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8) IS
    'Maximum-likelihood Gamma-Gamma parameters (p, q, v) of customers with x valued conversion days of mean value m';

COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8, float8) IS
    'Maximum-likelihood Gamma-Gamma parameters of weighted customer summaries (x, m)';

COMMENT ON AGGREGATE @extschema@.fit_gammagamma(integer, float8, float8, float8) IS
    'Gamma-Gamma parameters maximising the mean log-likelihood minus penalizer * the sum of squared log-parameters';

CREATE OR REPLACE FUNCTION @extschema@.expected_conversion_value(x float8, m float8, p float8, q float8, v float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'es_expected_conversion_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.expected_conversion_value(float8, float8, float8, float8, float8) IS
    'Gamma-Gamma expected value of the next conversion day of a customer with x valued conversion days of mean value m: p (v + x m) / (p x + q - 1)';

COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of customer summaries (x repeat events, t_x, t)';

COMMENT ON AGGREGATE @extschema@.fit_mbgnbd(integer, float8, float8, float8) IS
    'Maximum-likelihood MBG/NBD parameters of weighted customer summaries (weight: how many identical customers)';

COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters of weighted customer summaries (weight: how many identical customers)';

COMMENT ON FUNCTION @extschema@.btyd_fit_state_in(cstring) IS
    'Text input of btyd_fit_state: [(x,t_x,t,weight),...], after {penalizer} when not 0';

COMMENT ON FUNCTION @extschema@.btyd_fit_state_out(@extschema@.btyd_fit_state) IS
    'Text output of btyd_fit_state, its rows collapsed and sorted (equal states print the same)';

COMMENT ON AGGREGATE @extschema@.fit_bgnbd(integer, float8, float8) IS
    'Maximum-likelihood BG/NBD parameters (Fader, Hardie & Lee 2005) of customer summaries (x, t_x, t)';

CREATE OR REPLACE FUNCTION @extschema@.p_alive(model text, x float8, t_x float8, t float8, r float8, alpha float8,
                                    a float8, b float8) RETURNS float8
AS 'MODULE_PATHNAME', 'es_p_alive' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@.expected_engagements(model text, horizon float8, x float8, t_x float8, t float8,
                                                 r float8, alpha float8, a float8, b float8) RETURNS float8
AS 'MODULE_PATHNAME', 'es_expected_engagements' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION @extschema@.prob_no_engagement(model text, horizon float8, x float8, t_x float8, t float8,
                                               r float8, alpha float8, a float8, b float8) RETURNS float8
AS 'MODULE_PATHNAME', 'es_prob_no_engagement' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.p_alive(text, float8, float8, float8, float8, float8, float8, float8) IS
    'P(alive at t | x, t_x, t) under mbgnbd or bgnbd';

COMMENT ON FUNCTION @extschema@.expected_engagements(text, float8, float8, float8, float8, float8, float8, float8, float8) IS
    'Expected number of events in (t, t + horizon] given (x, t_x, t), under mbgnbd or bgnbd';

COMMENT ON FUNCTION @extschema@.prob_no_engagement(text, float8, float8, float8, float8, float8, float8, float8, float8) IS
    'Probability of no event in (t, t + horizon] given (x, t_x, t), under mbgnbd or bgnbd';

------------------------------------------------------------------------------------------------
-- The penalty ladder (README "Predictive models fitted in the database", docs/model.md "Fitting"):
-- when a fit with the profile's fit_penalizer does not converge, fit_model and validate_model fit
-- the same summaries again with each of these L2 penalties above it, smallest first, and keep the
-- first that converges.  The one place the ladder is written.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@._fit_penalty_ladder() RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$SELECT '{0.001,0.01,0.1,1}'::float8[]$$;

COMMENT ON FUNCTION @extschema@._fit_penalty_ladder() IS
    'The L2 penalties fit_model and validate_model try, smallest first, when a fit with the profile''s fit_penalizer does not converge';

-- _fit_ladder: the fit of the summaries (parallel arrays, one element per distinct summary, weight
-- its contacts) with the penalty given; if it has rows and does not converge, the fits with the
-- ladder's penalties above it, until one converges.  fit_query: the fit with the penalty $1 and the
-- arrays $2 to $5; kind: NULL of its type.  fit: the one that converged, else the one with the
-- penalty given; penalty: its penalty; unconverged: the message of the fit with the penalty given
-- when a rung of the ladder replaced it; ladder: the penalties tried after it (empty when none was).
CREATE OR REPLACE FUNCTION @extschema@._fit_ladder(kind anyelement, fit_query text, penalizer float8, a1 integer[],
                                        a2 float8[], a3 float8[], weights float8[], OUT fit anyelement,
                                        OUT penalty float8, OUT unconverged text, OUT ladder float8[])
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rung  float8;
    tried record;
    fields text := format('SELECT (q.f).* FROM (%s) q(f)', fit_query);   -- (INTO takes the fit's fields)
BEGIN
    EXECUTE fields INTO fit USING penalizer, a1, a2, a3, weights;
    penalty := penalizer;
    ladder := '{}';
    IF fit.n IS NULL OR fit.converged THEN
        RETURN;
    END IF;
    FOREACH rung IN ARRAY @extschema@._fit_penalty_ladder() LOOP
        CONTINUE WHEN rung <= penalizer;
        ladder := ladder || rung;
        EXECUTE fields INTO tried USING rung, a1, a2, a3, weights;
        IF tried.converged THEN
            unconverged := fit.message;
            fit := tried;
            penalty := rung;
            RETURN;
        END IF;
    END LOOP;
END $$;

COMMENT ON FUNCTION @extschema@._fit_ladder(anyelement, text, float8, integer[], float8[], float8[], float8[]) IS
    'A fit of weighted summaries with the penalty given, or with the smallest penalty of the ladder above it that converges when that one does not';

CREATE OR REPLACE FUNCTION @extschema@._fit_mbgnbd_ladder(xs integer[], t_xs float8[], ts float8[], weights float8[],
                                               penalizer float8, OUT fit @extschema@.model_fit,
                                               OUT penalty float8, OUT unconverged text, OUT ladder float8[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@._fit_ladder(NULL::@extschema@.model_fit,
        'SELECT @extschema@.fit_mbgnbd(u.x, u.t_x, u.t, u.w, $1) FROM unnest($2, $3, $4, $5) u(x, t_x, t, w)',
        penalizer, xs, t_xs, ts, weights)
$$;

COMMENT ON FUNCTION @extschema@._fit_mbgnbd_ladder(integer[], float8[], float8[], float8[], float8) IS
    'fit_mbgnbd of weighted summaries with the penalty given, or with the smallest penalty of the ladder above it that converges when that one does not (_fit_ladder)';

CREATE OR REPLACE FUNCTION @extschema@._fit_gammagamma_ladder(xs integer[], ms float8[], weights float8[], penalizer float8,
                                                   OUT fit @extschema@.gammagamma_fit, OUT penalty float8,
                                                   OUT unconverged text, OUT ladder float8[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@._fit_ladder(NULL::@extschema@.gammagamma_fit,
        'SELECT @extschema@.fit_gammagamma(u.x, u.m, u.w, $1) FROM unnest($2, $3, $5) u(x, m, w)',
        penalizer, xs, ms, NULL, weights)
$$;

COMMENT ON FUNCTION @extschema@._fit_gammagamma_ladder(integer[], float8[], float8[], float8) IS
    'fit_gammagamma of weighted summaries with the penalty given, or with the smallest penalty of the ladder above it that converges when that one does not (_fit_ladder)';

-- _fit_ladder_note: what model_fits.message and the WARNINGs say of a fit the ladder decided:
-- that the fit with the profile's penalty did not converge and why, and which rung converged
-- (or that none did).  Which parameter ran off and which way, not where the optimiser left it
-- (a value of no meaning, which differs from one build of the library to another).
CREATE OR REPLACE FUNCTION @extschema@._fit_ladder_note(penalizer float8, unconverged text, penalty float8, ladder float8[])
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE
    WHEN unconverged IS NOT NULL THEN
        format('the %s did not converge: %s; it converged with the ladder''s penalty %s',
               CASE WHEN penalizer = 0 THEN 'unpenalised fit' ELSE format('fit with fit_penalizer %s', penalizer) END,
               regexp_replace(regexp_replace(unconverged, '^.*? fit did not converge: ', ''),
                              '(parameter \w+) = \S+ ran off', '\1 ran off'),
               penalty)
    WHEN cardinality(ladder) > 0 THEN
        format('nor with the ladder''s penalties %s', array_to_string(ladder, ', '))
    END $$;

COMMENT ON FUNCTION @extschema@._fit_ladder_note(float8, text, float8, float8[]) IS
    'What fit_model and validate_model say of a fit the penalty ladder rescued, or that no penalty of it converged';

------------------------------------------------------------------------------------------------
-- fit_model: both models fitted to the profile's contacts, recorded in model_fits, stored when
-- they converge.  A fit with the profile's fit_penalizer that does not converge is tried again
-- with the penalty ladder (_fit_penalty_ladder) on the same summaries; the smallest penalty that
-- converges is recorded, stored and warned of.  A fit that converges with none keeps the
-- profile's previous parameters; by hand (on_failure 'error') it is an error that says why (and,
-- the transaction rolled back, leaves no record); the scheduled refit ('warning') records it,
-- warns and goes on.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.fit_model(profile text DEFAULT 'default', as_of timestamptz DEFAULT now(),
                                      on_failure text DEFAULT 'error')
RETURNS SETOF @extschema@.model_fits
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on AS $$
DECLARE
    p        @extschema@.scoring_profiles;
    res      record;
    mbg      @extschema@.model_fit;
    gg       @extschema@.gammagamma_fit;
    rd       record;   -- the read of the events (_events_read_begin): the relation bound, the caller's role
    failures text[] := '{}';
    mbg_row  @extschema@.model_fits;
    gg_row   @extschema@.model_fits;
    mbg_l    record;   -- _fit_mbgnbd_ladder's answer: the fit kept, its penalty, the ladder tried
    gg_l     record;   -- _fit_gammagamma_ladder's
    mbg_note text;     -- what the ladder did (_fit_ladder_note), NULL: nothing
    gg_note  text;
    hint     text;
BEGIN
    PERFORM @extschema@._arguments_not_null('fit_model(profile, as_of, on_failure)',
                                            profile IS NULL, as_of IS NULL, on_failure IS NULL);
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
    -- The events are read with the rights of the role that set the source (_events_read_begin).
    rd := @extschema@._events_read_begin(p, NULL);
    -- One scan: each contact's summaries for both models, identical summaries collapsed with
    -- their count as weight (on postgres_fdw partitions the summaries are computed in each shard),
    -- kept as arrays, one element per distinct summary: the penalty ladder fits them again
    -- without scanning the events again.
    EXECUTE format($q$
        WITH c AS MATERIALIZED (
            SELECT @extschema@.model_summary(e.event_type, e.occurred_at, e.conversion_value, $1) AS s
              FROM %s e
             WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        b AS (SELECT array_agg(d.x) AS x, array_agg(d.t_x) AS t_x, array_agg(d.t) AS t,
                     array_agg(d.contacts::float8) AS w
                FROM (SELECT (c.s).x, (c.s).t_x, (c.s).t, count(*) AS contacts FROM c GROUP BY 1, 2, 3) d),
        g AS (SELECT array_agg(d.x) AS x, array_agg(d.m) AS m, array_agg(d.contacts::float8) AS w,
                     coalesce(sum(d.contacts), 0) AS valued
                FROM (SELECT (c.s).value_days AS x, (c.s).mean_value AS m, count(*) AS contacts
                        FROM c WHERE (c.s).value_days > 0 GROUP BY 1, 2) d)
        SELECT b.x AS b_x, b.t_x AS b_t_x, b.t AS b_t, b.w AS b_w, g.x AS g_x, g.m AS g_m, g.w AS g_w,
               (SELECT count(*) FROM c) AS contacts, g.valued
          FROM b, g$q$, rd.events)
    INTO res USING as_of;
    PERFORM @extschema@._events_read_end(rd.events, rd.caller);
    -- Each model with the profile's fit_penalizer, and if that does not converge with the ladder's
    -- penalties above it (_fit_penalty_ladder), keeping the smallest that converges.
    mbg_l := @extschema@._fit_mbgnbd_ladder(res.b_x, res.b_t_x, res.b_t, res.b_w, p.fit_penalizer);
    gg_l := @extschema@._fit_gammagamma_ladder(res.g_x, res.g_m, res.g_w, p.fit_penalizer);
    mbg := mbg_l.fit;
    gg := gg_l.fit;
    mbg_note := @extschema@._fit_ladder_note(p.fit_penalizer, mbg_l.unconverged, mbg_l.penalty, mbg_l.ladder);
    gg_note := @extschema@._fit_ladder_note(p.fit_penalizer, gg_l.unconverged, gg_l.penalty, gg_l.ladder);

    IF mbg.n IS NULL THEN   -- (not "mbg IS NULL": a converged fit has a NULL message)
        failures := failures || format('MBG/NBD: no contact has an event at or before %s: nothing to fit', as_of);
        IF on_failure = 'error' THEN
            RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to fit', p.name, as_of
                USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT mbg.converged THEN
        failures := failures || format('%s (%s contacts)%s', mbg.message, res.contacts, '; ' || mbg_note);
    END IF;
    INSERT INTO @extschema@.model_fits (profile, model, fitted_at, as_of, contacts, penalizer, parameters,
                                        standard_errors, log_likelihood, iterations, converged, stored, message)
    VALUES (p.name, 'mbgnbd', now(), as_of, res.contacts, mbg_l.penalty,
            CASE WHEN mbg.n IS NOT NULL THEN jsonb_build_object('r', mbg.r, 'alpha', mbg.alpha, 'a', mbg.a, 'b', mbg.b) END,
            CASE WHEN mbg.se_r IS NOT NULL
                 THEN jsonb_build_object('r', mbg.se_r, 'alpha', mbg.se_alpha, 'a', mbg.se_a, 'b', mbg.se_b) END,
            mbg.log_likelihood, mbg.iterations, coalesce(mbg.converged, false), coalesce(mbg.converged, false),
            CASE WHEN mbg.n IS NULL THEN 'no contact has an event at or before as_of'
                 WHEN NOT mbg.converged THEN mbg.message || coalesce('; ' || mbg_note, '') || '; the profile keeps its parameters'
                 ELSE mbg_note END)
    RETURNING * INTO mbg_row;

    -- Gamma-Gamma: no contact with a valued conversion is no failure (the defaults stay).
    IF gg.n IS NOT NULL AND NOT gg.converged THEN
        failures := failures || format('%s (%s contacts with valued conversions)%s', gg.message, res.valued, '; ' || gg_note);
    END IF;
    INSERT INTO @extschema@.model_fits (profile, model, fitted_at, as_of, contacts, penalizer, parameters,
                                        standard_errors, log_likelihood, iterations, converged, stored, message)
    VALUES (p.name, 'gammagamma', now(), as_of, res.valued, gg_l.penalty,
            CASE WHEN gg.n IS NOT NULL THEN jsonb_build_object('p', gg.p, 'q', gg.q, 'v', gg.v) END,
            CASE WHEN gg.se_p IS NOT NULL THEN jsonb_build_object('p', gg.se_p, 'q', gg.se_q, 'v', gg.se_v) END,
            gg.log_likelihood, gg.iterations, coalesce(gg.converged, false), coalesce(gg.converged, false),
            CASE WHEN gg.n IS NULL THEN 'no contact has a conversion with a value: the profile keeps gg_p, gg_q, gg_v'
                 WHEN NOT gg.converged THEN gg.message || coalesce('; ' || gg_note, '') || '; the profile keeps its parameters'
                 ELSE gg_note END)
    RETURNING * INTO gg_row;

    IF cardinality(failures) > 0 THEN
        hint := format('fit_model tries the L2 penalties %s above the profile''s fit_penalizer before it gives up; '
                       'data no penalty makes converge do not identify the model (e.g. no contact engages after its '
                       'first day, or a spend too heavy-tailed for a finite mean: q <= 1).',
                       array_to_string(@extschema@._fit_penalty_ladder(), ', '));
        IF on_failure = 'error' THEN
            RAISE EXCEPTION 'fit_model of profile "%": %', p.name, array_to_string(failures, '; ')
                USING ERRCODE = 'data_exception',
                      HINT = 'Nothing was stored.  ' || hint || '  fit_model(..., on_failure => ''warning'') stores what converged.';
        END IF;
        RAISE WARNING 'fit_model of profile "%": %; the profile keeps the previous parameters of that model',
                      p.name, array_to_string(failures, '; ')
            USING HINT = hint;
    END IF;
    -- A fit the ladder rescued is stored, and said so (on_failure 'error' too: it succeeded).
    IF mbg.converged AND mbg_note IS NOT NULL THEN
        RAISE WARNING 'fit_model of profile "%": MBG/NBD: %; stored with it', p.name, mbg_note
            USING HINT = 'model_fits.penalizer records the penalty used; the profile''s fit_penalizer chooses one from the start.';
    END IF;
    IF gg.converged AND gg_note IS NOT NULL THEN
        RAISE WARNING 'fit_model of profile "%": Gamma-Gamma: %; stored with it', p.name, gg_note
            USING HINT = 'model_fits.penalizer records the penalty used; the profile''s fit_penalizer chooses one from the start.';
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

COMMENT ON FUNCTION @extschema@.fit_model(text, timestamptz, text) IS
    'Fits the profile''s MBG/NBD (engagement days) and Gamma-Gamma (conversion value) models to its events as of a time, records both fits in model_fits, stores those that converged and returns the two records; on_failure ''error'' (by hand) or ''warning'' (scheduled)';

REVOKE EXECUTE ON FUNCTION @extschema@.fit_model(text, timestamptz, text) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Model validation (docs/model.md "Validation"): calibration up to calibration_end,
-- holdout to holdout_end.  _validation fills pg_temp._es_validation with every calibration
-- contact's summary as of the calibration end (its score there: the MBG/NBD and Gamma-Gamma
-- summaries, the conversion days for q, the opt-out and undeliverable flags, the composite),
-- predicted and actual repeat engagement days and conversion value in the holdout (and the predicted
-- engagement probability, which validate_lift ranks by), and returns
-- the parameters used; validate_model, validate_model_summary and validate_lift read it.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@._validation(calibration_end timestamptz, holdout_end timestamptz, profile text,
                                        fit boolean, OUT parameters @extschema@.model_fit,
                                        OUT value_parameters @extschema@.gammagamma_fit)
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET enable_partitionwise_aggregate = on
                   SET extra_float_digits = 3 AS $$   -- (the fitted parameters reach _predict exactly, through jsonb)
DECLARE
    p       @extschema@.scoring_profiles;
    rd      record;   -- the read of the events (_events_read_begin)
    fitted  record;   -- a _fit_*_ladder's answer
    note    text;
    doc     jsonb;    -- the profile with the parameters used, for _predict
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
    IF to_regclass('pg_temp._es_validation') IS NOT NULL THEN   -- left by an earlier call in this transaction
        DROP TABLE pg_temp._es_validation;
    END IF;
    rd := @extschema@._events_read_begin(p, NULL);
    -- calibration: one scan of the events up to C, each contact scored as of C with the profile
    -- (by name on engagement_events, as a document on a source, as _refresh_score_contacts does);
    -- actual: the distinct days d with day(C) < d <= day(H) holding an engaging event, and the
    -- conversion value of those days' converted events (NULL counts 0)
    EXECUTE format($q$
        CREATE TEMP TABLE _es_validation ON COMMIT DROP AS
        WITH cal AS (
            SELECT e.contact_id, @extschema@.score_events(e.event_type, e.occurred_at, e.conversion_value, $1, %2$s) AS s
              FROM %1$s e WHERE e.occurred_at <= $1 AND e.contact_id IS NOT NULL AND e.event_type IS NOT NULL
             GROUP BY e.contact_id),
        hold AS (
            SELECT e.contact_id, count(DISTINCT floor(extract(epoch FROM e.occurred_at) / 86400)) AS days,
                   sum(e.conversion_value) FILTER (WHERE e.event_type = 'converted') AS value
              FROM %1$s e
             WHERE e.event_type IN ('opened', 'clicked', 'responded', 'converted')
               AND e.occurred_at >= to_timestamp(($2 + 1) * 86400.0) AND e.occurred_at < to_timestamp(($3 + 1) * 86400.0)
             GROUP BY e.contact_id)
        SELECT cal.contact_id, (cal.s).x::integer AS x, (cal.s).t_x::float8 AS t_x, (cal.s).t_c::float8 AS t,
               (cal.s).n_days, (cal.s).conv_days, (cal.s).x_v::integer AS x_v, (cal.s).m_v,
               (cal.s).opted_out, (cal.s).undeliverable, (cal.s).composite,
               coalesce(hold.days, 0)::float8 AS actual, coalesce(hold.value, 0)::float8 AS actual_value,
               NULL::float8 AS predicted, NULL::float8 AS predicted_value, NULL::float8 AS engagement_probability
          FROM cal LEFT JOIN hold USING (contact_id)$q$,
        rd.events, CASE WHEN p.events_relation = '@extschema@.engagement_events'::regclass THEN '$4' ELSE '$5' END)
    USING calibration_end, cal_day, hold_day, p.name, to_jsonb(p);
    PERFORM @extschema@._events_read_end(rd.events, rd.caller);
    IF NOT EXISTS (SELECT FROM pg_temp._es_validation) THEN
        RAISE EXCEPTION 'profile "%": no contact has an event at or before %: nothing to validate', p.name, calibration_end
            USING ERRCODE = 'no_data_found';
    END IF;
    IF fit THEN
        -- with the profile's fit_penalizer, or the smallest penalty of the ladder that converges (as fit_model)
        fitted := (SELECT @extschema@._fit_mbgnbd_ladder(array_agg(v.x), array_agg(v.t_x), array_agg(v.t),
                                                         array_agg(v.n::float8), p.fit_penalizer)
                     FROM (SELECT x, t_x, t, count(*) AS n FROM pg_temp._es_validation GROUP BY 1, 2, 3) v);
        parameters := fitted.fit;
        note := @extschema@._fit_ladder_note(p.fit_penalizer, fitted.unconverged, fitted.penalty, fitted.ladder);
        IF NOT parameters.converged THEN
            RAISE EXCEPTION 'the calibration fit of profile "%" did not converge: %', p.name,
                            parameters.message || coalesce('; ' || note, '')
                USING ERRCODE = 'data_exception',
                      HINT = 'Validate with the profile''s parameters (fit => false).';
        ELSIF note IS NOT NULL THEN
            RAISE WARNING 'the calibration fit of profile "%": %; validated with it', p.name, note;
        END IF;
        -- Gamma-Gamma over the contacts with valued conversion days, the same way; none: the
        -- profile's parameters (as fit_model)
        fitted := (SELECT @extschema@._fit_gammagamma_ladder(array_agg(g.x_v), array_agg(g.m_v), array_agg(g.n::float8),
                                                             p.fit_penalizer)
                     FROM (SELECT x_v, m_v, count(*) AS n FROM pg_temp._es_validation WHERE x_v > 0 GROUP BY 1, 2) g);
        value_parameters := fitted.fit;
        note := @extschema@._fit_ladder_note(p.fit_penalizer, fitted.unconverged, fitted.penalty, fitted.ladder);
        IF value_parameters.n IS NULL THEN
            value_parameters := ROW(p.gg_p, p.gg_q, p.gg_v, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        ELSIF NOT value_parameters.converged THEN
            RAISE EXCEPTION 'the calibration Gamma-Gamma fit of profile "%" did not converge: %', p.name,
                            value_parameters.message || coalesce('; ' || note, '')
                USING ERRCODE = 'data_exception',
                      HINT = 'Validate with the profile''s parameters (fit => false).';
        ELSIF note IS NOT NULL THEN
            RAISE WARNING 'the calibration Gamma-Gamma fit of profile "%": %; validated with it', p.name, note;
        END IF;
    ELSE
        parameters := ROW(p.model_r, p.model_alpha, p.model_a, p.model_b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        value_parameters := ROW(p.gg_p, p.gg_q, p.gg_v, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    END IF;
    -- predicted: the MBG/NBD expectation over the holdout, unpenalised (the literature's check), one
    -- per distinct summary; the value and the probability: the score's expected_value and
    -- engagement_probability over the holdout, penalised (predict's kernel, with the parameters used)
    doc := to_jsonb(p) || jsonb_build_object('model_r', parameters.r, 'model_alpha', parameters.alpha,
                                             'model_a', parameters.a, 'model_b', parameters.b,
                                             'gg_p', value_parameters.p, 'gg_q', value_parameters.q,
                                             'gg_v', value_parameters.v);
    UPDATE pg_temp._es_validation v
       SET predicted = d.predicted, predicted_value = (c.pr).expected_value,
           engagement_probability = (c.pr).engagement_probability
      FROM (SELECT x, t_x, t, @extschema@.expected_engagements('mbgnbd', (hold_day - cal_day)::float8, x, t_x, t,
                                                                parameters.r, parameters.alpha, parameters.a,
                                                                parameters.b) AS predicted
              FROM (SELECT DISTINCT x, t_x, t FROM pg_temp._es_validation) u) d,
           (SELECT u.contact_id,
                   @extschema@._predict(doc, (hold_day - cal_day)::float8, u.x, u.t_x::bigint, u.t::bigint, u.n_days,
                                        u.conv_days, u.x_v, u.m_v, u.opted_out, u.undeliverable) AS pr
              FROM pg_temp._es_validation u OFFSET 0) c
     WHERE v.x = d.x AND v.t_x = d.t_x AND v.t = d.t AND v.contact_id = c.contact_id;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.validate_model(calibration_end timestamptz, holdout_end timestamptz,
                                           profile text DEFAULT 'default', fit boolean DEFAULT true)
RETURNS TABLE (x_bucket text, contacts bigint, predicted float8, actual float8, predicted_value float8,
               actual_value float8)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('validate_model(calibration_end, holdout_end, profile, fit)',
                                            calibration_end IS NULL, holdout_end IS NULL, profile IS NULL, fit IS NULL);
    PERFORM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    RETURN QUERY
    SELECT CASE WHEN v.x >= 7 THEN '7+' ELSE v.x::text END, count(*), avg(v.predicted), avg(v.actual),
           avg(v.predicted_value), avg(v.actual_value)
      FROM pg_temp._es_validation v
     GROUP BY 1 ORDER BY min(v.x);
    DROP TABLE pg_temp._es_validation;
END $$;

COMMENT ON FUNCTION @extschema@.validate_model(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout check: per calibration x (0..6, 7+), contacts, mean predicted vs actual repeat engagement days and mean predicted vs actual conversion value in the holdout (MBG/NBD and Gamma-Gamma fitted to the calibration period when fit, else the profile''s parameters)';

CREATE OR REPLACE FUNCTION @extschema@.validate_model_summary(calibration_end timestamptz, holdout_end timestamptz,
                                                   profile text DEFAULT 'default', fit boolean DEFAULT true,
                                                   OUT contacts bigint, OUT predicted_total float8,
                                                   OUT actual_total float8, OUT mean_absolute_error float8,
                                                   OUT correlation float8, OUT horizon_days integer,
                                                   OUT parameters @extschema@.model_fit,
                                                   OUT predicted_value_total float8, OUT actual_value_total float8,
                                                   OUT value_mean_absolute_error float8, OUT value_correlation float8,
                                                   OUT value_parameters @extschema@.gammagamma_fit)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    used record;
BEGIN
    PERFORM @extschema@._arguments_not_null('validate_model_summary(calibration_end, holdout_end, profile, fit)',
                                            calibration_end IS NULL, holdout_end IS NULL, profile IS NULL, fit IS NULL);
    SELECT * INTO used FROM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    parameters := used.parameters;
    value_parameters := used.value_parameters;
    horizon_days := floor(extract(epoch FROM holdout_end) / 86400) - floor(extract(epoch FROM calibration_end) / 86400);
    SELECT count(*), sum(v.predicted), sum(v.actual), avg(abs(v.predicted - v.actual)), corr(v.predicted, v.actual),
           sum(v.predicted_value), sum(v.actual_value), avg(abs(v.predicted_value - v.actual_value)),
           corr(v.predicted_value, v.actual_value)
      INTO contacts, predicted_total, actual_total, mean_absolute_error, correlation,
           predicted_value_total, actual_value_total, value_mean_absolute_error, value_correlation
      FROM pg_temp._es_validation v;
    DROP TABLE pg_temp._es_validation;
END $$;

COMMENT ON FUNCTION @extschema@.validate_model_summary(timestamptz, timestamptz, text, boolean) IS
    'Calibration/holdout totals: contacts, predicted and actual repeat engagement days, mean absolute error and correlation per contact, the MBG/NBD parameters used; the same for the conversion value and the Gamma-Gamma parameters used';

-- validate_lift: the calibration contacts ranked as of the calibration end, cut into deciles
-- (ntile(10), ties broken by contact_id), and each decile's share of the holdout's actual value.
CREATE OR REPLACE FUNCTION @extschema@.validate_lift(calibration_end timestamptz, holdout_end timestamptz,
                                          profile text DEFAULT 'default', rank_by text DEFAULT 'expected_value',
                                          fit boolean DEFAULT true)
RETURNS TABLE (decile integer, contacts bigint, predicted float8, actual float8, share float8,
               cumulative_share float8, lift float8)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('validate_lift(calibration_end, holdout_end, profile, rank_by, fit)',
                                            calibration_end IS NULL, holdout_end IS NULL, profile IS NULL,
                                            rank_by IS NULL, fit IS NULL);
    IF rank_by NOT IN ('expected_value', 'engagement_probability', 'composite') THEN
        RAISE EXCEPTION 'rank_by must be ''expected_value'', ''engagement_probability'' or ''composite'', not %',
                        quote_literal(rank_by) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._validation(calibration_end, holdout_end, profile, fit);
    RETURN QUERY
    WITH ranked AS (
        SELECT v.predicted_value, v.actual_value,
               ntile(10) OVER (ORDER BY CASE rank_by
                                        WHEN 'expected_value' THEN v.predicted_value
                                        WHEN 'composite' THEN v.composite
                                        ELSE v.engagement_probability
                                        END DESC, v.contact_id) AS k
          FROM pg_temp._es_validation v),
    deciles AS (
        SELECT r.k, count(*) AS n, sum(r.predicted_value) AS pv, sum(r.actual_value) AS av
          FROM ranked r GROUP BY r.k)
    SELECT t.k, t.n, t.pv, t.av,
           t.av / nullif(sum(t.av) OVER (), 0),
           sum(t.av) OVER (ORDER BY t.k) / nullif(sum(t.av) OVER (), 0),
           (t.av / nullif(sum(t.av) OVER (), 0)) / (t.n::float8 / sum(t.n) OVER ())
      FROM deciles t ORDER BY t.k;
    DROP TABLE pg_temp._es_validation;
END $$;

COMMENT ON FUNCTION @extschema@.validate_lift(timestamptz, timestamptz, text, text, boolean) IS
    'Lift by decile: the calibration contacts ranked by expected_value or engagement_probability over the holdout or by composite, as of the calibration end (ties by contact_id), cut into ten deciles (1 = top); per decile contacts, predicted and actual holdout conversion value, its share of all actual value, the cumulative share, and the lift (share / share of contacts)';

-- ----- from src/sql/predictions.sql

CREATE OR REPLACE FUNCTION @extschema@._predict(profile text, horizon_days float8, x bigint, t_x bigint, t_c bigint,
                                     n_days bigint, conv_days bigint, x_v bigint, m_v float8, opted_out boolean,
                                     undeliverable boolean)
RETURNS @extschema@.prediction
AS 'MODULE_PATHNAME', 'es_predict_summary' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@._predict(text, float8, bigint, bigint, bigint, bigint, bigint, bigint, float8, boolean, boolean) IS
    'The predictions of a stored summary over horizon_days, with the profile''s parameters (NULL for a score stored before model version 3)';

-- (the profile as a document: validation's, with the parameters fitted to its calibration period)
CREATE OR REPLACE FUNCTION @extschema@._predict(profile jsonb, horizon_days float8, x bigint, t_x bigint, t_c bigint,
                                     n_days bigint, conv_days bigint, x_v bigint, m_v float8, opted_out boolean,
                                     undeliverable boolean)
RETURNS @extschema@.prediction
AS 'MODULE_PATHNAME', 'es_predict_summary' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@._predict(jsonb, float8, bigint, bigint, bigint, bigint, bigint, bigint, float8, boolean, boolean) IS
    'The predictions of a stored summary over horizon_days, with the parameters of a profile document (to_jsonb of a profile row)';

CREATE OR REPLACE FUNCTION @extschema@._lifetime_value(profile text, months integer, x bigint, t_x bigint, t_c bigint,
                                            n_days bigint, conv_days bigint, x_v bigint, m_v float8,
                                            opted_out boolean, undeliverable boolean, monthly_discount_rate float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'es_lifetime_value_of_summary' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@._lifetime_value(text, integer, bigint, bigint, bigint, bigint, bigint, bigint, float8, boolean, boolean, float8) IS
    'The discounted lifetime value of a stored summary over months of 30 days, with the profile''s parameters';

-- The kernel's checks of a horizon (22023 when it is not a finite number of days > 0, 22003 beyond
-- 1e9 days) and of a lifetime's months and discount rate (22023), each error named after
-- function_name.  True when they hold.
CREATE OR REPLACE FUNCTION @extschema@._horizon_ok(function_name text, horizon_days float8) RETURNS boolean
AS 'MODULE_PATHNAME', 'es_horizon_ok' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@._horizon_ok(text, float8) IS
    'The kernel''s check of a prediction''s horizon: true, or an error named after function_name';

CREATE OR REPLACE FUNCTION @extschema@._lifetime_ok(function_name text, months integer, monthly_discount_rate float8) RETURNS boolean
AS 'MODULE_PATHNAME', 'es_lifetime_ok' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@._lifetime_ok(text, integer, float8) IS
    'The kernel''s checks of a lifetime value''s months and monthly discount rate: true, or an error named after function_name';

-- The checks of predict's and customer_lifetime_value's arguments, for the one-time condition of
-- their queries: 22004 for a NULL, the kernel's checks, 42704 for an unknown profile.  Always true
-- when they return.
CREATE OR REPLACE FUNCTION @extschema@._prediction_arguments(function_name text, profile text, horizon_days float8)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null(function_name, profile IS NULL, horizon_days IS NULL);
    PERFORM @extschema@._horizon_ok(function_name, horizon_days);
    PERFORM @extschema@._profile_or_error(profile);
    RETURN true;
END $$;

COMMENT ON FUNCTION @extschema@._prediction_arguments(text, text, float8) IS
    'Checks the arguments of predict and the profile; true, or an error';

CREATE OR REPLACE FUNCTION @extschema@._lifetime_arguments(function_name text, profile text, months integer,
                                                monthly_discount_rate float8)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null(function_name, profile IS NULL, months IS NULL, monthly_discount_rate IS NULL);
    PERFORM @extschema@._lifetime_ok(function_name, months, monthly_discount_rate);
    PERFORM @extschema@._profile_or_error(profile);
    RETURN true;
END $$;

COMMENT ON FUNCTION @extschema@._lifetime_arguments(text, text, integer, float8) IS
    'Checks the arguments of customer_lifetime_value and the profile; true, or an error';

-- Every stored score of the profile with its prediction, as a composite: the one query of both
-- forms of predict, which each read it below OFFSET 0 (so _predict runs once per score, not once per
-- field read), the contact's form with its condition above the function, where it still reaches
-- the scan.  (On Citus, _citus_predict in citus.sql is its form: a change here goes there too.)
CREATE OR REPLACE FUNCTION @extschema@._predictions(function_name text, profile text, horizon_days float8)
RETURNS TABLE (contact_id bigint, p @extschema@.prediction, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sc.contact_id,
           @extschema@._predict($2, $3, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v,
                                sc.m_v, sc.opted_out, sc.undeliverable),
           sc.calculated_at
      FROM @extschema@.engagement_scores sc
     WHERE sc.profile OPERATOR(pg_catalog.=) COALESCE($2, '')
       AND @extschema@._prediction_arguments($1, $2, $3)
$$;

COMMENT ON FUNCTION @extschema@._predictions(text, text, float8) IS
    'predict''s query: the profile''s stored scores with their predictions over horizon_days (the arguments checked as function_name''s)';

CREATE OR REPLACE FUNCTION @extschema@.predict(profile text, horizon_days float8)
RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
               expected_engagements float8, expected_value float8, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.contact_id, (s.p).engagement_probability, (s.p).conversion_probability, (s.p).expected_engagements,
           (s.p).expected_value, s.calculated_at
      FROM (SELECT * FROM @extschema@._predictions('predict(profile, horizon_days)', $1, $2) OFFSET 0) s
$$;

COMMENT ON FUNCTION @extschema@.predict(text, float8) IS
    'Every stored score''s predictions over the next horizon_days after its calculated_at (engagement and conversion probability, expected engagement days and value), from its stored summary and the profile''s parameters; equal to the stored fields at the profile''s horizon_days';

CREATE OR REPLACE FUNCTION @extschema@.predict(contact_id bigint, horizon_days float8, profile text DEFAULT 'default')
RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
               expected_engagements float8, expected_value float8, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.contact_id, (s.p).engagement_probability, (s.p).conversion_probability, (s.p).expected_engagements,
           (s.p).expected_value, s.calculated_at
      FROM (SELECT * FROM @extschema@._predictions('predict(contact_id, horizon_days, profile)', $3, $2) r
             WHERE r.contact_id OPERATOR(pg_catalog.=) $1 OFFSET 0) s
$$;

COMMENT ON FUNCTION @extschema@.predict(bigint, float8, text) IS
    'One contact''s predictions over the next horizon_days after its stored score''s calculated_at (no row when it has no stored score)';

-- (On Citus, _citus_lifetime_value in citus.sql is its form: a change here goes there too.)
CREATE OR REPLACE FUNCTION @extschema@.customer_lifetime_value(profile text, months integer, monthly_discount_rate float8)
RETURNS TABLE (contact_id bigint, lifetime_value float8, calculated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sc.contact_id,
           @extschema@._lifetime_value($1, $2, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v, sc.m_v,
                                       sc.opted_out, sc.undeliverable, $3),
           sc.calculated_at
      FROM @extschema@.engagement_scores sc
     WHERE sc.profile OPERATOR(pg_catalog.=) COALESCE($1, '')
       AND @extschema@._lifetime_arguments('customer_lifetime_value(profile, months, monthly_discount_rate)', $1, $2, $3)
$$;

COMMENT ON FUNCTION @extschema@.customer_lifetime_value(text, integer, float8) IS
    'Every stored score''s discounted lifetime value over the next months (of 30 days): per month, the expected engagement days x conversion share x expected conversion value, divided by (1 + monthly_discount_rate)^month (lifetimes'' customer_lifetime_value)';

-- ----- from src/sql/scheduling.sql

------------------------------------------------------------------------------------------------
-- Scheduled refreshes with pg_cron.  No dependency in the control file: pg_cron is reached by
-- dynamic SQL, and these functions say how to enable it when it is missing.  Jobs are named
-- engagement_scoring/<profile>/<kind> and run as the role that scheduled them.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@._require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Add pg_cron to shared_preload_libraries and set cron.database_name = %L in postgresql.conf, '
                                'restart PostgreSQL, then run CREATE EXTENSION pg_cron in this database.',
                                current_database());
    END IF;
END $$;

CREATE OR REPLACE FUNCTION @extschema@._job_name(profile text, kind text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'engagement_scoring/' || profile || '/' || kind
$$;

-- The jobs with pg_cron's record of their last run, and for refreshes the extension's own
-- (refresh_runs): what the last run of that kind did, skipped or why it failed.
CREATE OR REPLACE FUNCTION @extschema@.refresh_jobs()
RETURNS TABLE (job_name text, profile text, kind text, jobid bigint, schedule text, command text, active boolean,
               last_status text, last_start timestamptz, last_end timestamptz, last_message text,
               last_refresh_at timestamptz, last_refresh_rescored bigint, last_refresh_skipped boolean,
               last_refresh_unmapped bigint, last_refresh_error text)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require_pg_cron();
    RETURN QUERY EXECUTE $q$
        SELECT j.jobname::text, split_part(j.jobname, '/', 2), split_part(j.jobname, '/', 3), j.jobid::bigint,
               j.schedule::text, j.command::text, j.active, d.status::text, d.start_time, d.end_time,
               d.return_message::text, rr.started_at, rr.contacts_rescored, rr.skipped, rr.unmapped_rows, rr.error
          FROM cron.job j
          LEFT JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                               FROM cron.job_run_details r WHERE r.jobid = j.jobid
                              ORDER BY r.start_time DESC NULLS LAST LIMIT 1) d ON true
          -- (an incremental refresh may turn into a full one: the incremental job shows either)
          LEFT JOIN LATERAL (SELECT r.* FROM @extschema@.refresh_runs r
                              WHERE r.profile = split_part(j.jobname, '/', 2)
                                AND split_part(j.jobname, '/', 3) IN ('incremental', 'full')
                                AND (split_part(j.jobname, '/', 3) = 'incremental' OR r.mode = 'full')
                              ORDER BY r.started_at DESC LIMIT 1) rr ON true
         WHERE j.jobname LIKE 'engagement\_scoring/%'
         ORDER BY j.jobname $q$;
END $$;

COMMENT ON FUNCTION @extschema@.refresh_jobs() IS
    'The pg_cron jobs of engagement_scoring with pg_cron''s status of their last run and, for refreshes, the last refresh_runs record of that kind (when, rescored, skipped, unmapped rows, error)';

CREATE OR REPLACE FUNCTION @extschema@.unschedule_refresh(profile text DEFAULT 'default') RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text;
    removed integer := 0;
BEGIN
    PERFORM @extschema@._arguments_not_null('unschedule_refresh(profile)', profile IS NULL);
    PERFORM @extschema@._require_pg_cron();
    FOR name IN EXECUTE 'SELECT jobname::text FROM cron.job WHERE jobname IN ($1, $2, $3)'
                USING @extschema@._job_name(profile, 'incremental'), @extschema@._job_name(profile, 'full'),
                      @extschema@._job_name(profile, 'refit')
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
        removed := removed + 1;
    END LOOP;
    RETURN removed;
END $$;

COMMENT ON FUNCTION @extschema@.unschedule_refresh(text) IS 'Removes the pg_cron jobs of a profile; returns how many';

CREATE OR REPLACE FUNCTION @extschema@.schedule_refresh(profile text DEFAULT 'default',
                                             incremental_schedule text DEFAULT '*/5 * * * *',
                                             full_schedule text DEFAULT '17 3 * * *',
                                             refit_schedule text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.scoring_profiles;
    job record;
BEGIN
    IF profile IS NULL THEN
        RAISE EXCEPTION 'profile must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    p := @extschema@._profile_or_error(profile);
    PERFORM @extschema@._require_pg_cron();
    FOR job IN
        SELECT * FROM (VALUES
            -- a refresh that fails is recorded in refresh_runs (and warns); the job goes on
            ('incremental', incremental_schedule, format('SELECT @extschema@.refresh_scores(%L, on_error => %L)', p.name, 'record')),
            ('full', full_schedule, format('SELECT @extschema@.refresh_scores(%L, true, %L)', p.name, 'record')),
            -- a refit that does not converge warns and keeps the previous parameters: the job goes on
            ('refit', refit_schedule, format('SELECT @extschema@.fit_model(%L, on_failure => %L)', p.name, 'warning'))) v(kind, schedule, command)
    LOOP
        IF job.schedule IS NULL THEN
            -- No schedule: no job of that kind.
            IF EXISTS (SELECT FROM @extschema@.refresh_jobs() r WHERE r.job_name = @extschema@._job_name(p.name, job.kind)) THEN
                EXECUTE 'SELECT cron.unschedule($1)' USING @extschema@._job_name(p.name, job.kind);
            END IF;
        ELSE
            -- cron.schedule with a job name replaces that job: calling this twice leaves one job.
            RETURN QUERY EXECUTE 'SELECT cron.schedule($1, $2, $3)'
                USING @extschema@._job_name(p.name, job.kind), job.schedule, job.command;
        END IF;
    END LOOP;
END $$;

COMMENT ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) IS
    'Creates or updates the pg_cron jobs of a profile: incremental and full refreshes, and optionally a model refit (NULL: no job); returns their job ids';

REVOKE EXECUTE ON FUNCTION @extschema@.schedule_refresh(text, text, text, text) FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION @extschema@.unschedule_refresh(text) FROM PUBLIC;

-- ----- from src/sql/citus.sql

-- Whether rel is a Citus table, and of which kind ('h' hash-distributed, 'n' reference or Citus
-- local); NULL without Citus or for a plain table.
CREATE OR REPLACE FUNCTION @extschema@._citus_method(rel regclass) RETURNS "char"
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
CREATE OR REPLACE FUNCTION @extschema@._on_citus() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(@extschema@._citus_method('@extschema@.engagement_scores') = 'h', false)
$$;

-- The shard of rel co-located with a shard (named as in TG_TABLE_NAME: <table>_<shardid>), on the
-- same worker: the one with the same hash range.  NULL when there is none.
CREATE OR REPLACE FUNCTION @extschema@._colocated_shard(shard text, rel regclass) RETURNS text
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
CREATE OR REPLACE FUNCTION @extschema@._track_shard_changes() RETURNS trigger
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
CREATE OR REPLACE FUNCTION @extschema@._track_distributed_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO @extschema@.event_changes (contact_id, relation)
    SELECT DISTINCT s.contact_id, TG_ARGV[0]::oid FROM @extschema@.engagement_scores s;
    RETURN NULL;
END $$;

REVOKE EXECUTE ON FUNCTION @extschema@._track_distributed_truncate() FROM PUBLIC;

-- The triggers of track_event_changes on a distributed events table: statement-level, with
-- transition tables, on every shard (which Citus allows with citus.enable_unsafe_triggers on).
CREATE OR REPLACE FUNCTION @extschema@._citus_track(events regclass, contact name) RETURNS void
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
CREATE OR REPLACE FUNCTION @extschema@._citus_write_scores(p @extschema@.scoring_profiles, refresh_at timestamptz,
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
    EXECUTE format($q$
        INSERT INTO @extschema@.engagement_scores AS cur (profile, contact_id, %1$s, percentile_rank,
               score_version, profile_version, model_version, calculated_at)
        SELECT ($1).name, n.contact_id, %2$s, n.pct, n.new_score_version, ($1).version, @extschema@.model_version(), $2
          FROM pg_temp._es_ranked n
        ON CONFLICT (profile, contact_id) DO UPDATE
           SET %3$s, percentile_rank = excluded.percentile_rank, score_version = excluded.score_version,
               profile_version = excluded.profile_version, model_version = excluded.model_version,
               calculated_at = excluded.calculated_at
        $q$, @extschema@._stored_score_list('%I'), @extschema@._stored_score_list('n.%I'),
             @extschema@._stored_score_list('%1$I = excluded.%1$I'))
    USING p, refresh_at;
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
        DELETE FROM @extschema@.engagement_score_history h WHERE h.profile = p.name AND h.contact_id = ANY (removed);
    END IF;
    DROP TABLE pg_temp._es_prev, pg_temp._es_ranked;
    RETURN rescored;
END $$;

-- predict and customer_lifetime_value are SQL functions the planner inlines on one node; Citus
-- (with PostgreSQL before 18) refuses an inlined SQL function that reads a distributed table
-- ("parameterized queries for SQL functions referencing distributed tables are not supported"),
-- at the top level as in a shard.  On Citus their bodies call these PL/pgSQL forms instead
-- (_citus_sql_functions); in a Citus task, predict of a contact reads the contact's shard of the
-- scores on that node (_citus_local_relation).
CREATE OR REPLACE FUNCTION @extschema@._citus_predict(function_name text, profile text, horizon_days float8, contact bigint,
                                            every_contact boolean)
RETURNS TABLE (c bigint, engagement_probability float8, conversion_probability float8,
               expected_engagements float8, expected_value float8, calculated_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._prediction_arguments(function_name, profile, horizon_days);
    RETURN QUERY EXECUTE format(
        'SELECT s.contact_id, (s.p).engagement_probability, (s.p).conversion_probability, (s.p).expected_engagements,
                (s.p).expected_value, s.calculated_at
           FROM (SELECT sc.contact_id, sc.calculated_at,
                        @extschema@._predict($1, $2, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v,
                                             sc.m_v, sc.opted_out, sc.undeliverable) AS p
                   FROM %s sc WHERE sc.profile = $1 AND ($4 OR sc.contact_id = $3) OFFSET 0) s',
        CASE WHEN NOT every_contact AND contact IS NOT NULL AND @extschema@._in_citus_shard_query()
             THEN @extschema@._citus_local_relation('@extschema@.engagement_scores', contact)
             ELSE '@extschema@.engagement_scores' END)
      USING profile, horizon_days, contact, every_contact;
END $$;

CREATE OR REPLACE FUNCTION @extschema@._citus_lifetime_value(profile text, months integer, monthly_discount_rate float8)
RETURNS TABLE (c bigint, lifetime_value float8, calculated_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._lifetime_arguments('customer_lifetime_value(profile, months, monthly_discount_rate)', profile,
                                            months, monthly_discount_rate);
    RETURN QUERY
    SELECT sc.contact_id,
           @extschema@._lifetime_value(_citus_lifetime_value.profile, months, sc.x, sc.t_x, sc.t_c, sc.n_days, sc.conv_days, sc.x_v, sc.m_v,
                                       sc.opted_out, sc.undeliverable, monthly_discount_rate),
           sc.calculated_at
      FROM @extschema@.engagement_scores sc
     WHERE sc.profile = _citus_lifetime_value.profile;
END $$;

-- predict's and customer_lifetime_value's bodies on Citus: the PL/pgSQL forms above (run by
-- citus_distribute, every time; Citus makes the change on the workers too).  Same signatures,
-- names and results; no SET clause, every name qualified, as for the inlinable forms.
CREATE OR REPLACE FUNCTION @extschema@._citus_sql_functions() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CREATE OR REPLACE FUNCTION @extschema@.predict(profile text, horizon_days float8)
    RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
                   expected_engagements float8, expected_value float8, calculated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
        SELECT * FROM @extschema@._citus_predict('predict(profile, horizon_days)', $1, $2, NULL, true)
    $b$;
    CREATE OR REPLACE FUNCTION @extschema@.predict(contact_id bigint, horizon_days float8, profile text DEFAULT 'default')
    RETURNS TABLE (contact_id bigint, engagement_probability float8, conversion_probability float8,
                   expected_engagements float8, expected_value float8, calculated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
        SELECT * FROM @extschema@._citus_predict('predict(contact_id, horizon_days, profile)', $3, $2, $1, false)
    $b$;
    CREATE OR REPLACE FUNCTION @extschema@.customer_lifetime_value(profile text, months integer, monthly_discount_rate float8)
    RETURNS TABLE (contact_id bigint, lifetime_value float8, calculated_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
        SELECT * FROM @extschema@._citus_lifetime_value($1, $2, $3)
    $b$;
END $$;

REVOKE EXECUTE ON FUNCTION @extschema@._citus_sql_functions() FROM PUBLIC;

-- citus_distribute(events): the one way to run the extension on Citus (docs/scale-out.md).  While
-- it runs, unsafe triggers are allowed (its SET clause): the profiles' triggers run on every
-- placement of their reference table.
CREATE OR REPLACE FUNCTION @extschema@.citus_distribute(events regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp SET citus.enable_unsafe_triggers = on AS $$
DECLARE
    contact  name;
    method   "char";
    t        text;
    fk       record;
BEGIN
    PERFORM @extschema@._arguments_not_null('citus_distribute(events)', events IS NULL);
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
    PERFORM @extschema@._citus_sql_functions();
    UPDATE @extschema@.scoring_profiles p SET events_relation = events
     WHERE p.name = 'default' AND p.events_relation IS DISTINCT FROM events;
END $$;

COMMENT ON FUNCTION @extschema@.citus_distribute(regclass) IS
    'Lays the extension out on Citus (run once on the coordinator, by a superuser): distributes the events table by its contact column if it is not yet, and co-located with it the scores, their history and the change log; makes the profiles and the other small tables reference tables; tracks the events'' changes in their shards; points the default profile at the events';

REVOKE EXECUTE ON FUNCTION @extschema@.citus_distribute(regclass) FROM PUBLIC;

-- ----- from src/sql/access.sql

------------------------------------------------------------------------------------------------
-- Access: nothing on the tables for PUBLIC.  Two grants make the least-privilege model:
--   application: inserts events, reads events, scores, history and profiles, calls the scoring
--                and query functions; cannot change profiles, scores or existing events.
--   admin:       everything, including profiles, refresh, fitting and scheduling.
-- The functions run with the caller's privileges (no SECURITY DEFINER, but for the change-tracking
-- triggers, which alone write the change log), so the table grants are the whole policy; the
-- writing functions are also kept from PUBLIC.
------------------------------------------------------------------------------------------------
-- The role, or 42704 for a role that does not exist (0::regrole, or one dropped since).
CREATE OR REPLACE FUNCTION @extschema@._role_or_error(role_name regrole) RETURNS regrole
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = role_name) THEN
        RAISE EXCEPTION 'role with OID % does not exist', role_name::oid USING ERRCODE = 'undefined_object';
    END IF;
    RETURN role_name;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.grant_application_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('grant_application_access(role_name)', role_name IS NULL);
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

COMMENT ON FUNCTION @extschema@.grant_application_access(regrole) IS
    'Lets a role insert and read events, read scores, history and profiles, and call the scoring and query functions';

CREATE OR REPLACE FUNCTION @extschema@.grant_admin_access(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._arguments_not_null('grant_admin_access(role_name)', role_name IS NULL);
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
                    @extschema@.forget_contact(bigint),
                    @extschema@.track_event_changes(regclass, regclass, name), @extschema@.untrack_event_changes(regclass),
                    @extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[], name),
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

COMMENT ON FUNCTION @extschema@.grant_admin_access(regrole) IS
    'Lets a role do everything: events, profiles, scores, refresh_scores, fitting and scheduling';

REVOKE EXECUTE ON FUNCTION @extschema@.grant_application_access(regrole) FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION @extschema@.grant_admin_access(regrole) FROM PUBLIC;

CREATE TRIGGER event_kind_map_check AFTER INSERT OR UPDATE ON @extschema@.event_kind_map
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._kind_maps_check();

-- The funnels' chain of stages, a profile's own (its check needs _funnel_stages_valid, made above).
ALTER TABLE @extschema@.scoring_profiles
    ADD COLUMN funnel_stages @extschema@.event_type[] NOT NULL DEFAULT '{delivered,opened,clicked,responded,converted}'
        CHECK (@extschema@._funnel_stages_valid(funnel_stages));
COMMENT ON COLUMN @extschema@.scoring_profiles.funnel_stages IS
    'The funnel''s chain of stages, in order (delivered, opened, clicked, responded, converted by default; an SMS CRM might say delivered, clicked, converted)';
-- The roles that could define a source or refresh (admins) keep that, and may erase a contact.
SELECT @extschema@._upgrade_copy_grants(proacl, 'FUNCTION',
         '@extschema@.define_event_source(regclass, jsonb, name, name, name, name, text, text, regclass[], name)')
  FROM pg_temp._es_source_acl;
DROP TABLE pg_temp._es_source_acl;
SELECT @extschema@._upgrade_copy_grants(p.proacl, 'FUNCTION', '@extschema@.forget_contact(bigint)')
  FROM pg_proc p WHERE p.oid = '@extschema@.refresh_scores(text, boolean, text)'::regprocedure;

-- The score fields' comments, for the new ones (_score_field_comments, just replaced).
SELECT @extschema@._comment_score_columns(r)
  FROM unnest(ARRAY['@extschema@.score', '@extschema@.engagement_scores', '@extschema@.contact_scores']::regclass[]) r;
DROP FUNCTION @extschema@._upgrade_copy_grants(aclitem[], text, text);

CREATE TRIGGER scoring_profiles_create_distribution AFTER INSERT ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_create_distribution();
CREATE TRIGGER score_distributions_replace_empty BEFORE INSERT ON @extschema@.score_distributions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._distribution_replace_empty();
INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version, model_version)
SELECT p.name, '', 0, 0, 0 FROM @extschema@.scoring_profiles p
 WHERE NOT EXISTS (SELECT FROM @extschema@.score_distributions d WHERE d.profile = p.name);
