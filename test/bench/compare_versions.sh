#!/usr/bin/env bash
# test/bench/compare_versions.sh [rev] [contacts] [reps]: the scoring aggregates of this tree against
# those of an earlier git revision (default 00f5267, release 1.2), on the same data in the same
# server, interleaved.  The earlier library is built from git as engagement_scoring_prev.so and its
# score_events, btyd_summary and time_decay are declared in a schema "prev" over the current
# extension's types and profiles.  Prints the median times and the median of the per-pair ratios
# (this tree / earlier), serial and with 2 parallel workers.  Not a test: nothing passes or fails.
# Root; throwaway cluster on port 55466.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
REV=${1:-00f5267}
CONTACTS=${2:-200000}
REPS=${3:-7}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
. scripts/cluster.sh
scratch_dir compare
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s -j2 >/dev/null && make -s install >/dev/null
LIB="$(pg_config --pkglibdir)/engagement_scoring_prev.so"
mkdir -p "$WORK/prev"
git archive "$REV" src | tar -x -C "$WORK/prev"
(
    cd "$WORK/prev"
    for c in $(find src -name '*.c'); do
        gcc -O2 -fPIC -fno-strict-aliasing -fwrapv -isystem "$(pg_config --includedir-server)" -Isrc -c "$c" -o "${c%.c}.o"
    done
    for cpp in src/*.cpp; do g++ -std=c++17 -O2 -fPIC -Isrc -c "$cpp" -o "${cpp%.cpp}.o"; done
    gcc -shared -o engagement_scoring_prev.so $(find src -name '*.o') -lstdc++ -lm
)
cp "$WORK/prev/engagement_scoring_prev.so" "$LIB"
trap 'cluster_stop_all; rm -rf "$WORK"; rm -f "$LIB"' EXIT

cluster_start "$WORK/pg" 55466 "shared_buffers = 2GB" "work_mem = 256MB" "max_parallel_workers_per_gather = 2" "jit = off"
export PGHOST="$WORK/pg" PGPORT=55466 PGUSER=postgres PGDATABASE=bench
psql -qX -d postgres -c "CREATE DATABASE bench"
psql -qX -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION engagement_scoring;
CREATE SCHEMA prev;
CREATE FUNCTION prev.score_transfn(internal, engagement.event_type, timestamptz, numeric, timestamptz, text)
RETURNS internal AS 'engagement_scoring_prev', 'es_score_events_transfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION prev.score_combinefn(internal, internal)
RETURNS internal AS 'engagement_scoring_prev', 'es_score_events_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION prev.score_serialfn(internal)
RETURNS bytea AS 'engagement_scoring_prev', 'es_score_events_serialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION prev.score_deserialfn(bytea, internal)
RETURNS internal AS 'engagement_scoring_prev', 'es_score_events_deserialfn' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION prev.score_finalfn(internal)
RETURNS engagement.score AS 'engagement_scoring_prev', 'es_score_events_finalfn' LANGUAGE C STABLE PARALLEL SAFE;
CREATE AGGREGATE prev.score_events(engagement.event_type, timestamptz, numeric, timestamptz, text) (
    SFUNC = prev.score_transfn, STYPE = internal, COMBINEFUNC = prev.score_combinefn,
    SERIALFUNC = prev.score_serialfn, DESERIALFUNC = prev.score_deserialfn,
    FINALFUNC = prev.score_finalfn, SSPACE = 384, PARALLEL = SAFE);
CREATE FUNCTION prev.summary_transfn(internal, engagement.event_type, timestamptz, timestamptz)
RETURNS internal AS 'engagement_scoring_prev', 'es_btyd_summary_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION prev.summary_finalfn(internal)
RETURNS engagement.btyd_summary AS 'engagement_scoring_prev', 'es_btyd_summary_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE prev.btyd_summary(engagement.event_type, timestamptz, timestamptz) (
    SFUNC = prev.summary_transfn, STYPE = internal, COMBINEFUNC = prev.score_combinefn,
    SERIALFUNC = prev.score_serialfn, DESERIALFUNC = prev.score_deserialfn,
    FINALFUNC = prev.summary_finalfn, SSPACE = 384, PARALLEL = SAFE);
SQL
log "generating $CONTACTS contacts"
psql -qX -v ON_ERROR_STOP=1 -v contacts="$CONTACTS" -v campaigns=65 -v as_of="'2026-11-24 00:00:00+00'" \
     -f demo/generate_crm_events.sql >/dev/null
psql -qX -c "VACUUM ANALYZE engagement.engagement_events"
EVENTS=$(psql -qXAt -c "SELECT count(*) FROM engagement.engagement_events")
log "$EVENTS events"

AS_OF="'2026-11-24 00:00:00+00'"
query() {   # query KIND SCHEMA
    case $1 in
        score) echo "SELECT sum((s).composite) FROM (SELECT $2.score_events(event_type, occurred_at, conversion_value, $AS_OF, 'default') AS s
                                                    FROM engagement.engagement_events GROUP BY contact_id) q" ;;
        summary) echo "SELECT sum((s).x) FROM (SELECT $2.btyd_summary(event_type, occurred_at, $AS_OF) AS s
                                               FROM engagement.engagement_events GROUP BY contact_id) q" ;;
    esac
}
ms() { psql -qXAt -c "SET max_parallel_workers_per_gather = $1" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
. "$REPO/test/bench/median.sh"

# Both results must agree before their times mean anything.
for k in score summary; do
    a=$(psql -qXAt -c "$(query "$k" prev)"); b=$(psql -qXAt -c "$(query "$k" engagement)")
    awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 1e-9 * (a < 0 ? -a : a))}' \
        || { echo "results differ for $k: $REV gives $a, this tree $b" >&2; exit 1; }
done

printf '%-44s %12s %12s %8s\n' "aggregate over $CONTACTS contacts (workers)" "$REV ms" "this ms" "ratio"
for k in score summary; do
    for w in 0 2; do
        ms "$w" "$(query "$k" prev)" >/dev/null; ms "$w" "$(query "$k" engagement)" >/dev/null   # warm
        olds=(); news=(); ratios=()
        for ((i = 0; i < REPS; i++)); do
            o=$(ms "$w" "$(query "$k" prev)"); n=$(ms "$w" "$(query "$k" engagement)")
            olds+=("$o"); news+=("$n"); ratios+=("$(awk -v n="$n" -v o="$o" 'BEGIN {print n / o}')")
        done
        printf '%-44s %12.1f %12.1f %8.3f\n' "$k ($w)" "$(printf '%s\n' "${olds[@]}" | median)" \
            "$(printf '%s\n' "${news[@]}" | median)" "$(printf '%s\n' "${ratios[@]}" | median)"
    done
done
echo "data: $CONTACTS contacts, $EVENTS events; $(nproc) cores; PostgreSQL $(psql -qXAt -c 'SHOW server_version')"
