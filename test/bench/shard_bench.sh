#!/usr/bin/env bash
# test/bench/shard_bench.sh [contacts] [reps]: scoring throughput with the events on two
# postgres_fdw shards against one (throwaway coordinator + two shard clusters on loopback, ports
# 55460-55462).  The same events go into one.events (one foreign partition, on shard 1) and
# two.events (two, on shards 1 and 2); both are scored through the coordinator with score_events
# pushed into the shards (partitionwise aggregation, async foreign scans).  Also the count(*)
# floor of each layout and the coordinator's own engagement_events (no parallel workers) as the
# single-node reference.  Prints medians of interleaved runs and their ratios.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$REPO/scripts/cluster.sh"
CONTACTS=${1:-100000}
REPS=${2:-5}
BASE=55460
scratch_dir shard_bench
export PGOPTIONS="-c client_min_messages=warning"
conninfo() { echo "host=127.0.0.1 port=$((BASE + $1)) dbname=crm user=postgres"; }
q() { local n=$1; shift; psql -qXAt -v ON_ERROR_STOP=1 -d "$(conninfo "$n")" "$@"; }
for n in 0 1 2; do
    cluster_start "$WORK/c$n" $((BASE + n)) "listen_addresses = '127.0.0.1'" "shared_buffers = '1GB'" \
        "max_parallel_workers_per_gather = 0"
    psql -qX -h 127.0.0.1 -p $((BASE + n)) -U postgres -d postgres -c "CREATE DATABASE crm"
done
q 0 -c "CREATE EXTENSION engagement_scoring"
bash "$REPO/scripts/scale_out.sh" --table one.events "$(conninfo 0)" "$(conninfo 1)" >/dev/null
bash "$REPO/scripts/scale_out.sh" --table two.events "$(conninfo 0)" "$(conninfo 1)" "$(conninfo 2)" >/dev/null
echo "generating $CONTACTS contacts' events"
q 0 -v contacts="$CONTACTS" -f "$REPO/demo/generate_crm_events.sql" >/dev/null
# A bulk load: no change tracking (a full refresh follows a bulk load), batched inserts.
for t in one two; do
    q 0 -c "DROP TRIGGER engagement_track_change ON $t.events" -c "DROP TRIGGER engagement_track_truncate ON $t.events"
    for s in $(q 0 -c "SELECT srvname FROM pg_foreign_server WHERE srvname LIKE '%\_shard\_%'"); do
        q 0 -c "ALTER SERVER $s OPTIONS (ADD batch_size '1000')" 2>/dev/null || true
    done
    q 0 -c "INSERT INTO $t.events (id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel)
            SELECT id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel FROM engagement.engagement_events"
done
for n in 0 1 2; do q "$n" -c "VACUUM ANALYZE"; done
q 0 -c "ANALYZE one.events" -c "ANALYZE two.events"
EVENTS=$(q 0 -c "SELECT count(*) FROM engagement.engagement_events")
echo "$EVENTS events; shard 1 holds $(q 1 -c "SELECT count(*) FROM one.events") (one) + $(q 1 -c "SELECT count(*) FROM two.events") (two), shard 2 $(q 2 -c "SELECT count(*) FROM two.events")"

# (the outer query reads the scores: an unread aggregate column would be planned away)
SCORE="SELECT count(*), sum((s).composite) FROM (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value,
         '2026-11-24 00:00+00', (SELECT to_jsonb(p) FROM engagement.scoring_profiles p WHERE name = 'default')) AS s
         FROM %s GROUP BY contact_id) x"
FLOOR="SELECT count(*), sum(n) FROM (SELECT contact_id, count(*) AS n FROM %s GROUP BY contact_id) x"
# ms of one run, in a fresh session with partitionwise aggregation on
run() {
    psql -qXAt -d "$(conninfo 0)" -c "SET enable_partitionwise_aggregate = on" -c '\timing on' -c "$1" \
        | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
. "$REPO/test/bench/median.sh"
declare -A T=()
run "$(printf "$SCORE" two.events)" >/dev/null   # warm the caches
for r in $(seq "$REPS"); do
    for label in local_score one_score two_score local_floor one_floor two_floor; do
        case $label in local_*) rel=engagement.engagement_events ;; one_*) rel=one.events ;; two_*) rel=two.events ;; esac
        case $label in *_score) sql=$(printf "$SCORE" "$rel") ;; *) sql=$(printf "$FLOOR" "$rel") ;; esac
        T[$label]="${T[$label]:-}$(run "$sql") "
    done
done
printf '\n%-44s %10s %14s\n' "query ($CONTACTS contacts, $EVENTS events)" "median ms" "events/s"
for label in local_score one_score two_score local_floor one_floor two_floor; do
    m=$(tr ' ' '\n' <<<"${T[$label]}" | grep . | median)
    declare "M_$label=$m"
    printf '%-44s %10.1f %14.0f\n' "$label" "$m" "$(awk -v e="$EVENTS" -v m="$m" 'BEGIN {print e / (m / 1000)}')"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "two shards vs one, score_events:        $(ratio "$M_one_score" "$M_two_score")x the throughput"
echo "two shards vs one, count(*) floor:      $(ratio "$M_one_floor" "$M_two_floor")x"
echo "one shard vs single node, score_events: $(ratio "$M_one_score" "$M_local_score")x the time"
echo "score_events vs floor, two shards:      $(ratio "$M_two_score" "$M_two_floor")x"
