-- horizons: predictions at any horizon and lifetime value from the stored summaries (predict,
-- customer_lifetime_value), against the contract's formulas written in plain SQL
-- (test/reference_model.sql: ref.expected_engagements, lifetimes' closed form with the Gauss
-- series), the stored fields at the profile's horizon, argument errors, and the plans (inlined
-- into the caller's query).  In a transaction that is rolled back.
BEGIN;
-- A second profile with other parameters, horizon 7 and a stronger opt-out penalty; both refreshed.
INSERT INTO engagement.scoring_profiles (name, horizon_days, model_r, model_alpha, model_a, model_b, opt_out_penalty, gg_p, gg_q, gg_v)
VALUES ('weekly', 7, 0.4, 25, 0.8, 4, 0.5, 3, 2.5, 20);
SELECT engagement.refresh_scores('default', true) > 0 AS default_scored,
       engagement.refresh_scores('weekly', true) > 0 AS weekly_scored;
SELECT profile, count(*) > 100 AS many, bool_or(opted_out) AS some_opted_out, bool_or(undeliverable) AS some_undeliverable,
       bool_or(x > 0) AS some_repeat, bool_or(x_v > 0) AS some_valued
  FROM engagement.engagement_scores WHERE profile IN ('default', 'weekly') GROUP BY profile ORDER BY profile;

-- 1. At each profile's own horizon, predict is the stored fields, to the bit.
WITH p AS MATERIALIZED (
    SELECT sp.name AS profile, p.* FROM engagement.scoring_profiles sp CROSS JOIN LATERAL engagement.predict(sp.name, sp.horizon_days) p
     WHERE sp.name IN ('default', 'weekly'))
SELECT s.profile, count(*) > 1000 AS many,
       count(*) FILTER (WHERE p.engagement_probability IS DISTINCT FROM s.engagement_probability
                           OR p.conversion_probability IS DISTINCT FROM s.conversion_probability
                           OR p.expected_engagements IS DISTINCT FROM s.expected_engagements_30d
                           OR p.expected_value IS DISTINCT FROM s.expected_value_30d
                           OR p.calculated_at IS DISTINCT FROM s.calculated_at) AS differing
  FROM engagement.engagement_scores s JOIN p USING (profile, contact_id)
 GROUP BY s.profile ORDER BY s.profile;

-- The plain-SQL expectation sums a series whose terms shrink slowly at long horizons: it is
-- evaluated for a sample of each profile's scores that covers the summaries' range (the most
-- repeat days, the newest contacts, the opted out, and others by hash).
CREATE TEMP TABLE sample AS
SELECT (s.s).* FROM (
    SELECT s, row_number() OVER (PARTITION BY profile ORDER BY x DESC, contact_id) AS by_x,
           row_number() OVER (PARTITION BY profile ORDER BY t_c, contact_id) AS by_tc,
           row_number() OVER (PARTITION BY profile ORDER BY NOT opted_out, contact_id) AS by_opt_out,
           row_number() OVER (PARTITION BY profile ORDER BY hashint8(contact_id)) AS by_hash
      FROM engagement.engagement_scores s WHERE profile IN ('default', 'weekly')) s
 WHERE by_x <= 15 OR by_tc <= 10 OR by_opt_out <= 5 OR by_hash <= 60;
SELECT profile, count(*) >= 60 AS sampled, max(x) > 10 AS many_repeat_days,
       bool_or(opted_out) AS opted_out, bool_or(x_v > 0) AS valued
  FROM sample GROUP BY profile ORDER BY profile;

-- 2. Other horizons against docs/model.md in plain SQL (to 1e-9 relative, ref.close): the sampled
-- scores of both profiles at 0.5, 7, 30, 90 and 365 days.
CREATE TEMP TABLE expected AS
SELECT s.profile, s.contact_id, h.h,
       pa * (1 - power((sp.model_alpha + s.t_c) / (sp.model_alpha + s.t_c + h.h), sp.model_r + s.x)) * keep AS engagement_probability,
       pa * (1 - power((sp.model_alpha + s.t_c) / (sp.model_alpha + s.t_c + h.h), sp.model_r + s.x)) * q * keep AS conversion_probability,
       e * keep AS expected_engagements,
       e * q * ecv * keep AS expected_value
  FROM sample s
  JOIN engagement.scoring_profiles sp ON sp.name = s.profile
  CROSS JOIN (VALUES (0.5::float8), (7), (30), (90), (365)) h(h)
  CROSS JOIN LATERAL (SELECT
       1 / (1 + (sp.model_a / (sp.model_b + s.x)) * power((sp.model_alpha + s.t_c) / (sp.model_alpha + s.t_x), sp.model_r + s.x)) AS pa,
       (s.conv_days + sp.conv_prior_a) / (s.n_days + sp.conv_prior_a + sp.conv_prior_b) AS q,
       sp.gg_p * (sp.gg_v + s.x_v * s.m_v) / (sp.gg_p * s.x_v + sp.gg_q - 1) AS ecv,
       CASE WHEN s.opted_out THEN 1 - sp.opt_out_penalty ELSE 1 END
         * CASE WHEN s.undeliverable THEN 1 - sp.undeliverable_penalty ELSE 1 END AS keep,
       ref.expected_engagements(h.h, s.x, s.t_x, s.t_c, sp.model_r, sp.model_alpha, sp.model_a, sp.model_b) AS e) f;
