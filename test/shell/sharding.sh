#!/usr/bin/env bash
# Sharding with postgres_fdw, for real: a coordinator and two shard servers on loopback (throwaway
# clusters, private ports), set up by scripts/scale_out.sh.  Events are loaded through the
# coordinator into crm.events (hash-partitioned by contact_id, one foreign partition per shard) and
# the same rows into the coordinator's own engagement_events.  Checks the plans (score_events in
# each shard's Remote SQL), and that scoring, refresh_scores (full and incremental) and fit_model
# on the sharded layout give exactly the single-node results.  Prints TAP-style lines.
set -uo pipefail
export PGOPTIONS="-c client_min_messages=warning"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$REPO/scripts/cluster.sh"
. "$(dirname "$0")/../tap.sh"
BASE=${ES_SHARD_PORT:-55450}
WORK=$(mktemp -d "${ES_WORK:-/tmp}/sharding.XXXXXX")
chmod 755 "$WORK"
trap 'cluster_stop_all; [ -n "${ES_KEEP:-}" ] || rm -rf "$WORK"' EXIT

conninfo() { echo "host=127.0.0.1 port=$((BASE + $1)) dbname=crm user=postgres"; }
q() { local n=$1; shift; psql -qXAt -v ON_ERROR_STOP=1 -d "$(conninfo "$n")" "$@"; }
for n in 0 1 2; do
    # the shards log their statements: the coordinator's Remote SQL shows up there
    cluster_start "$WORK/c$n" $((BASE + n)) "listen_addresses = '127.0.0.1'" \
        "$([ "$n" -gt 0 ] && echo "log_statement = 'all'")" || { echo "not ok - cluster $n starts"; exit 1; }
    psql -qX -h 127.0.0.1 -p $((BASE + n)) -U postgres -d postgres -c "CREATE DATABASE crm"
done

q 0 -c "CREATE EXTENSION engagement_scoring" \
    -c "INSERT INTO engagement.scoring_profiles (name, description) VALUES ('sharded', 'the default parameters, over crm.events')"
bash "$REPO/scripts/scale_out.sh" --profile sharded "$(conninfo 0)" "$(conninfo 1)" "$(conninfo 2)" >"$WORK/setup.log" 2>&1
check "scripts/scale_out.sh sets up a coordinator and two shards" '[ $? -eq 0 ]' || cat "$WORK/setup.log"

# 3,000 contacts' events (the demo's generator) into engagement_events, then through the
# coordinator into crm.events: the same rows on one node and on two shards.
q 0 -v contacts=3000 -v as_of="'2026-06-01 00:00:00+00'" -f "$REPO/demo/generate_crm_events.sql" >/dev/null
q 0 -c "TRUNCATE engagement.event_changes" \
    -c "INSERT INTO crm.events (id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel)
        SELECT id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel FROM engagement.engagement_events" \
    -c "ANALYZE crm.events"
total=$(q 0 -c "SELECT count(*) FROM engagement.engagement_events")
s1=$(q 1 -c "SELECT count(*) FROM crm.events"); s2=$(q 2 -c "SELECT count(*) FROM crm.events")
check "the $total events landed on the shards ($s1 + $s2), split by contact" \
    '[ "$s1" -gt 0 ] && [ "$s2" -gt 0 ] && [ $((s1 + s2)) -eq "$total" ]'
check "the writes through the coordinator were tracked (3,000 changed contacts)" \
    '[ "$(q 0 -c "SELECT count(DISTINCT contact_id) FROM engagement.event_changes")" = 3000 ]'
check "the shards have no profile 'sharded': its values travel with the queries" \
    '[ "$(q 1 -c "SELECT count(*) FROM engagement.scoring_profiles WHERE name = '"'sharded'"'")" = 0 ]'

SCORE="SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '2026-06-01 12:00+00',
              (SELECT to_jsonb(p) FROM engagement.scoring_profiles p WHERE name = 'sharded')) AS s
         FROM %s GROUP BY contact_id"
plan=$(q 0 -c "SET enable_partitionwise_aggregate = on" -c "EXPLAIN (VERBOSE, COSTS OFF) $(printf "$SCORE" crm.events)")
check "EXPLAIN VERBOSE: score_events runs inside each shard (partitionwise aggregation, Remote SQL)" \
    '[ "$(grep -c "Remote SQL: SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value" <<<"$plan")" = 2 ] &&
     [ "$(grep -c "Relations: Aggregate on" <<<"$plan")" = 2 ]' || echo "$plan" | sed 's/^/# /'
