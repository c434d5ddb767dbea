-- models: the BG/NBD-family models in SQL (fit_bgnbd, fit_mbgnbd, btyd_summary, p_alive,
-- expected_engagements, prob_no_engagement, fit_model, expected_engagements_30d), checked against
-- the published CDNOW results, against data simulated here from known parameters, with and
-- without parallel workers, end to end through fit_model, and on bad input.
-- Uses only its own data (temp tables, ref.sim_* tables, profile 'cdnow'); fit_model runs in a
-- transaction that is rolled back, so the events of the earlier tests are left as they were.

-- An independent log-likelihood (docs/model.md "Fitting") summed over the rows (x, t_x, t) of
-- a table, in plain SQL: lnGamma(r + x) - lnGamma(r) and the Beta ratios are finite sums for an
-- integer x.
CREATE FUNCTION ref.btyd_ll_sum(model text, summaries regclass, r float8, alpha float8, a float8, b float8)
RETURNS float8 LANGUAGE plpgsql STABLE STRICT
SET jit = off   -- a costly-looking plan: compiling it would take longer than running it
AS $f$
DECLARE
    ll float8;
BEGIN
    EXECUTE format($q$
        WITH d AS (SELECT x, t_x, t, count(*) AS w FROM %s GROUP BY x, t_x, t),
        g AS (SELECT x, (SELECT coalesce(sum(ln($1 + k)), 0) FROM generate_series(0, x - 1) k)
                      + (SELECT coalesce(sum(ln(($4 + k) / ($3 + $4 + k))), 0)
                           FROM generate_series(0, CASE $5 WHEN 'mbgnbd' THEN x ELSE x - 1 END) k) AS lg
                FROM (SELECT DISTINCT x FROM d) dx)
        SELECT sum(d.w * (g.lg + $1 * ln($2) - ($1 + d.x) * ln($2 + d.t)
                          + CASE WHEN $5 = 'mbgnbd' OR d.x > 0
                                 THEN ln(1 + $3 / ($4 + d.x - CASE $5 WHEN 'mbgnbd' THEN 0 ELSE 1 END)
                                             * exp(($1 + d.x) * (ln($2 + d.t) - ln($2 + d.t_x))))
                                 ELSE 0 END))
          FROM d JOIN g USING (x) $q$, summaries)
      INTO ll USING r, alpha, a, b, model;
    RETURN ll;
END $f$;

------------------------------------------------------------------------------------------------
-- 1. BG/NBD on the published CDNOW calibration summary (2,357 customers, weeks): Fader, Hardie &
--    Lee (2005) r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4.
------------------------------------------------------------------------------------------------
CREATE TEMP TABLE cdnow_summary (id integer PRIMARY KEY, x integer, t_x float8, t float8);
\copy cdnow_summary FROM 'test/data/cdnow/cdnow_customers_summary.csv' CSV HEADER
SELECT count(*) AS customers, sum(x) AS repeat_purchases, count(*) FILTER (WHERE x = 0) AS no_repeat
  FROM cdnow_summary;
CREATE TEMP TABLE cdnow_fit AS SELECT (engagement.fit_bgnbd(x, t_x, t)).* FROM cdnow_summary;
SELECT converged, n FROM cdnow_fit;
-- Checks list what fails: (what, got, test, expected), test as in ref.fails ('~': within 1e-9
-- relative).  The published estimates and log-likelihood; the kernel's log-likelihood is the
-- independent one at the estimate, and the estimate is at least as good as the published
-- (rounded) parameters.
SELECT v.what, v.got, v.test, v.expected
  FROM cdnow_fit f, LATERAL (VALUES
       ('r', f.r, 'within 0.001', 0.243), ('alpha', f.alpha, 'within 0.001', 4.414),
       ('a', f.a, 'within 0.001', 0.793), ('b', f.b, 'within 0.001', 2.426),
       ('log_likelihood', f.log_likelihood, 'within 0.1', -9582.4),
       ('log_likelihood: SQL at the estimate', f.log_likelihood, '~',
        ref.btyd_ll_sum('bgnbd', 'cdnow_summary', f.r, f.alpha, f.a, f.b)),
       ('log_likelihood: SQL at the published parameters', f.log_likelihood, '>=',
        ref.btyd_ll_sum('bgnbd', 'cdnow_summary', 0.243, 4.414, 0.793, 2.426))) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
SELECT round(ref.btyd_ll_sum('bgnbd', 'cdnow_summary', 0.243, 4.414, 0.793, 2.426)::numeric, 1) AS ll_at_published;

------------------------------------------------------------------------------------------------
-- 2. The same summary rebuilt from the raw transactions (CDNOW_sample.txt: masterid, sampleid,
--    YYYYMMDD, cds, sales; whitespace-separated, CRLF) with btyd_summary as of 1997-09-30: the
--    first purchase day is the birth, and x counts the purchase days after it, as the published x
--    does (model version 2).
------------------------------------------------------------------------------------------------
\i sql/include/cdnow.psql
SELECT count(*) AS transactions, count(DISTINCT customer) AS customers, min(day), max(day), sum(sales) AS sales,
       (SELECT count(*) FROM cdnow_raw WHERE line ~ '\r') AS lines_with_cr
  FROM cdnow_tx;
-- 'converted' events at the day's 00:00 UTC, as the CRM would store them.
CREATE TEMP TABLE cdnow_events AS
SELECT customer AS contact, (day::timestamp AT TIME ZONE 'UTC') AS occurred_at, sales AS value FROM cdnow_tx;
CREATE TEMP TABLE cdnow_rebuilt AS
SELECT contact, (s).x, (s).t_x, (s).t
  FROM (SELECT contact, engagement.btyd_summary('converted', occurred_at, '1997-09-30 00:00:00+00') AS s
          FROM cdnow_events WHERE occurred_at <= '1997-09-30 00:00:00+00' GROUP BY contact) b;