WITH p AS MATERIALIZED (
    SELECT sp.name AS profile, h.h, p.* FROM engagement.scoring_profiles sp
     CROSS JOIN (SELECT DISTINCT h FROM expected) h CROSS JOIN LATERAL engagement.predict(sp.name, h.h) p)
SELECT e.profile, e.h, count(*) >= 60 AS sampled,
       count(*) FILTER (WHERE NOT (ref.close(p.engagement_probability, e.engagement_probability)
                                   AND ref.close(p.conversion_probability, e.conversion_probability)
                                   AND ref.close(p.expected_engagements, e.expected_engagements)
                                   AND ref.close(p.expected_value, e.expected_value))) AS differing
  FROM expected e JOIN p USING (profile, contact_id, h)
 GROUP BY 1, 2 ORDER BY 1, 2;
-- Longer horizons never predict less.
SELECT count(*) AS decreasing
  FROM (SELECT profile, contact_id, h, expected_value, expected_engagements, engagement_probability,
               lag(expected_value) OVER w AS ev, lag(expected_engagements) OVER w AS ee, lag(engagement_probability) OVER w AS ep
          FROM expected WINDOW w AS (PARTITION BY profile, contact_id ORDER BY h)) t
 WHERE expected_value < ev OR expected_engagements < ee OR engagement_probability < ep;