same=$(q 0 -c "SET enable_partitionwise_aggregate = on" -c "
    SELECT count(*) || ' ' || count(*) FILTER (WHERE a.s::text IS NOT DISTINCT FROM b.s::text)
      FROM ($(printf "$SCORE" crm.events)) a FULL JOIN ($(printf "$SCORE" engagement.engagement_events)) b USING (contact_id)")
check "score_events over the shards equals the single node for every contact ($same)" '[ "$same" = "3000 3000" ]'

# refresh_scores: 'sharded' reads crm.events, 'default' engagement_events; in one transaction both
# score as of the same now(), so every column but the profile must match.
COMPARE="SELECT count(*) || ' ' || count(*) FILTER (WHERE to_jsonb(a) - 'profile' - 'profile_version' - 'score_version'
                                                         = to_jsonb(b) - 'profile' - 'profile_version' - 'score_version')
           FROM engagement.engagement_scores a FULL JOIN engagement.engagement_scores b
             ON a.contact_id = b.contact_id AND b.profile = 'default'
          WHERE a.profile = 'sharded'"
q 0 -c "BEGIN" -c "SELECT engagement.refresh_scores('sharded'), engagement.refresh_scores('default')" -c "COMMIT" >/dev/null
same=$(q 0 -c "$COMPARE")
check "full refresh_scores on the shards equals the single node, percentiles included ($same)" '[ "$same" = "3000 3000" ]'
check "the refresh's scoring query ran inside the shards" \
    'grep -q "engagement.score_events(.*occurred_at, conversion_value, .*\"name\": \"sharded\"" "$WORK/c1/server.log" &&
     grep -q "engagement.score_events(.*occurred_at, conversion_value, .*\"name\": \"sharded\"" "$WORK/c2/server.log"'
check "the coordinator holds the scores; the shards hold none" \
    '[ "$(q 1 -c "SELECT count(*) FROM engagement.engagement_scores")" = 0 ]'

# Incremental: new, changed and deleted events through the coordinator, the same on both sides.
CHANGES="INSERT INTO %s (contact_id, event_type, occurred_at, conversion_value)
         SELECT c, CASE WHEN c %% 3 = 0 THEN 'converted' ELSE 'clicked' END::engagement.event_type,
                timestamptz '2026-05-30 00:00+00' + c * interval '1 minute', CASE WHEN c %% 3 = 0 THEN 25.5 END
           FROM generate_series(1, 60) c;
         UPDATE %s SET occurred_at = occurred_at - interval '3 days' WHERE contact_id BETWEEN 100 AND 110 AND event_type = 'opened';
         DELETE FROM %s WHERE contact_id BETWEEN 200 AND 205;"
q 0 -c "$(printf "$CHANGES" crm.events crm.events crm.events)" \
    -c "$(printf "$CHANGES" engagement.engagement_events engagement.engagement_events engagement.engagement_events)"
n=$(q 0 -c "BEGIN" -c "SELECT engagement.refresh_scores('sharded') || ' ' || engagement.refresh_scores('default')" -c "COMMIT")
same=$(q 0 -c "$COMPARE")
check "incremental refresh_scores after inserts, updates and deletes: same contacts rescored ($n), same scores ($same)" \
    '[ "$(cut -d" " -f1 <<<"$n")" = "$(cut -d" " -f2 <<<"$n")" ] && [ "$(cut -d" " -f1 <<<"$n")" -gt 60 ] &&
     [ "$same" = "2994 2994" ]'

# fit_model: the summaries are computed in the shards, the fit on the coordinator.
fits=$(q 0 -c "SELECT count(*) = 2 AND bool_and(f.parameters = g.parameters AND f.standard_errors IS NOT DISTINCT FROM g.standard_errors
                                              AND f.log_likelihood = g.log_likelihood AND f.contacts = g.contacts)
                 FROM engagement.fit_model('sharded', '2026-06-01', 'warning') f
                 JOIN engagement.fit_model('default', '2026-06-01', 'warning') g USING (model)" 2>/dev/null)
check "fit_model on the shards equals the single node's fit" '[ "$fits" = t ]'
check "the fit's summaries were computed inside the shards" \
    'grep -q "engagement.model_summary(.*occurred_at, conversion_value, .* FROM crm.events .*GROUP BY" "$WORK/c1/server.log"'
