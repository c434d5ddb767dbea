#!/usr/bin/env bash
# test/bench/state_types_bench.sh [reps]: 1.2's text-round-trippable aggregate states against 1.1's
# internal ones, on the same data and the same server.  Builds 1.1's library (git 942d261) as
# engagement_scoring_1_1.so, declares its time_decay and fit_mbgnbd in a schema "v1_1", and times
# both, interleaved, serial and with 2 parallel workers (port ES_BENCH_PORT or 55464, throwaway cluster).  Root.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
. scripts/cluster.sh
REPS=${1:-5}
scratch_dir state_bench
make -s -j2 >/dev/null && make -s install >/dev/null
mkdir -p "$WORK/v1_1/src"
for f in engagement_scoring.c scoring_kernel.cpp btyd_kernel.cpp scoring_kernel.h btyd_kernel.h; do
    git show "942d261:src/$f" >"$WORK/v1_1/src/$f"
done
(cd "$WORK/v1_1" && gcc -O2 -fPIC -fno-strict-aliasing -fwrapv -I"$(pg_config --includedir-server)" -Isrc -c src/engagement_scoring.c -o a.o &&
 g++ -std=c++17 -O2 -fPIC -Isrc -c src/scoring_kernel.cpp -o b.o && g++ -std=c++17 -O2 -fPIC -Isrc -c src/btyd_kernel.cpp -o c.o &&
 gcc -shared -o engagement_scoring_1_1.so a.o b.o c.o -lstdc++ -lm && cp engagement_scoring_1_1.so "$(pg_config --pkglibdir)/")
trap 'cluster_stop_all; rm -rf "$WORK"; rm -f "$(pg_config --pkglibdir)/engagement_scoring_1_1.so"' EXIT
cluster_start "$WORK/pg" "${ES_BENCH_PORT:-55464}" "shared_buffers = '1GB'" "jit = off"
export PGHOST="$WORK/pg" PGPORT="${ES_BENCH_PORT:-55464}" PGUSER=postgres
psql -qX -d postgres -c "CREATE DATABASE bench"
psql -qX -v ON_ERROR_STOP=1 -d bench <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION engagement_scoring;
CREATE SCHEMA v1_1;
CREATE FUNCTION v1_1.fit_transfn(internal, integer, float8, float8) RETURNS internal AS 'engagement_scoring_1_1', 'es_fit_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION v1_1.fit_combinefn(internal, internal) RETURNS internal AS 'engagement_scoring_1_1', 'es_fit_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION v1_1.fit_serialfn(internal) RETURNS bytea AS 'engagement_scoring_1_1', 'es_fit_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION v1_1.fit_deserialfn(bytea, internal) RETURNS internal AS 'engagement_scoring_1_1', 'es_fit_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION v1_1.fit_finalfn(internal) RETURNS engagement.model_fit AS 'engagement_scoring_1_1', 'es_fit_mbgnbd_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE v1_1.fit_mbgnbd(integer, float8, float8) (SFUNC = v1_1.fit_transfn, STYPE = internal,
    COMBINEFUNC = v1_1.fit_combinefn, SERIALFUNC = v1_1.fit_serialfn, DESERIALFUNC = v1_1.fit_deserialfn,
    FINALFUNC = v1_1.fit_finalfn, PARALLEL = SAFE);
CREATE FUNCTION v1_1.td_transfn(internal, float8, timestamptz, timestamptz, float8) RETURNS internal AS 'engagement_scoring_1_1', 'es_time_decay_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION v1_1.td_combinefn(internal, internal) RETURNS internal AS 'engagement_scoring_1_1', 'es_time_decay_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION v1_1.td_serialfn(internal) RETURNS bytea AS 'engagement_scoring_1_1', 'es_time_decay_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION v1_1.td_deserialfn(bytea, internal) RETURNS internal AS 'engagement_scoring_1_1', 'es_time_decay_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION v1_1.td_finalfn(internal) RETURNS float8 AS 'engagement_scoring_1_1', 'es_time_decay_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE v1_1.time_decay(float8, timestamptz, timestamptz, float8) (SFUNC = v1_1.td_transfn, STYPE = internal,
    COMBINEFUNC = v1_1.td_combinefn, SERIALFUNC = v1_1.td_serialfn, DESERIALFUNC = v1_1.td_deserialfn,
    FINALFUNC = v1_1.td_finalfn, SSPACE = 48, PARALLEL = SAFE);
-- 1M customer summaries; 5M weighted events in 200,000 groups
CREATE TABLE summaries AS
SELECT x, CASE WHEN x = 0 THEN 0 ELSE least(t, floor(t * ((i * 7919) % 1000) / 1000.0)) END::float8 AS t_x, t
  FROM (SELECT i, ((i * 104729) % 21)::int * ((i * 31) % 3 = 0)::int AS x, (30 + (i * 613) % 400)::float8 AS t
          FROM generate_series(1::bigint, 1000000) i) g;
CREATE TABLE ev AS SELECT i % 200000 AS g, (1 + i % 5)::float8 AS w,
                          timestamptz '2026-06-01 00:00+00' - (i % 400) * interval '1 day' AS at
                     FROM generate_series(1, 5000000) i;
-- what fit_model feeds the fit: every row a distinct (x, t_x, t)
CREATE TABLE distinct_summaries AS
SELECT (i % 40)::int AS x, CASE WHEN i % 40 = 0 THEN 0 ELSE (i % 997)::float8 / 3 END AS t_x, 400 + (i / 40)::float8 AS t
  FROM generate_series(1, 1000000) i;
VACUUM ANALYZE summaries; VACUUM ANALYZE distinct_summaries; VACUUM ANALYZE ev;
SQL
t() { psql -qXAt -d bench -c "SET max_parallel_workers_per_gather = $1" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
. "$REPO/test/bench/median.sh"
declare -A R=()
query() {
    case $1 in
        fit) echo "SELECT ($2.fit_mbgnbd(x, t_x, t)).r FROM summaries" ;;
        fit_distinct) echo "SELECT ($2.fit_mbgnbd(x, t_x, t)).r FROM distinct_summaries" ;;
        decay_groups) echo "SELECT count(*), sum(d) FROM (SELECT g, $2.time_decay(w, at, '2026-06-01 00:00+00', 14) AS d FROM ev GROUP BY g) s" ;;
        decay_one) echo "SELECT $2.time_decay(w, at, '2026-06-01 00:00+00', 14) FROM ev" ;;
    esac
}
for rep in $(seq "$REPS"); do
    for k in fit fit_distinct decay_groups decay_one; do for w in 0 2; do for impl in v1_1 engagement; do
        R[${k}_${impl}_$w]="${R[${k}_${impl}_$w]:-}$(t "$w" "$(query "$k" "$impl")") "
    done; done; done
done
printf '%-50s %14s %14s %7s\n' "aggregate (workers)" "1.1 internal" "1.2 varlena" "ratio"
for k in fit fit_distinct decay_groups decay_one; do for w in 0 2; do
    o=$(tr ' ' '\n' <<<"${R[${k}_v1_1_$w]}" | grep . | median)
    n=$(tr ' ' '\n' <<<"${R[${k}_engagement_$w]}" | grep . | median)
    printf '%-50s %11.1f ms %11.1f ms %7.3f\n' "$k ($w)" "$o" "$n" "$(awk -v a="$n" -v b="$o" 'BEGIN {print a / b}')"
done; done