SELECT count(*) AS customers, sum(r.x) AS sum_x_published, count(*) FILTER (WHERE r.x = 0) AS x_published_zero
  FROM cdnow_rebuilt r FULL JOIN cdnow_summary c ON c.id = r.contact;
-- The customers whose rebuilt summary (in weeks, to 2 decimals) is not the published one, or who
-- are on one side only.
SELECT coalesce(c.id, r.contact) AS customer, r.x, c.x AS published_x,
       round((r.t_x / 7)::numeric, 2) AS t_x_weeks, c.t_x AS published_t_x,
       round((r.t / 7)::numeric, 2) AS t_weeks, c.t AS published_t
  FROM cdnow_rebuilt r FULL JOIN cdnow_summary c ON c.id = r.contact
 WHERE c.id IS NULL OR r.contact IS NULL
    OR r.x <> c.x
    OR round((r.t_x / 7)::numeric, 2) <> c.t_x::numeric
    OR round((r.t / 7)::numeric, 2) <> c.t::numeric
 ORDER BY 1;
-- btyd_summary ignores the events after as_of by itself (the holdout period has many).
SELECT count(*) AS holdout_events FROM cdnow_events WHERE occurred_at > '1997-09-30 00:00:00+00';
-- (the customers whose summary over all events differs from the one over the calibration period)
SELECT contact, r.x, r.t_x, r.t, (a.s).x AS x_all_events, (a.s).t_x AS t_x_all_events, (a.s).t AS t_all_events
  FROM cdnow_rebuilt r
  JOIN (SELECT contact, engagement.btyd_summary('converted', occurred_at, '1997-09-30 00:00:00+00') AS s
          FROM cdnow_events GROUP BY contact) a USING (contact)
 WHERE (r.x, r.t_x, r.t) IS DISTINCT FROM ((a.s).x, (a.s).t_x, (a.s).t)
 ORDER BY contact;

------------------------------------------------------------------------------------------------
-- 3. Predictions with the published parameters (weeks) for x = 2, t_x = 30.43, T = 38.86:
--    P(alive) = 0.7266 and E[purchases in the next 39 weeks] = 1.226 (lifetimes' tests).
------------------------------------------------------------------------------------------------
-- (the values that miss: the published ones to 0.001, the formulas to 1e-9)
SELECT v.what, v.got, v.test, v.expected
  FROM (VALUES
       ('bgnbd p_alive: published', engagement.p_alive('bgnbd', 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426), 'within 0.001', 0.7266),
       ('bgnbd expected_engagements: published',
        engagement.expected_engagements('bgnbd', 39, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426), 'within 0.001', 1.226),
       ('bgnbd p_alive: formula', engagement.p_alive('bgnbd', 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426), '~',
        1 / (1 + 0.793 / (2.426 + 2 - 1) * ((4.414 + 38.86) / (4.414 + 30.43)) ^ (0.243 + 2))),
       ('mbgnbd p_alive: formula', engagement.p_alive('mbgnbd', 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426), '~',
        1 / (1 + 0.793 / (2.426 + 2) * ((4.414 + 38.86) / (4.414 + 30.43)) ^ (0.243 + 2))),
       ('bgnbd p_alive without repeat', engagement.p_alive('bgnbd', 0, 0, 38.86, 0.243, 4.414, 0.793, 2.426), '=', 1),
       ('bgnbd expected_engagements over 0 weeks',
        engagement.expected_engagements('bgnbd', 0, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426), '=', 0)
       ) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected);
-- (the models whose prob_no_engagement is not 1 - P(alive) + P(alive) * P(none while alive))
SELECT m, v.got, '~' AS test, v.expected
  FROM (SELECT m, engagement.p_alive(m, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426) AS pa
          FROM (VALUES ('bgnbd'), ('mbgnbd')) v(m)) s,
       LATERAL (SELECT engagement.prob_no_engagement(m, 39, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426) AS got,
                       (1 - pa) + pa * ((4.414 + 38.86) / (4.414 + 38.86 + 39)) ^ (0.243 + 2) AS expected) v
 WHERE ref.fails(v.got, '~', v.expected)
 ORDER BY m;

------------------------------------------------------------------------------------------------
-- 4. Parameter recovery from data simulated here from known parameters, for both models.
--    Deterministic uniforms: a double hash of a per-contact counter (hashint8extended of
--    consecutive integers alone shows serial correlation, and keys beyond 32 bits fold onto each
--    other); normals by Box-Muller; Gamma by Marsaglia-Tsang (u^(1/shape) boost for shape < 1);
--    Beta as G1 / (G1 + G2).
------------------------------------------------------------------------------------------------
CREATE FUNCTION ref.sim_u(key bigint, seed bigint) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((hashint8extended(hashint8extended(key, seed), seed) & 2147483647)::float8 + 0.5) / 2147483648
$$;
-- A Gamma(shape, 1) variate from the uniforms key, key + 1, ...; returns the next unused key.
CREATE FUNCTION ref.sim_gamma(shape float8, seed bigint, INOUT key bigint, OUT g float8)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    boost float8 := 1;
    d float8; c float8; z float8; v float8; u float8;
BEGIN
    IF shape < 1 THEN
        boost := ref.sim_u(key, seed) ^ (1 / shape);
        key := key + 1;
        shape := shape + 1;
    END IF;
    d := shape - 1.0 / 3;
    c := 1 / sqrt(9 * d);
    LOOP
        z := sqrt(-2 * ln(ref.sim_u(key, seed))) * cos(2 * pi() * ref.sim_u(key + 1, seed));
        u := ref.sim_u(key + 2, seed);
        key := key + 3;
        v := (1 + c * z) ^ 3;
        IF v > 0 AND ln(u) < 0.5 * z * z + d - d * v + d * ln(v) THEN
            g := d * v * boost;
            RETURN;
        END IF;
    END LOOP;
