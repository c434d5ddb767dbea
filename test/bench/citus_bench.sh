#!/usr/bin/env bash
# test/bench/citus_bench.sh [contacts] [reps]: Citus with two workers against one PostgreSQL node,
# on the same generated events, interleaved: score_events over every contact, the count(*) floor
# of each, and a full refresh_scores.  Citus 12.1.12 is installed from ../shared/vendor when
# missing (scripts/install_citus.sh).  Throwaway clusters on loopback, ports 55480-55483: a
# coordinator, two workers, and the single node.  Then where the Citus refresh spends its time
# (pg_stat_statements, nested statements included).  Not a test: prints medians and ratios.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$REPO/scripts/cluster.sh"
CONTACTS=${1:-100000}
REPS=${2:-5}
BASE=${ES_CITUS_BENCH_PORT:-55480}
scratch_dir citus_bench
export PGOPTIONS="-c client_min_messages=warning"
bash "$REPO/scripts/install_citus.sh" | tail -1
make -s -C "$REPO" -j2 >/dev/null && make -s -C "$REPO" install >/dev/null

conninfo() { echo "host=127.0.0.1 port=$((BASE + $1)) dbname=crm user=postgres"; }
q() { local n=$1; shift; psql -qXAt -v ON_ERROR_STOP=1 -d "$(conninfo "$n")" "$@"; }
# The same memory and parallelism on every node; JIT off (its compile time would be noise here).
COMMON=("listen_addresses = '127.0.0.1'" "shared_buffers = '1GB'" "work_mem = '256MB'" "jit = off"
        "max_parallel_workers_per_gather = 2" "max_wal_size = '4GB'")
for n in 0 1 2 3; do
    preload=()
    [ "$n" -lt 3 ] && preload=("shared_preload_libraries = 'citus, pg_stat_statements'" "pg_stat_statements.track = 'all'")
    cluster_start "$WORK/n$n" $((BASE + n)) "${COMMON[@]}" "${preload[@]}"
    psql -qX -h 127.0.0.1 -p $((BASE + n)) -U postgres -d postgres -c "CREATE DATABASE crm"
done
for n in 0 1 2; do q "$n" -c "CREATE EXTENSION citus"; done
q 0 -c "SELECT citus_set_coordinator_host('127.0.0.1', $BASE)" \
    -c "SELECT citus_add_node('127.0.0.1', $((BASE + 1)))" -c "SELECT citus_add_node('127.0.0.1', $((BASE + 2)))" \
    -c "CREATE EXTENSION pg_stat_statements" >/dev/null   # (Citus creates it on the workers too)
q 0 -c "CREATE EXTENSION engagement_scoring" -c "CREATE SCHEMA crm" \
    -c "CREATE TABLE crm.events (id bigint NOT NULL, contact_id bigint NOT NULL, campaign_id bigint,
            event_type engagement.event_type NOT NULL, occurred_at timestamptz NOT NULL, conversion_value numeric,
            channel text, PRIMARY KEY (contact_id, id))" \
    -c "CREATE INDEX ON crm.events (contact_id, occurred_at)" \
    -c "SELECT engagement.citus_distribute('crm.events')" >/dev/null
q 3 -c "CREATE EXTENSION engagement_scoring"
echo "generating $CONTACTS contacts' events on the single node"
q 3 -v contacts="$CONTACTS" -f "$REPO/demo/generate_crm_events.sql" >/dev/null
q 3 -c "\\copy (SELECT id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel FROM engagement.engagement_events) TO '$WORK/events.tsv'"
started=$(date +%s.%N)
q 0 -c "\\copy crm.events FROM '$WORK/events.tsv'"
EVENTS=$(q 3 -c "SELECT count(*) FROM engagement.engagement_events")
echo "COPY of $EVENTS events through the coordinator (tracked in the shards): $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
for n in 0 1 2 3; do q "$n" -c "VACUUM ANALYZE" >/dev/null; done
# both start from scored contacts, as a scheduled full refresh does
q 0 -c "SELECT engagement.refresh_scores('default', true)" >/dev/null
q 3 -c "SELECT engagement.refresh_scores('default', true)" >/dev/null

SCORE="SELECT count(*), sum((s).composite) FROM (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value,
         '2026-11-24 00:00+00', 'default') AS s FROM %s GROUP BY contact_id) x"
FLOOR="SELECT count(*), sum(n) FROM (SELECT contact_id, count(*) AS n FROM %s GROUP BY contact_id) x"
REFRESH="SELECT engagement.refresh_scores('default', true)"
run() {   # run NODE SQL: ms of one run in a fresh session
    psql -qXAt -d "$(conninfo "$1")" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
. "$REPO/test/bench/median.sh"
declare -A T=()
LABELS="single_score citus_score single_floor citus_floor single_refresh citus_refresh"
for r in $(seq "$REPS"); do
    for label in $LABELS; do
        case $label in single_*) node=3; rel=engagement.engagement_events ;; *) node=0; rel=crm.events ;; esac
        case $label in *_score) sql=$(printf "$SCORE" "$rel") ;; *_floor) sql=$(printf "$FLOOR" "$rel") ;; *) sql=$REFRESH ;; esac
        T[$label]="${T[$label]:-}$(run "$node" "$sql") "
    done
done
printf '\n%-44s %10s\n' "($CONTACTS contacts, $EVENTS events, $REPS runs)" "median ms"
for label in $LABELS; do
    m=$(tr ' ' '\n' <<<"${T[$label]}" | grep . | median)
    declare "M_$label=$m"
    printf '%-44s %10.1f\n' "$label" "$m"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "Citus (2 workers) vs single node, score_events:   $(ratio "$M_single_score" "$M_citus_score")x the throughput"
echo "Citus (2 workers) vs single node, count(*) floor: $(ratio "$M_single_floor" "$M_citus_floor")x"
echo "Citus (2 workers) vs single node, full refresh:   $(ratio "$M_single_refresh" "$M_citus_refresh")x"
echo "score_events vs its floor: single node $(ratio "$M_single_score" "$M_single_floor")x, Citus $(ratio "$M_citus_score" "$M_citus_floor")x"

# Where one more full refresh on Citus spends its time: the coordinator's statements, nested ones
# included (the steps of refresh_scores), and what the workers ran.
for n in 0 1 2; do q "$n" -c "SELECT pg_stat_statements_reset()" >/dev/null; done
q 0 -c "$REFRESH" >/dev/null
echo
echo "one full refresh on Citus, the coordinator's statements (ms, top-level and nested):"
q 0 -c "SELECT lpad(round(total_exec_time)::text, 8) || '  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 110)
          FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 12"
for n in 1 2; do
    echo "worker $n, its statements (ms, summed over the shards):"
    q "$n" -c "SELECT lpad(round(sum(total_exec_time))::text, 8) || '  ' || left(regexp_replace(regexp_replace(query, '_[0-9]{6,}', '_N', 'g'), '\s+', ' ', 'g'), 110)
                 FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
                GROUP BY regexp_replace(regexp_replace(query, '_[0-9]{6,}', '_N', 'g'), '\s+', ' ', 'g') ORDER BY 1 DESC LIMIT 5"
done
