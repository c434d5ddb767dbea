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
-- @create contact_scores
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
-- @create prediction

-- fit_model's penalty ladder (issue 25): a fit that does not converge with the profile's
-- fit_penalizer is tried with larger penalties; model_fits.penalizer is the one used.
COMMENT ON COLUMN @extschema@.scoring_profiles.fit_penalizer IS
    'fit_model maximises the mean log-likelihood minus fit_penalizer * the sum of squared log-parameters (both models); when a fit with it does not converge, fit_model tries the penalty ladder above it (0.001, 0.01, 0.1, 1)';
COMMENT ON COLUMN @extschema@.model_fits.penalizer IS 'The L2 penalty on the log-parameters used: the profile''s fit_penalizer, or the penalty of the ladder that made the fit converge';

-- @functions

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