END $$;
-- The generative process: lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b), observed over
-- (0, T] with T uniform in 30..120; events are a Poisson process of rate lambda; after each
-- event the contact drops out with probability p, and under MBG/NBD also at time 0.
CREATE FUNCTION ref.simulate_btyd(model text, contacts integer, r float8, alpha float8, a float8, b float8,
                                  seed bigint)
RETURNS TABLE (contact integer, x integer, t_x float8, t float8)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    key bigint; lambda float8; g1 float8; g2 float8; p float8; now_t float8;
BEGIN
    FOR c IN 1 .. contacts LOOP
        key := c::bigint * 4096;                 -- 4096 uniforms per contact, keys within 32 bits
        SELECT s.key, s.g / alpha INTO key, lambda FROM ref.sim_gamma(r, seed, key) s;
        SELECT s.key, s.g INTO key, g1 FROM ref.sim_gamma(a, seed, key) s;
        SELECT s.key, s.g INTO key, g2 FROM ref.sim_gamma(b, seed, key) s;
        p := g1 / (g1 + g2);
        contact := c;
        t := 30 + floor(91 * ref.sim_u(key, seed));
        key := key + 1;
        x := 0; t_x := 0; now_t := 0;
        IF model = 'mbgnbd' AND ref.sim_u(key, seed) < p THEN
            RETURN NEXT;                         -- dropped out at birth
            CONTINUE;
        END IF;
        key := key + 1;
        LOOP
            now_t := now_t - ln(ref.sim_u(key, seed)) / lambda;
            key := key + 1;
            EXIT WHEN now_t > t;
            x := x + 1;
            t_x := now_t;
            EXIT WHEN ref.sim_u(key, seed) < p;  -- dropped out after this event
            key := key + 1;
        END LOOP;
        IF key >= (c + 1)::bigint * 4096 THEN
            RAISE EXCEPTION 'contact % used more than 4096 uniforms', c;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- The Gamma generator: mean and variance of 20,000 draws within 4 standard errors of the shape
-- (the statistics outside, with their bounds).
SELECT d.shape, v.statistic, v.got, v.expected, v.tolerance
  FROM (SELECT shape, count(*) AS n, avg(g) AS mean, var_samp(g) AS variance
          FROM (SELECT shape, (ref.sim_gamma(shape, 99, k::bigint * 4096)).g
                  FROM generate_series(1, 20000) k, (VALUES (0.5::float8), (0.8), (3.0)) v(shape)) s
         GROUP BY shape) d,
       LATERAL (VALUES ('mean', d.mean, d.shape, 4 * sqrt(d.shape / d.n)),
                       ('variance', d.variance, d.shape, 4 * sqrt((2 * d.shape ^ 2 + 6 * d.shape) / d.n))
               ) v(statistic, got, expected, tolerance)
 WHERE (abs(v.got - v.expected) < v.tolerance) IS NOT TRUE
 ORDER BY 1, 2;

-- 20,000 contacts per model, r = 0.5, alpha = 8, a = 0.8, b = 3 (time units of "days": about
-- one event per 16 days while alive).  Regular tables, so that section 5 gets parallel plans.
CREATE TABLE ref.sim_mbgnbd AS SELECT * FROM ref.simulate_btyd('mbgnbd', 20000, 0.5, 8, 0.8, 3, 1);
CREATE TABLE ref.sim_bgnbd AS SELECT * FROM ref.simulate_btyd('bgnbd', 20000, 0.5, 8, 0.8, 3, 2);
ANALYZE ref.sim_mbgnbd, ref.sim_bgnbd;
CREATE TEMP VIEW sims AS
SELECT 'mbgnbd' AS model, 'ref.sim_mbgnbd'::regclass AS data, * FROM ref.sim_mbgnbd
UNION ALL
SELECT 'bgnbd', 'ref.sim_bgnbd', * FROM ref.sim_bgnbd;
SELECT model, count(*) AS contacts FROM sims GROUP BY model ORDER BY model DESC;
-- Many contacts without events, some heavy ones, T over 30..120, every (x, t_x, t) valid: the
-- statistics that are not so.
SELECT model, v.what, v.got, v.test, v.expected
  FROM (SELECT model, count(*) FILTER (WHERE x = 0) AS without_events, max(x) AS max_x, min(t) AS min_t,
               max(t) AS max_t, count(*) FILTER (WHERE NOT (t_x <= t AND (x > 0 OR t_x = 0))) AS invalid
          FROM sims GROUP BY model) s,
       LATERAL (VALUES ('contacts without events', s.without_events::float8, '>', 5000),
                       ('largest x', s.max_x, '>', 30), ('smallest t', s.min_t, '=', 30),
                       ('largest t', s.max_t, '=', 120),
                       ('invalid rows (t_x > t, or t_x > 0 at x = 0)', s.invalid, '=', 0)) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected)
 ORDER BY model DESC, what;

