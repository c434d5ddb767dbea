-- engagement_scoring 1.5 -> 1.6.  The scoring model is unchanged: stored scores stay current.
-- Written by `make update-script` from src/sql/updates/1.5--1.6.sql (what is written by hand: the
-- ALTERs and data moves) and the functions of src/sql/.

\echo Use "ALTER EXTENSION engagement_scoring UPDATE TO '1.6'" to load this file. \quit

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

COMMENT ON COLUMN @extschema@.refresh_runs.unmapped_kinds IS 'The first five of those kinds, each cut to 64 characters (with its length)';

-- @functions

CREATE TRIGGER event_kind_map_check AFTER INSERT OR UPDATE ON @extschema@.event_kind_map
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._kind_maps_check();

CREATE TRIGGER scoring_profiles_create_distribution AFTER INSERT ON @extschema@.scoring_profiles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._profile_create_distribution();
CREATE TRIGGER score_distributions_replace_empty BEFORE INSERT ON @extschema@.score_distributions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._distribution_replace_empty();
INSERT INTO @extschema@.score_distributions (profile, sorted_composites, contacts, profile_version, model_version)
SELECT p.name, '', 0, 0, 0 FROM @extschema@.scoring_profiles p
 WHERE NOT EXISTS (SELECT FROM @extschema@.score_distributions d WHERE d.profile = p.name);