-- 3. The per-contact form is the row of the set's, and the set's filters plan as a query on the
-- scores table (inlined: no function scan, the contact's index entry).
SELECT count(*) > 1000 AS many,
       count(*) FILTER (WHERE (SELECT c FROM engagement.predict(s.contact_id, 7, 'weekly') c)
                              IS DISTINCT FROM s) AS differing
  FROM engagement.predict('weekly', 7) s;
SELECT count(*) AS rows_of_an_unscored_contact FROM engagement.predict(-1, 7);
-- (the plans' facts only: which scan the planner picks depends on the statistics)
WITH plans(query, plan) AS (
    SELECT q, (SELECT string_agg(l, E'\n') FROM ref.plan(q) l)
      FROM (VALUES ($$SELECT * FROM engagement.predict(42, 7, 'weekly')$$),
                   ($$SELECT contact_id FROM engagement.predict('weekly', 30) ORDER BY expected_value DESC LIMIT 10$$),
                   ($$SELECT sum(lifetime_value) FROM engagement.customer_lifetime_value('weekly', 12, 0.01)$$)) v(q))
SELECT query, plan !~ 'Function Scan' AS inlined, plan ~ 'engagement_scores' AS reads_the_scores,
       plan ~ 'One-Time Filter: engagement._(prediction|lifetime)_arguments' AS arguments_checked_once,
       plan ~ 'Index Cond: \(\(profile = .weekly.::text\) AND \(contact_id = .42.::bigint\)\)' AS by_the_contacts_index
  FROM plans;

-- 4. Lifetime value: lifetimes' sum over months of 30 days, in plain SQL, for 25 sampled contacts
-- of each profile and three discount rates; one month undiscounted is the 30-day expected value.
-- (E(0) = 0: month k's engagement days are E(30k) - E(30(k - 1)), k = 1..12)
CREATE TEMP TABLE monthly AS
SELECT s.profile, s.contact_id, k,
       ref.expected_engagements(30 * k, s.x, s.t_x, s.t_c, sp.model_r, sp.model_alpha, sp.model_a, sp.model_b) AS e
  FROM sample s JOIN engagement.scoring_profiles sp ON sp.name = s.profile, generate_series(0, 12) k
 WHERE s.contact_id IN (SELECT contact_id FROM sample t WHERE t.profile = s.profile ORDER BY hashint8(contact_id + 1) LIMIT 25);
SELECT d.rate, count(*) AS contacts,
       count(*) FILTER (WHERE NOT ref.close(c.lifetime_value, ex.clv)) AS differing,
       min(c.lifetime_value) >= 0 AS non_negative
  FROM sample s
  JOIN engagement.scoring_profiles sp ON sp.name = s.profile
  CROSS JOIN (VALUES (0::float8), (0.01), (0.15)) d(rate)
  CROSS JOIN LATERAL (
      SELECT sum((m.e - m0.e) / power(1 + d.rate, m.k))
             * (s.conv_days + sp.conv_prior_a) / (s.n_days + sp.conv_prior_a + sp.conv_prior_b)
             * sp.gg_p * (sp.gg_v + s.x_v * s.m_v) / (sp.gg_p * s.x_v + sp.gg_q - 1)
             * CASE WHEN s.opted_out THEN 1 - sp.opt_out_penalty ELSE 1 END
             * CASE WHEN s.undeliverable THEN 1 - sp.undeliverable_penalty ELSE 1 END AS clv
        FROM monthly m JOIN monthly m0 ON (m0.profile, m0.contact_id, m0.k) = (m.profile, m.contact_id, m.k - 1)
       WHERE (m.profile, m.contact_id) = (s.profile, s.contact_id)) ex
  JOIN engagement.customer_lifetime_value(s.profile, 12, d.rate) c ON c.contact_id = s.contact_id
 WHERE (s.profile, s.contact_id) IN (SELECT profile, contact_id FROM monthly)
 GROUP BY d.rate ORDER BY d.rate;
WITH c AS MATERIALIZED (SELECT * FROM engagement.customer_lifetime_value('default', 1, 0)),
     p AS MATERIALIZED (SELECT * FROM engagement.predict('default', 30))
SELECT count(*) > 1000 AS many, count(*) FILTER (WHERE NOT ref.close(c.lifetime_value, p.expected_value)) AS differing
  FROM c JOIN p USING (contact_id);
-- Discounting lowers it; a longer life raises it.
WITH a AS MATERIALIZED (SELECT * FROM engagement.customer_lifetime_value('weekly', 12, 0.05)),
     b AS MATERIALIZED (SELECT * FROM engagement.customer_lifetime_value('weekly', 12, 0.1)),
     c AS MATERIALIZED (SELECT * FROM engagement.customer_lifetime_value('weekly', 24, 0.05))
SELECT count(*) > 1000 AS many, count(*) FILTER (WHERE a.lifetime_value < b.lifetime_value) AS discounted_higher,
       count(*) FILTER (WHERE c.lifetime_value < a.lifetime_value) AS longer_lower
  FROM a JOIN b USING (contact_id) JOIN c USING (contact_id);

-- 5. A score stored before model version 3 (no summary yet) predicts NULL, until it is rescored.
UPDATE engagement.engagement_scores SET x = NULL, t_x = NULL WHERE profile = 'weekly' AND contact_id = (SELECT min(contact_id) FROM engagement.engagement_scores WHERE profile = 'weekly');
SELECT count(*) FILTER (WHERE expected_value IS NULL) AS without_summary,
       count(*) FILTER (WHERE expected_value IS NOT NULL) > 100 AS others_predicted
  FROM engagement.predict('weekly', 7);
ROLLBACK;

-- 6. Arguments (the kernel's checks of the horizon, months and rate): NULL 22004, not a finite
-- horizon > 0 22023, beyond 1e9 days 22003, an unknown profile 42704; months outside 1..1200 and
-- discount rates not finite and >= 0: 22023.  Checked before any score is read (so also for a
-- profile without scores).
SELECT h AS horizon_days, ref.sqlstate_of(format('SELECT * FROM engagement.predict(%L, %s)', 'default', h)) AS predict,
       ref.sqlstate_of(format('SELECT * FROM engagement.predict(1, %s)', h)) AS per_contact
  FROM (VALUES ('NULL'), ('''NaN''::float8'), ('''infinity''::float8'), ('''-infinity''::float8'), ('0'), ('-7'), ('2e9'), ('1e9')) v(h);
SELECT ref.sqlstate_of($$SELECT * FROM engagement.predict(NULL::text, 7)$$) AS null_profile,
       ref.sqlstate_of($$SELECT * FROM engagement.predict('nope', 7)$$) AS unknown_profile,
       ref.sqlstate_of($$SELECT * FROM engagement.predict(1, 7, 'nope')$$) AS unknown_profile_per_contact;
SELECT m AS months, r AS monthly_discount_rate,
       ref.sqlstate_of(format('SELECT * FROM engagement.customer_lifetime_value(%L, %s, %s)', 'default', m, r)) AS lifetime_value
  FROM (VALUES ('NULL', '0.01'), ('0', '0.01'), ('-1', '0.01'), ('1201', '0.01'), ('12', 'NULL'), ('12', '''NaN''::float8'),
               ('12', '''infinity''::float8'), ('12', '-0.01'), ('12', '0'), ('1200', '0.01')) v(m, r);
-- predict('x', 7) is the profile's set, predict(7, 7) a contact's: an unknown literal is a profile.
SELECT ref.sqlstate_of($$SELECT * FROM engagement.predict('default', 7)$$) AS by_profile_literal;