CREATE TEMP TABLE sim_fits AS
SELECT 'mbgnbd' AS model, 'ref.sim_mbgnbd'::regclass AS data, (SELECT engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_mbgnbd) AS f
UNION ALL
SELECT 'bgnbd', 'ref.sim_bgnbd', (SELECT engagement.fit_bgnbd(x, t_x, t) FROM ref.sim_bgnbd);
-- Relative errors with these seeds: MBG/NBD r -2.6%, alpha -0.5%, a +3.6%, b +10.0%; BG/NBD
-- r +1.9%, alpha +2.4%, a -3.5%, b -2.6%.  Over 30 other seeds (101..130) the standard deviations
-- were, MBG/NBD / BG/NBD: r 3.3% / 1.5%, alpha 2.7% / 2.1%, a 6.6% / 5.3%, b 11.8% / 6.8%
-- (largest errors: r 7.8%, alpha 6.9%, a 14.7%, b 23.7%).  The tolerances, r and alpha 10%,
-- a 20%, b 35%, are about 3 standard deviations of the less precise MBG/NBD estimates.
-- The likelihood-ratio statistic 2 (LL(fit) - LL(truth)) is asymptotically chi-square with 4
-- degrees of freedom (here 1.4 and 2.9; over the 30 seeds mean 4.4, largest 11.5): the truth
-- must lie in the 99.9% confidence region (< 18.47).
SELECT model, (f).converged, (f).n FROM sim_fits ORDER BY model DESC;
-- (what misses: the estimates against the truth, the log-likelihood against the SQL one at the
-- estimate and at the truth, the likelihood-ratio statistic against the chi-square bound)
SELECT model, v.what, v.got, v.test, v.expected
  FROM sim_fits, LATERAL (VALUES
       ('r', (f).r, 'within 10%', 0.5), ('alpha', (f).alpha, 'within 10%', 8),
       ('a', (f).a, 'within 20%', 0.8), ('b', (f).b, 'within 35%', 3),
       ('log_likelihood: SQL at the estimate', (f).log_likelihood, '~',
        ref.btyd_ll_sum(model, data, (f).r, (f).alpha, (f).a, (f).b)),
       ('log_likelihood: SQL at the truth', (f).log_likelihood, '>=', ref.btyd_ll_sum(model, data, 0.5, 8, 0.8, 3)),
       ('2 (LL(fit) - LL(truth))', 2 * ((f).log_likelihood - ref.btyd_ll_sum(model, data, 0.5, 8, 0.8, 3)), '<', 18.47)
       ) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected)
 ORDER BY model DESC, what;
-- The estimate is a maximum: moving any parameter by 1% either way lowers the log-likelihood.
-- (the moves that do not: the log-likelihood there and at the estimate)
SELECT model, (ARRAY['r', 'alpha', 'a', 'b'])[i] AS parameter, s AS factor, m.ll_moved, (f).log_likelihood AS ll_estimate
  FROM sim_fits, generate_series(1, 4) i, (VALUES (0.99::float8), (1.01)) v(s),
       LATERAL (SELECT ref.btyd_ll_sum(model, data, (f).r * (CASE WHEN i = 1 THEN s ELSE 1 END),
                                       (f).alpha * (CASE WHEN i = 2 THEN s ELSE 1 END),
                                       (f).a * (CASE WHEN i = 3 THEN s ELSE 1 END),
                                       (f).b * (CASE WHEN i = 4 THEN s ELSE 1 END)) AS ll_moved) m
 WHERE ((f).log_likelihood > m.ll_moved) IS NOT TRUE
 ORDER BY model DESC, i, s;
-- The tolerances tell the models apart: fitting the other model to each data set misses r by
-- far more than 10% (here -37.7% and +72.3%; over the 30 seeds at least 35% and 62%).
-- (the fits whose r is within 10% after all)
SELECT fit, (f).r FROM (
    SELECT 'bgnbd on mbgnbd data' AS fit, (SELECT engagement.fit_bgnbd(x, t_x, t) FROM ref.sim_mbgnbd) AS f
    UNION ALL
    SELECT 'mbgnbd on bgnbd data', (SELECT engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_bgnbd)) s
 WHERE (abs((f).r / 0.5 - 1) > 0.10) IS NOT TRUE;

------------------------------------------------------------------------------------------------
-- 5. The fits give bit-identical results with and without parallel workers, and with identical
--    rows collapsed into one weighted row (the kernel sorts and collapses the rows first).
------------------------------------------------------------------------------------------------
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;   -- every row goes through a worker's serialized state
SELECT * FROM ref.plan($$
CREATE TEMP TABLE fit_parallel AS
SELECT (SELECT engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_mbgnbd) AS mbgnbd,
       (SELECT engagement.fit_bgnbd(x, t_x, t) FROM ref.sim_bgnbd) AS bgnbd$$) AS "QUERY PLAN";
CREATE TEMP TABLE fit_parallel AS
SELECT (SELECT engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_mbgnbd) AS mbgnbd,
       (SELECT engagement.fit_bgnbd(x, t_x, t) FROM ref.sim_bgnbd) AS bgnbd;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_mbgnbd;
CREATE TEMP TABLE fit_serial AS
SELECT (SELECT engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_mbgnbd) AS mbgnbd,
       (SELECT engagement.fit_bgnbd(x, t_x, t) FROM ref.sim_bgnbd) AS bgnbd;
RESET ALL;
-- (1.5) The fits keep their state expanded (in memory, in a context of its own, updated in place)
-- and collapse it when it is flattened.  Grouped, through parallel workers (flattened to reach the
-- leader) and through a hash aggregate that spills (over its memory with the states' contexts
-- counted, later groups wait on disk), every group's fit equals the one of a serial plan over
-- sorted groups: the groups whose fit differs, and how many converged.
CREATE FUNCTION pg_temp.plan_says(q text, pattern text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        IF line ~ pattern THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;
-- (each row ten times, one group after another: the first group's state alone outgrows work_mem,
-- and each group's rows are spread over enough pages for both workers to get some)
CREATE TABLE ref.sim_by_group AS
SELECT floor(t)::int % 6 AS g, x, t_x, t FROM ref.sim_mbgnbd, generate_series(1, 10) ORDER BY 1;
ANALYZE ref.sim_by_group;
SET client_min_messages = warning;
SET enable_hashagg = off;
CREATE TEMP TABLE fit_groups_sorted AS
SELECT g, engagement.fit_mbgnbd(x, t_x, t) AS f FROM ref.sim_by_group GROUP BY g;
RESET enable_hashagg;
SET enable_sort = off; SET work_mem = '64kB';
CREATE TEMP TABLE fit_groups_spilled AS
SELECT g, engagement.fit_mbgnbd(x, t_x, t) AS f FROM ref.sim_by_group GROUP BY g;
SELECT pg_temp.plan_says($$SELECT g, engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_by_group GROUP BY g$$,
                         'Disk Usage: [1-9]') AS spilled;
RESET work_mem;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
CREATE TEMP TABLE fit_groups_parallel AS
SELECT g, engagement.fit_mbgnbd(x, t_x, t) AS f FROM ref.sim_by_group GROUP BY g;
SELECT pg_temp.plan_says($$SELECT g, engagement.fit_mbgnbd(x, t_x, t) FROM ref.sim_by_group GROUP BY g$$,
                         'Workers Launched: 2') AS in_parallel;
RESET ALL;
DROP TABLE ref.sim_by_group;
SELECT count(*) AS groups, count(*) FILTER (WHERE (f).converged) AS converged FROM fit_groups_sorted;
SELECT o.plan, s.g, (o.f)::text AS got, (s.f)::text AS expected
  FROM fit_groups_sorted s
  JOIN (SELECT 'spilled' AS plan, * FROM fit_groups_spilled UNION ALL SELECT 'parallel', * FROM fit_groups_parallel) o USING (g)
 WHERE NOT (ref.close((o.f).r, (s.f).r) AND ref.close((o.f).alpha, (s.f).alpha) AND ref.close((o.f).a, (s.f).a)
            AND ref.close((o.f).b, (s.f).b) AND ref.close((o.f).log_likelihood, (s.f).log_likelihood)
            AND (o.f).n = (s.f).n)
 ORDER BY 1, 2;
-- x = 0 rows share (0, 0, T): about 9,300 of the MBG/NBD rows collapse into 91.
CREATE TEMP TABLE fit_weighted AS
SELECT (SELECT engagement.fit_mbgnbd(x, t_x, t, w)
          FROM (SELECT x, t_x, t, count(*)::float8 AS w FROM ref.sim_mbgnbd GROUP BY x, t_x, t) g) AS mbgnbd,
       (SELECT engagement.fit_bgnbd(x, t_x, t, w)
          FROM (SELECT x, t_x, t, count(*)::float8 AS w FROM ref.sim_bgnbd GROUP BY x, t_x, t) g) AS bgnbd,
       (SELECT count(*) FROM (SELECT DISTINCT x, t_x, t FROM ref.sim_mbgnbd) d) AS mbgnbd_distinct_rows;
-- (the number of distinct MBG/NBD rows, if they did not collapse below 12,000)
SELECT mbgnbd_distinct_rows FROM fit_weighted WHERE (mbgnbd_distinct_rows < 12000) IS NOT TRUE;
-- Each fit against the serial one, to the bit (the ones that differ, both fits in full), and the
-- serial fits converged.
SELECT v.model, v.fit, v.got::text, v.expected::text
  FROM fit_parallel p, fit_serial s, fit_weighted w, LATERAL (VALUES
       ('mbgnbd', 'parallel', p.mbgnbd, s.mbgnbd), ('mbgnbd', 'weighted', w.mbgnbd, s.mbgnbd),
       ('mbgnbd', 'section 4', (SELECT f FROM sim_fits WHERE model = 'mbgnbd'), s.mbgnbd),
       ('bgnbd', 'parallel', p.bgnbd, s.bgnbd), ('bgnbd', 'weighted', w.bgnbd, s.bgnbd),
       ('bgnbd', 'section 4', (SELECT f FROM sim_fits WHERE model = 'bgnbd'), s.bgnbd)) v(model, fit, got, expected)
 WHERE (v.got = v.expected) IS NOT TRUE
UNION ALL
SELECT v.model, 'serial, not converged', v.f::text, NULL
  FROM fit_serial s, LATERAL (VALUES ('mbgnbd', s.mbgnbd), ('bgnbd', s.bgnbd)) v(model, f)
 WHERE (v.f).converged IS NOT TRUE
 ORDER BY 1 DESC, 2;

------------------------------------------------------------------------------------------------
-- 6. fit_model end to end on the raw CDNOW transactions (MBG/NBD over engagement days, Gamma-Gamma
--    over conversion days), in a transaction that is rolled back: fit_model uses every event of
--    engagement_events.
------------------------------------------------------------------------------------------------
INSERT INTO engagement.scoring_profiles (name) VALUES ('cdnow');
CREATE TEMP TABLE before_fit AS
SELECT (SELECT count(*) FROM engagement.engagement_events) AS events,
       (SELECT count(*) FROM engagement.model_fits) AS fits, p.*
  FROM engagement.scoring_profiles p WHERE p.name = 'cdnow';
-- The engagement-day summaries of the purchases (in days): section 2's, the published ones.
CREATE TEMP TABLE cdnow_days AS SELECT contact, x, t_x, t FROM cdnow_rebuilt;
SELECT split_part(ref.sqlstate_of($$SELECT engagement.fit_model('no_such_profile', '1997-09-30 00:00:00+00')$$), ':', 1) AS unknown_profile;
BEGIN;
DELETE FROM engagement.engagement_events;
SELECT split_part(ref.sqlstate_of($$SELECT engagement.fit_model('cdnow', '1997-09-30 00:00:00+00')$$), ':', 1) AS no_events;
-- Only deliveries: every contact has x = 0, the model is not identified, with any penalty of the
-- ladder too: an error that says why (once) and stores nothing.
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
SELECT 50000000 + c, 'delivered', timestamptz '1997-01-01 12:00:00+00' + c * interval '1 day'
  FROM generate_series(1, 100) c;
SELECT ref.sqlstate_of($$SELECT engagement.fit_model('cdnow', '1997-09-30 00:00:00+00')$$) AS only_deliveries;
-- The profile untouched, nothing recorded: the columns that changed (all of them if the profile is gone).
SELECT v.what, v.got, v.expected
  FROM before_fit b LEFT JOIN engagement.scoring_profiles p ON p.name = 'cdnow', LATERAL (VALUES
       ('version', p.version::text, b.version::text),
       ('model_fitted_at', p.model_fitted_at::text, NULL),
       ('model_r', p.model_r::text, b.model_r::text), ('model_alpha', p.model_alpha::text, b.model_alpha::text),
       ('model_a', p.model_a::text, b.model_a::text), ('model_b', p.model_b::text, b.model_b::text),
       ('gg_p', p.gg_p::text, b.gg_p::text),
       ('model_fits rows', (SELECT count(*) FROM engagement.model_fits)::text, b.fits::text)) v(what, got, expected)
 WHERE v.got IS DISTINCT FROM v.expected;
-- The purchases: with model version 2's x (purchase days after the first) the summaries are the
-- published ones, no contact has x > 0 at t_x = 0, and both fits converge (no NOTICE of a local
-- maximum).
DELETE FROM engagement.engagement_events;
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at, conversion_value)
SELECT 50000000 + contact, 'converted', occurred_at, value FROM cdnow_events;
SELECT count(*) FILTER (WHERE x > 0 AND t_x = 0) AS engaged_only_on_birth_day FROM cdnow_days;
CREATE TEMP TABLE cdnow_model AS SELECT * FROM engagement.fit_model('cdnow', '1997-09-30 00:00:00+00');
SELECT model, converged, stored, contacts, message, jsonb_object_keys(parameters) AS parameter,
       round((parameters ->> jsonb_object_keys(parameters))::numeric, 3) AS estimate,
       round((standard_errors ->> jsonb_object_keys(parameters))::numeric, 3) AS standard_error
  FROM cdnow_model ORDER BY model DESC, parameter;
SELECT model, round(log_likelihood::numeric, 1) AS log_likelihood, penalizer,
       as_of = '1997-09-30 00:00:00+00' AS as_of_given, fitted_at = now() AS fitted_now
  FROM cdnow_model ORDER BY model DESC;
-- Recorded: model_fits holds exactly the two rows fit_model returned.
SELECT (SELECT count(*) FROM engagement.model_fits f WHERE f.profile = 'cdnow') AS recorded,
       (SELECT count(*) FROM engagement.model_fits f JOIN cdnow_model m ON to_jsonb(f) = to_jsonb(m)) AS same_as_returned;
CREATE TEMP VIEW cdnow_mbg AS
SELECT (parameters ->> 'r')::float8 AS r, (parameters ->> 'alpha')::float8 AS alpha, (parameters ->> 'a')::float8 AS a,
       (parameters ->> 'b')::float8 AS b, log_likelihood FROM cdnow_model WHERE model = 'mbgnbd';
-- The fits stored in the profile, now, with the version bumped once, and the log-likelihood the
-- SQL one: (what, got, expected) where got = expected is not true (the SQL log-likelihood within 1e-9).
SELECT v.what, v.got, v.expected
  FROM engagement.scoring_profiles p, cdnow_mbg m, before_fit b,
       (SELECT (parameters ->> 'p')::float8 AS p, (parameters ->> 'q')::float8 AS q, (parameters ->> 'v')::float8 AS v
          FROM cdnow_model WHERE model = 'gammagamma') g, LATERAL (VALUES
       ('model_r', p.model_r::text, m.r::text, p.model_r = m.r),
       ('model_alpha', p.model_alpha::text, m.alpha::text, p.model_alpha = m.alpha),
       ('model_a', p.model_a::text, m.a::text, p.model_a = m.a),
       ('model_b', p.model_b::text, m.b::text, p.model_b = m.b),
       ('model_log_likelihood', p.model_log_likelihood::text, m.log_likelihood::text,
        p.model_log_likelihood = m.log_likelihood),
       ('model_fitted_at', p.model_fitted_at::text, now()::text, p.model_fitted_at = now()),
       ('model_contacts', p.model_contacts::text, '2357', p.model_contacts = 2357),
       ('gg_p', p.gg_p::text, g.p::text, p.gg_p = g.p), ('gg_q', p.gg_q::text, g.q::text, p.gg_q = g.q),
       ('gg_v', p.gg_v::text, g.v::text, p.gg_v = g.v),
       ('version', p.version::text, (b.version + 1)::text, p.version = b.version + 1),
       ('log_likelihood: SQL', m.log_likelihood::text,
        ref.btyd_ll_sum('mbgnbd', 'cdnow_days', m.r, m.alpha, m.a, m.b)::text,
        ref.close(m.log_likelihood, ref.btyd_ll_sum('mbgnbd', 'cdnow_days', m.r, m.alpha, m.a, m.b)))
       ) v(what, got, expected, same)
 WHERE p.name = 'cdnow' AND v.same IS NOT TRUE;
-- The same MBG/NBD fit from summaries computed three other ways: btyd_summary per contact (one
-- row each, no weights), plain SQL over the UTC days, and the published summary in days (t_x and
-- T back from weeks).  (the ways whose fit differs from fit_model's, both in full)
SELECT v.summaries, v.fit::text, m::text AS fit_model
  FROM cdnow_mbg m, LATERAL (VALUES
       ('btyd_summary', (SELECT engagement.fit_mbgnbd((s).x, (s).t_x, (s).t)
          FROM (SELECT engagement.btyd_summary(event_type, occurred_at, '1997-09-30 00:00:00+00') AS s
                  FROM engagement.engagement_events WHERE occurred_at <= '1997-09-30 00:00:00+00'
                 GROUP BY contact_id) c)),
       ('plain SQL', (SELECT engagement.fit_mbgnbd(x, t_x, t)
          FROM (SELECT count(DISTINCT day) FILTER (WHERE day > b0)::integer AS x,
                       coalesce(max(day) FILTER (WHERE day > b0) - min(b0), 0)::float8 AS t_x,
                       (floor(extract(epoch FROM timestamptz '1997-09-30 00:00:00+00') / 86400) - min(b0))::float8 AS t
                  FROM (SELECT contact_id, day, min(day) OVER (PARTITION BY contact_id) AS b0
                          FROM (SELECT contact_id, floor(extract(epoch FROM occurred_at) / 86400) AS day
                                  FROM engagement.engagement_events WHERE occurred_at <= '1997-09-30 00:00:00+00') e) d
                 GROUP BY contact_id) h)),
       ('published', (SELECT engagement.fit_mbgnbd(x, round(t_x * 7), round(t * 7)) FROM cdnow_summary))
       ) v(summaries, fit)
 WHERE ((v.fit).r, (v.fit).alpha, (v.fit).a, (v.fit).b, (v.fit).log_likelihood)
       IS DISTINCT FROM (m.r, m.alpha, m.a, m.b, m.log_likelihood);
-- The Gamma-Gamma fit's data: per contact, the purchase days (b0 included) with their value.
-- (what fit_model fitted, against the aggregate over a plain-SQL summary)
SELECT m.parameters::text AS fit_model, (v.f).p, (v.f).q, (v.f).v
  FROM cdnow_model m, LATERAL (
       SELECT engagement.fit_gammagamma(x_v, m_v) AS f
         FROM (SELECT contact_id, count(*)::integer AS x_v, avg(day_value) AS m_v
                 FROM (SELECT contact_id, floor(extract(epoch FROM occurred_at) / 86400) AS day,
                              sum(conversion_value)::float8 AS day_value
                         FROM engagement.engagement_events
                        WHERE occurred_at <= '1997-09-30 00:00:00+00' AND event_type = 'converted'
                        GROUP BY 1, 2) d
                WHERE day_value > 0 GROUP BY contact_id) s) v
 WHERE m.model = 'gammagamma'
   -- (the inputs' last bits differ: the mean as a quotient of a float sum, not numeric avg)
   AND NOT (ref.close((v.f).p, (m.parameters ->> 'p')::float8) AND ref.close((v.f).q, (m.parameters ->> 'q')::float8)
            AND ref.close((v.f).v, (m.parameters ->> 'v')::float8));

------------------------------------------------------------------------------------------------
-- 7. Scores carry expected_engagements_30d (the MBG/NBD expectation over the profile's
--    horizon_days), expected_conversion_value (Gamma-Gamma) and expected_value_30d, with the
--    fitted parameters, times (1 - opt_out_penalty) when opted out.
------------------------------------------------------------------------------------------------
INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
VALUES (50000001, 'opted_out', '1997-05-01 10:00:00+00'), (50000002, 'opted_out', '1997-06-01 10:00:00+00');
CREATE TEMP VIEW cdnow_check AS
SELECT c, (sc).opted_out, (sc).expected_engagements_30d AS got,
       engagement.expected_engagements('mbgnbd', p.horizon_days, (ms).x, (ms).t_x, (ms).t,
                                       p.model_r, p.model_alpha, p.model_a, p.model_b)
       * CASE WHEN (sc).opted_out THEN 1 - p.opt_out_penalty ELSE 1 END AS formula,
       (ag).expected_engagements_30d AS aggregate,
       (sc).expected_conversion_value AS ecv_got,
       engagement.expected_conversion_value((ms).value_days, (ms).mean_value, p.gg_p, p.gg_q, p.gg_v) AS ecv,
       (sc).expected_value_30d AS ev_got,
       -- E30 q ECV, q = (conversion days + 1) / (engagement days + 1 + 9): here every engagement
       -- day is a conversion day
       (sc).expected_engagements_30d * (s.days + p.conv_prior_a) / (s.days + p.conv_prior_a + p.conv_prior_b)
       * engagement.expected_conversion_value((ms).value_days, (ms).mean_value, p.gg_p, p.gg_q, p.gg_v) AS ev
  FROM generate_series(50000001, 50000012) c,
       LATERAL engagement.engagement_score(c, '1997-09-30 00:00:00+00', 'cdnow') sc,
       LATERAL (SELECT engagement.model_summary(e.event_type, e.occurred_at, e.conversion_value, '1997-09-30 00:00:00+00') AS ms,
                       engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, '1997-09-30 00:00:00+00', 'cdnow') AS ag,
                       count(DISTINCT floor(extract(epoch FROM e.occurred_at) / 86400))
                         FILTER (WHERE e.event_type = 'converted' AND e.occurred_at <= '1997-09-30 00:00:00+00') AS days
                  FROM engagement.engagement_events e WHERE e.contact_id = c) s,
       engagement.scoring_profiles p
 WHERE p.name = 'cdnow';
SELECT count(*) AS contacts, count(*) FILTER (WHERE opted_out) AS opted_out FROM cdnow_check;
-- (the contacts whose predictions are not the formula's, not the aggregate's, or not positive)
SELECT c, opted_out, v.what, v.got, v.test, v.expected
  FROM cdnow_check, LATERAL (VALUES ('formula', got, '~', formula), ('score_events', got, '~', aggregate),
                                    ('positive', got, '>', 0), ('expected_conversion_value', ecv_got, '~', ecv),
                                    ('expected_value_30d', ev_got, '~', ev), ('positive value', ev_got, '>', 0)
                             ) v(what, got, test, expected)
 WHERE ref.fails(v.got, v.test, v.expected)
 ORDER BY c, v.what;
-- Over the profile's horizon, whatever it is (the contacts where it is not the formula's).
UPDATE engagement.scoring_profiles SET horizon_days = 90 WHERE name = 'cdnow';
SELECT count(*) AS contacts FROM cdnow_check;
SELECT c, opted_out, got, '~' AS test, formula AS expected FROM cdnow_check WHERE ref.fails(got, '~', formula) ORDER BY c;
ROLLBACK;
-- Restored by the rollback: the events, the profile and the fit records (what is not as before).
SELECT v.what, v.got, v.expected
  FROM before_fit b LEFT JOIN engagement.scoring_profiles p ON p.name = 'cdnow', LATERAL (VALUES
       ('events', (SELECT count(*) FROM engagement.engagement_events)::text, b.events::text),
       ('model_fits rows', (SELECT count(*) FROM engagement.model_fits)::text, b.fits::text),
       ('version', p.version::text, b.version::text),
       ('model_fitted_at', p.model_fitted_at::text, NULL),
       ('model_r', p.model_r::text, b.model_r::text)) v(what, got, expected)
 WHERE v.got IS DISTINCT FROM v.expected;

------------------------------------------------------------------------------------------------
-- 8. Bad input gets SQLSTATE 22023 (invalid_parameter_value).
------------------------------------------------------------------------------------------------
SELECT ref.sqlstate_of($$SELECT engagement.p_alive('nope', 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426)$$) AS unknown_model;
SELECT what, split_part(ref.sqlstate_of(stmt), ':', 1) AS sqlstate
  FROM (VALUES
    ('unknown model', $$SELECT engagement.expected_engagements('pareto', 39, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426)$$),
    ('x = -1', $$SELECT engagement.p_alive('bgnbd', -1, 0, 38.86, 0.243, 4.414, 0.793, 2.426)$$),
    ('x = 1.5', $$SELECT engagement.p_alive('mbgnbd', 1.5, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426)$$),
    ('t_x > t', $$SELECT engagement.p_alive('bgnbd', 2, 40, 38.86, 0.243, 4.414, 0.793, 2.426)$$),
    ('x = 0, t_x > 0', $$SELECT engagement.p_alive('mbgnbd', 0, 5, 38.86, 0.243, 4.414, 0.793, 2.426)$$),
    ('t = NaN', $$SELECT engagement.p_alive('bgnbd', 2, 30.43, 'NaN', 0.243, 4.414, 0.793, 2.426)$$),
    ('alpha = infinity', $$SELECT engagement.p_alive('bgnbd', 2, 30.43, 38.86, 0.243, 'Infinity', 0.793, 2.426)$$),
    ('r = 0', $$SELECT engagement.p_alive('bgnbd', 2, 30.43, 38.86, 0, 4.414, 0.793, 2.426)$$),
    ('b < 0', $$SELECT engagement.prob_no_engagement('mbgnbd', 39, 2, 30.43, 38.86, 0.243, 4.414, 0.793, -1)$$),
    ('horizon < 0', $$SELECT engagement.expected_engagements('bgnbd', -1, 2, 30.43, 38.86, 0.243, 4.414, 0.793, 2.426)$$),
    ('fit: t_x > t', $$SELECT engagement.fit_bgnbd(x, t_x, t) FROM (VALUES (2, 40.0::float8, 38.0::float8), (1, 3, 30)) v(x, t_x, t)$$),
    ('fit: x < 0', $$SELECT engagement.fit_mbgnbd(x, t_x, t) FROM (VALUES (-1, 0::float8, 38.0::float8), (1, 3, 30)) v(x, t_x, t)$$),
    ('fit: weight 0', $$SELECT engagement.fit_mbgnbd(x, t_x, t, w) FROM (VALUES (2, 30.0::float8, 38.0::float8, 0::float8), (1, 3, 30, 1)) v(x, t_x, t, w)$$),
    ('fit: weight -1', $$SELECT engagement.fit_bgnbd(x, t_x, t, w) FROM (VALUES (2, 30.0::float8, 38.0::float8, -1::float8), (1, 3, 30, 1)) v(x, t_x, t, w)$$),
    ('fit: weight NaN', $$SELECT engagement.fit_bgnbd(x, t_x, t, w) FROM (VALUES (2, 30.0::float8, 38.0::float8, 'NaN'::float8), (1, 3, 30, 1)) v(x, t_x, t, w)$$),
    ('fit_model: as_of infinity', $$SELECT engagement.fit_model('cdnow', 'infinity')$$),
    ('fit_model: on_failure', $$SELECT engagement.fit_model('cdnow', now(), 'ignore')$$),
    ('fit: penalizer -1', $$SELECT engagement.fit_mbgnbd(1, 1, 2, 1, -1)$$),
    ('fit: penalizer NaN', $$SELECT engagement.fit_bgnbd(1, 1, 2, 1, 'NaN')$$),
    ('fit: two penalizers', $$SELECT engagement.fit_mbgnbd(x, t_x, t, 1, pen) FROM (VALUES (1, 1::float8, 2::float8, 0::float8), (2, 3, 9, 0.5)) v(x, t_x, t, pen)$$)
  ) v(what, stmt);

-- Summaries with x > 0 at t_x = 0 (customer data whose birth day is counted as a repeat, as model
-- version 1 did) leave the likelihood without a global maximum: a converged fit says it is a
-- local maximum.
SELECT (engagement.fit_mbgnbd(x, t_x, t)).converged
  FROM (SELECT x, t_x, t FROM ref.sim_mbgnbd UNION ALL SELECT 1, 0, 60 FROM generate_series(1, 200)) s;

DROP VIEW sims;
DROP TABLE ref.sim_mbgnbd, ref.sim_bgnbd;
DROP FUNCTION ref.simulate_btyd(text, integer, float8, float8, float8, float8, bigint),
              ref.sim_gamma(float8, bigint, bigint), ref.sim_u(bigint, bigint),
              ref.btyd_ll_sum(text, regclass, float8, float8, float8, float8);
DELETE FROM engagement.scoring_profiles WHERE name = 'cdnow';

-- The generated CRM contacts of ref.crm_events never drop out: the MBG/NBD likelihood has its
-- maximum at a = 0 (a runs off, the fit does not converge).  fit_penalizer's L2 penalty on the
-- log-parameters gives a converged fit with standard errors.
CREATE TEMP TABLE crm_summaries AS
SELECT (s).x, (s).t_x, (s).t
  FROM (SELECT engagement.btyd_summary(event_type, occurred_at, '2026-06-01 12:00+00') AS s
          FROM ref.crm_events GROUP BY contact_id) q;
SELECT penalizer, (f).converged, (f).message IS NOT NULL AS says_why, (f).message LIKE '%parameter a = % ran off towards 0%' AS a_ran_off,
       (f).se_a IS NOT NULL AS has_standard_errors, round((f).a::numeric, 3) AS a
  FROM (VALUES (0::float8), (0.01)) v(penalizer),
       LATERAL (SELECT engagement.fit_mbgnbd(x, t_x, t, 1, v.penalizer) AS f FROM crm_summaries) z
 ORDER BY penalizer;
