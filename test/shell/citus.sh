#!/usr/bin/env bash
# Citus for real: the system's Citus, or 12.1.12 built from ../shared/vendor (scripts/install_citus.sh;
# without either, the test is skipped, or fails with ES_REQUIRE_CITUS=1), a coordinator and two workers on loopback, set up as
# docs/scale-out.md says, beside a plain single node.  The same generated events go into the
# single node's engagement_events and, with COPY through the coordinator, into a distributed
# crm.events (and the coordinator's own engagement_events, read by a profile 'local').  Checks
# that every function gives the single node's results: the scoring aggregates in all their forms,
# the per-contact functions, fit_model, validate_model, the funnels; that refresh_scores (full and
# incremental, after inserts, updates, deletes and a COPY through the coordinator, and after a
# profile change) stores what the single node computes, percentiles and history included; that
# change tracking logs exactly the changed contacts; that a refresh interrupted by an error leaves
# nothing half-written and loses no change; that pg_cron refreshes on the coordinator; and that
# errors name what the user did.  Prints TAP-style lines, and its time last ("# citus: ...").
set -uo pipefail
export PGOPTIONS="-c client_min_messages=warning"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$REPO/scripts/cluster.sh"
. "$(dirname "$0")/../tap.sh"
STARTED=$(date +%s)
BASE=${ES_CITUS_PORT:-55470}
WORK=$(mktemp -d "${ES_WORK:-/tmp}/citus.XXXXXX")
chmod 755 "$WORK"
trap 'cluster_stop_all; [ -n "${ES_KEEP:-}" ] || rm -rf "$WORK"' EXIT

# The Citus the system has, else one built from ../shared/vendor, else the test is skipped with
# one line saying why (ES_REQUIRE_CITUS=1, which .ci/run sets, makes that a failure).
build_started=$(date +%s)
bash "$REPO/scripts/install_citus.sh" >"$WORK/install_citus.log" 2>&1
rc=$?
if [ "$rc" -eq 3 ] && [ "${ES_REQUIRE_CITUS:-0}" != 1 ]; then
    echo "# SKIP citus.sh: $(tail -1 "$WORK/install_citus.log")"
    exit 0
elif [ "$rc" -ne 0 ]; then
    echo "not ok - Citus is installed (scripts/install_citus.sh)"; sed 's/^/# /' "$WORK/install_citus.log"
    echo "# citus: $(( $(date +%s) - STARTED )) s"; exit 1
fi
BUILD_SECONDS=$(( $(date +%s) - build_started ))
echo "ok - $(tail -1 "$WORK/install_citus.log") ($BUILD_SECONDS s)"

# Nodes: 0 the coordinator (with pg_cron), 1 and 2 the workers, 3 a single node without Citus.
conninfo() { echo "host=127.0.0.1 port=$((BASE + $1)) dbname=crm user=postgres"; }
q() { local n=$1; shift; psql -qXAt -v ON_ERROR_STOP=1 -d "$(conninfo "$n")" "$@"; }
for n in 0 1 2 3; do
    case $n in
        0) extra=("shared_preload_libraries = 'citus, pg_cron'" "cron.database_name = 'crm'" "cron.use_background_workers = on") ;;
        3) extra=() ;;
        *) extra=("shared_preload_libraries = 'citus'") ;;
    esac
    cluster_start "$WORK/n$n" $((BASE + n)) "listen_addresses = '127.0.0.1'" "${extra[@]}" \
        || { echo "not ok - node $n starts"; echo "# citus: $(( $(date +%s) - STARTED )) s"; exit 1; }
    psql -qX -h 127.0.0.1 -p $((BASE + n)) -U postgres -d postgres -c "CREATE DATABASE crm"
done

# The set-up of docs/scale-out.md, step by step.
{
    for n in 0 1 2; do q "$n" -c "CREATE EXTENSION citus"; done
    q 0 -c "SELECT citus_set_coordinator_host('127.0.0.1', $BASE)" \
        -c "SELECT citus_add_node('127.0.0.1', $((BASE + 1)))" -c "SELECT citus_add_node('127.0.0.1', $((BASE + 2)))"
    q 0 -c "CREATE EXTENSION engagement_scoring" \
        -c "CREATE SCHEMA crm" \
        -c "CREATE TABLE crm.events (
                id               bigint NOT NULL,
                contact_id       bigint NOT NULL,
                campaign_id      bigint,
                event_type       engagement.event_type NOT NULL,
                occurred_at      timestamptz NOT NULL,
                conversion_value numeric,
                channel          text,
                PRIMARY KEY (contact_id, id))" \
        -c "CREATE INDEX ON crm.events (contact_id, occurred_at)" \
        -c "SELECT engagement.citus_distribute('crm.events')"
} >"$WORK/setup.log" 2>&1
check "the set-up of docs/scale-out.md: citus on every node, the nodes registered, citus_distribute('crm.events')" \
    '[ $? -eq 0 ]' || sed 's/^/# /' "$WORK/setup.log"
layout=$(q 0 -c "SELECT string_agg(p.logicalrelid::text || ':' || p.partmethod::text || CASE WHEN p.partmethod = 'h'
                          THEN ':' || (p.colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'crm.events'::regclass))::text ELSE '' END,
                          ' ' ORDER BY p.logicalrelid::text) FROM pg_dist_partition p")
check "events, scores, history and change log distributed and co-located; profiles and the small tables reference tables" \
    '[ "$layout" = "crm.events:h:true engagement.engagement_score_history:h:true engagement.engagement_scores:h:true engagement.event_changes:h:true engagement.model_fits:n engagement.pending_rescore:n engagement.refresh_runs:n engagement.score_distributions:n engagement.scoring_profiles:n" ]' \
    || echo "# $layout"
# (the change log holds the coordinator's OID of the tracked table, compared as a number: a regclass
# constant would be read by each worker as its own table's OID)
EVENTS_OID=$(q 0 -c "SELECT 'crm.events'::regclass::oid")
check "the default profile reads crm.events" \
    '[ "$(q 0 -c "SELECT events_relation FROM engagement.scoring_profiles WHERE name = '"'default'"'")" = crm.events ]'
again=$(q 0 -c "SELECT engagement.citus_distribute('crm.events')" 2>&1)
check "citus_distribute again is harmless" '[ $? -eq 0 ] && [ -z "$again" ]' || echo "# $again"
# A profile made on the distributed layout has its (empty) distribution row, the lock of its
# refreshes, in the reference table's placement on every node.
q 0 -c "INSERT INTO engagement.scoring_profiles (name) VALUES ('lock_row')"
rows=$(for n in 0 1 2; do q "$n" -c "SELECT count(*) FROM engagement.score_distributions WHERE profile = 'lock_row' AND refreshed_at IS NULL"; done | paste -sd' ')
check "a profile made on Citus has its distribution row on every node ($rows)" '[ "$rows" = "1 1 1" ]'
q 0 -c "DELETE FROM engagement.scoring_profiles WHERE name = 'lock_row'"

# The data: 2,000 contacts from the demo's generator on the single node, copied through the
# coordinator into crm.events (COPY), and into the coordinator's own engagement_events.
q 3 -c "CREATE EXTENSION engagement_scoring"
q 3 -v contacts=2000 -v as_of="'2026-06-01 00:00:00+00'" -f "$REPO/demo/generate_crm_events.sql" >/dev/null
q 3 -c "\\copy (SELECT id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel FROM engagement.engagement_events ORDER BY id) TO '$WORK/events.tsv'"
q 0 -c "\\copy crm.events (id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel) FROM '$WORK/events.tsv'"
q 0 -c "INSERT INTO engagement.scoring_profiles (name, description) VALUES ('local', 'the coordinator''s own engagement_events')" \
    -c "CREATE TEMP TABLE l (id bigint, contact_id bigint, campaign_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                             conversion_value numeric, channel text)" \
    -c "\\copy l FROM '$WORK/events.tsv'" \
    -c "INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value, channel)
        SELECT contact_id, campaign_id, event_type, occurred_at, conversion_value, channel FROM l ORDER BY id"
total=$(q 3 -c "SELECT count(*) FROM engagement.engagement_events")
w1=$(q 1 -c "SET citus.show_shards_for_app_name_prefixes = '*'" -c "SELECT sum(n_live_tup) FROM pg_stat_user_tables WHERE relname LIKE 'events\_%'")
check "COPY through the coordinator put all $total events into crm.events, on both workers" \
    '[ "$(q 0 -c "SELECT count(*) FROM crm.events")" = "$total" ] && [ "${w1:-0}" -gt 0 ] && [ "$w1" -lt "$total" ]'
check "the COPY was tracked in the shards: every one of the 2,000 contacts is in the change log" \
    '[ "$(q 0 -c "SELECT count(DISTINCT contact_id) FROM engagement.event_changes WHERE relation::oid = $EVENTS_OID")" = 2000 ]'

# same_as_single NAME SQL: the query's rows on Citus (crm.events) and on the single node
# (engagement_events, @EVENTS@ in the SQL) are the same.
AS_OF="'2026-06-01 12:00+00'"
same_as_single() {
    local a b rows
    a=$(q 0 -c "${2//@EVENTS@/crm.events}" | md5sum)
    b=$(q 3 -c "${2//@EVENTS@/engagement.engagement_events}" | md5sum)
    rows=$(q 3 -c "${2//@EVENTS@/engagement.engagement_events}" | wc -l)
    check "$1 equals the single node's ($rows rows)" '[ "$a" = "$b" ] && [ "$rows" -gt 0 ]'
}
same_as_single "score_events, profile as a document, every contact" \
    "SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, $AS_OF,
            (SELECT to_jsonb(p) FROM engagement.scoring_profiles p WHERE name = 'default'))::text FROM @EVENTS@ GROUP BY 1 ORDER BY 1"
same_as_single "score_events, profile by name (read on the workers), every contact" \
    "SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, $AS_OF, 'default')::text FROM @EVENTS@ GROUP BY 1 ORDER BY 1"
same_as_single "score_events, the default profile, every contact" \
    "SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, $AS_OF)::text FROM @EVENTS@ GROUP BY 1 ORDER BY 1"
same_as_single "explain_events by name and as a document, every contact" \
    "SELECT contact_id, engagement.explain_events(event_type, occurred_at, conversion_value, $AS_OF, 'default'),
            engagement.explain_events(event_type, occurred_at, conversion_value, $AS_OF,
                                      (SELECT to_jsonb(p) FROM engagement.scoring_profiles p WHERE name = 'default'))
       FROM @EVENTS@ GROUP BY 1 ORDER BY 1"
same_as_single "btyd_summary per contact, and time_decay over all events (worker partials combined)" \
    "SELECT contact_id, engagement.btyd_summary(event_type, occurred_at, $AS_OF)::text FROM @EVENTS@ GROUP BY 1
     UNION ALL SELECT NULL, engagement.time_decay(1, occurred_at, $AS_OF, 14)::text FROM @EVENTS@ ORDER BY 1, 2"
plan=$(q 0 -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, $AS_OF, 'default') FROM crm.events GROUP BY 1")
check "EXPLAIN VERBOSE: score_events runs whole in each of the 32 shards" \
    'grep -q "Task Count: 32" <<<"$plan" && grep -q "engagement.score_events(event_type, occurred_at, conversion_value" <<<"$plan"' \
    || echo "$plan" | head -20 | sed 's/^/# /'

PER_CONTACT="SELECT c, engagement.engagement_score(c, $AS_OF)::text, engagement.explain_score(c, $AS_OF),
                    (SELECT string_agg(e::text, ';') FROM engagement.profile_events(c) e)
               FROM generate_series(1, 2000, 37) c ORDER BY c"
check "engagement_score, explain_score and profile_events of 55 contacts equal the single node's" \
    '[ "$(q 0 -c "$PER_CONTACT" | md5sum)" = "$(q 3 -c "$PER_CONTACT" | md5sum)" ]'

FIT="SELECT model, converged, parameters::text, standard_errors::text, log_likelihood, contacts FROM engagement.fit_model('default', $AS_OF) ORDER BY model"
fit0=$(q 0 -c "$FIT" 2>&1); fit3=$(q 3 -c "$FIT" 2>&1)
check "fit_model (MBG/NBD and Gamma-Gamma) on Citus equals the single node's, to the bit" \
    '[ "$fit0" = "$fit3" ] && [ "$(grep -c "|t|" <<<"$fit0")" = 2 ]' || { echo "# citus: $fit0" | head -5; echo "# single: $fit3" | head -5; }
PARAMS="SELECT model_r, model_alpha, model_a, model_b, gg_p, gg_q, gg_v FROM engagement.scoring_profiles WHERE name = '@P@'"
check "and stored the same parameters in the profile" '[ "$(q 0 -c "${PARAMS//@P@/default}")" = "$(q 3 -c "${PARAMS//@P@/default}")" ]'
q 0 -c "SELECT count(*) FROM engagement.fit_model('local', $AS_OF)" >/dev/null
check "fit_model of the coordinator's own engagement_events gives the same parameters" \
    '[ "$(q 0 -c "${PARAMS//@P@/local}")" = "$(q 0 -c "${PARAMS//@P@/default}")" ]'
# (the predictions are sums over contacts, which Citus adds in another order: equal to 1e-12;
# the lift's deciles rank per-contact figures, the same on both)
VALIDATE="SELECT x_bucket, contacts, predicted, actual, predicted_value, actual_value
            FROM engagement.validate_model('2026-03-01', '2026-06-01') UNION ALL
          SELECT 'summary', contacts, predicted_total, actual_total, predicted_value_total, actual_value_total
            FROM engagement.validate_model_summary('2026-03-01', '2026-06-01') UNION ALL
          SELECT 'lift' || decile, contacts, predicted, actual, share, lift
            FROM engagement.validate_lift('2026-03-01', '2026-06-01')"
v0=$(q 0 -F ' ' -c "$VALIDATE" 2>&1); v3=$(q 3 -F ' ' -c "$VALIDATE" 2>&1)
# same_figures A B: each line of A has the fields of the same line of B, numbers within 1e-12 relative
same_figures() {
    paste -d ' ' <(echo "$1") <(echo "$2") | awk '{
        n = NF / 2; if (NF % 2) bad = 1
        for (i = 1; i <= n; i++) {
            a = $i; b = $(i + n)
            if (a == b) continue
            if (a !~ /^[-+0-9.eE]+$/ || b !~ /^[-+0-9.eE]+$/) { bad = 1; continue }
            d = a - b; m = b; if (d < 0) d = -d; if (m < 0) m = -m
            if (d > 1e-12 * m) bad = 1
        } } END { exit bad }'
}
check "validate_model, validate_model_summary and validate_lift equal the single node's (to 1e-12 relative)" \
    '[ "$(wc -l <<<"$v0")" = 19 ] && same_figures "$v0" "$v3"' \
    || paste -d " " <(echo "$v0") <(echo "$v3") | head -19 | sed 's/^/# /'
FUNNELS="SELECT * FROM engagement.funnel(7) UNION ALL SELECT * FROM engagement.funnel() UNION ALL
         SELECT * FROM engagement.funnel_independent(7, '2026-01-01', '2026-06-01')"
f0=$(q 0 -c "$FUNNELS" 2>&1)
check "funnel and funnel_independent (of crm.events) equal the single node's" \
    '[ "$f0" = "$(q 3 -c "$FUNNELS")" ] && [ "$(wc -l <<<"$f0")" = 24 ]' || echo "$f0" | head -3 | sed 's/^/# /'

# refresh_scores: 'default' (crm.events) and 'local' (the coordinator's engagement_events) in one
# transaction, so as of the same now(); then the stored scores against the single node's
# score_events as of each score's calculated_at, and its percent_rank.
COMPARE="SELECT count(*) || ' ' || count(*) FILTER (WHERE to_jsonb(a) - 'profile' - 'profile_version'
                                                         = to_jsonb(b) - 'profile' - 'profile_version')
           FROM engagement.engagement_scores a FULL JOIN engagement.engagement_scores b
             ON a.contact_id = b.contact_id AND b.profile = 'local'
          WHERE a.profile = 'default'"
HISTORY="SELECT (SELECT string_agg(concat_ws(' ', contact_id, composite, segment, previous_composite, previous_segment, score_version), ',' ORDER BY contact_id, id)
                   FROM engagement.engagement_score_history WHERE profile = 'default')
              = (SELECT string_agg(concat_ws(' ', contact_id, composite, segment, previous_composite, previous_segment, score_version), ',' ORDER BY contact_id, id)
                   FROM engagement.engagement_score_history WHERE profile = 'local')
            AND (SELECT sorted_composites FROM engagement.score_distributions WHERE profile = 'default')
              = (SELECT sorted_composites FROM engagement.score_distributions WHERE profile = 'local')"
refresh_both() { q 0 -c "BEGIN" -c "SELECT engagement.refresh_scores('default'), engagement.refresh_scores('local')" -c "COMMIT"; }
r=$(refresh_both 2>&1)
check "full refresh_scores on Citus ($r)" '[ "$r" = "2000|2000" ]'
same=$(q 0 -c "$COMPARE")
check "every column of every stored score equals the local table's, percentiles included ($same)" '[ "$same" = "2000 2000" ]'
check "so do the history and the score distribution" '[ "$(q 0 -c "$HISTORY")" = t ]'
against_single() {
    q 0 -c "\\copy (SELECT contact_id, calculated_at, percentile_rank, to_jsonb(s) FROM engagement.engagement_scores s WHERE profile = 'default') TO '$WORK/scores.tsv'"
    q 3 -c "DROP TABLE IF EXISTS citus_scores" \
        -c "CREATE TABLE citus_scores (contact_id bigint, calculated_at timestamptz, percentile_rank float8, s jsonb)" \
        -c "\\copy citus_scores FROM '$WORK/scores.tsv'" \
        -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE ok) FROM (
              SELECT c.s @> (SELECT to_jsonb(sc) - 'as_of' - 'profile'
                               FROM (SELECT (engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, c.calculated_at, 'default')).*
                                       FROM engagement.engagement_events e WHERE e.contact_id = c.contact_id) sc)
                     AND c.percentile_rank = 100 * ((SELECT count(*) FROM citus_scores o WHERE (o.s->>'composite')::float8 < (c.s->>'composite')::float8)::float8
                                                    / (SELECT count(*) - 1 FROM citus_scores))
                     AS ok
                FROM citus_scores c) t"
}
same=$(against_single 2>&1)
check "the stored scores equal the single node's scoring as of their calculated_at, and its percentiles ($same)" \
    '[ "$same" = "2000 2000" ]'
# (the mean scores are sums that Citus adds in another order: to 1e-9)
# contact_scores and cached_score read the distributed scores (is_stale: the change log and the
# pending set, in the contact's shard and the reference table).  (A function that queries the
# distributed tables is called from the coordinator, not per row of a distributed query: Citus
# refuses a distributed query inside a shard's.)
fresh=$(q 0 -c "SELECT count(*) FILTER (WHERE NOT is_stale) FROM engagement.contact_scores c WHERE c.profile = 'default'")
cached=$(q 0 -c "SELECT c, engagement.cached_score(c, '1 day') FROM generate_series(100, 2000, 100) c")
stored=$(q 0 -c "SELECT s.contact_id, jsonb_populate_record(NULL::engagement.score, to_jsonb(s) || jsonb_build_object('as_of', s.calculated_at))
                   FROM engagement.engagement_scores s WHERE s.profile = 'default' AND s.contact_id % 100 = 0 ORDER BY 1")
check "contact_scores sees every score fresh ($fresh), and cached_score returns the stored ones" \
    '[ "$fresh" = 2000 ] && [ "$cached" = "$stored" ] && [ "$(wc -l <<<"$cached")" = 20 ]'
SEGMENTS="SELECT (SELECT string_agg(concat_ws(' ', s.segment, s.contacts, s.share, round(s.mean_score::numeric, 9)), ',') FROM engagement.segment_summary('@P@') s)
              || (SELECT string_agg(r::text, ',') FROM engagement.readable_segments('@P@') r)
              || (SELECT string_agg(h::text, ',') FROM engagement.score_histogram('@P@') h)"
check "segment_summary, readable_segments and score_histogram equal the local table's" \
    '[ "$(q 0 -c "${SEGMENTS//@P@/default}")" = "$(q 0 -c "${SEGMENTS//@P@/local}")" ]'

# Per row of a query over a distributed table: Citus pushes the call down to the shards, where the
# functions read the contact's co-located shards and the reference tables' copies on that node
# (docs/scale-out.md, "Per-row calls").  The single node holds the same stored scores (copied) and
# a contacts table of its own, so the same query text runs on both.
q 0 -c "\\copy (SELECT * FROM engagement.engagement_scores WHERE profile = 'default') TO '$WORK/default_scores.tsv'"
q 3 -c "\\copy engagement.engagement_scores FROM '$WORK/default_scores.tsv'"
q 0 -c "CREATE TABLE crm.contacts (id bigint PRIMARY KEY, name text)" \
    -c "SELECT create_distributed_table('crm.contacts', 'id', colocate_with => 'crm.events')" >/dev/null
for n in 0 3; do
    q "$n" -c "CREATE SCHEMA IF NOT EXISTS crm" -c "CREATE TABLE IF NOT EXISTS crm.contacts (id bigint PRIMARY KEY, name text)" \
        -c "INSERT INTO crm.contacts SELECT c, 'contact ' || c FROM generate_series(1, 2010) c"   # (2001-2010: no events)
done
# same_on_both NAME SQL: the query's rows on the coordinator and on the single node are the same
same_on_both() {
    local a b rows
    # (lines sorted: Citus returned some of these rows out of their ORDER BY)
    a=$(q 0 -c "$2" 2>&1 | sort | md5sum); b=$(q 3 -c "$2" 2>&1 | sort | md5sum); rows=$(q 3 -c "$2" | wc -l)
    check "$1 equals the single node's ($rows rows)" '[ "$a" = "$b" ] && [ "$rows" -gt 1 ]' \
        || q 0 -c "$2" 2>&1 | head -3 | sed 's/^/# /'
}
LIVE="engagement.engagement_score(@C@, $AS_OF)::text, engagement.explain_score(@C@, $AS_OF),
      engagement.profile_events(@C@, 'default', $AS_OF, 3)::text"   # (in the target list: Citus pushes no STABLE table function down)
same_on_both "per row over engagement_scores, pushed down: engagement_score, explain_score, profile_events" \
    "SELECT s.contact_id, ${LIVE//@C@/s.contact_id} FROM engagement.engagement_scores s
      WHERE s.profile = 'default' AND s.contact_id % 37 = 1 ORDER BY 1"
same_on_both "the issue's query: SELECT count(*) FROM engagement_scores s WHERE (engagement_score(s.contact_id, ...)).composite > 50" \
    "SELECT count(*) FROM engagement.engagement_scores s WHERE (engagement.engagement_score(s.contact_id, $AS_OF)).composite > 50
       AND s.profile = 'default'
     UNION ALL SELECT count(*) FROM engagement.engagement_scores s WHERE (engagement.engagement_score(s.contact_id, $AS_OF)).composite <= 50
       AND s.profile = 'default'"
same_on_both "per row over a co-located crm.contacts (contacts without events included)" \
    "SELECT c.id, c.name, ${LIVE//@C@/c.id} FROM crm.contacts c WHERE c.id % 41 = 3 OR c.id > 2005 ORDER BY 1"
same_on_both "customer_lifetime_value" \
    "SELECT v.contact_id, v.lifetime_value, v.calculated_at
       FROM engagement.customer_lifetime_value('default', 12, 0.01) v WHERE v.contact_id % 7 = 1 ORDER BY 1"
same_on_both "predict of the whole profile" \
    "SELECT p.* FROM engagement.predict('default', 30) p ORDER BY 1"
plan=$(q 0 -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT c.id, engagement.engagement_score(c.id, $AS_OF) FROM crm.contacts c")
check "EXPLAIN VERBOSE: engagement_score per row runs in each of the 32 shards of crm.contacts" \
    'grep -q "Task Count: 32" <<<"$plan" && grep -q "engagement.engagement_score(id" <<<"$plan"' \
    || echo "$plan" | head -12 | sed 's/^/# /'
# cached_score per row returns the stored scores (fresh, as the coordinator's contact_scores says)
CACHED="SELECT s.contact_id, engagement.cached_score(s.contact_id, '1 day')::text FROM engagement.engagement_scores s
         WHERE s.profile = 'default' AND s.contact_id % 50 = 0 ORDER BY 1"
cached=$(q 0 -c "$CACHED" 2>&1 | sort -n)   # (sorted here: Citus returned these out of order)
stored=$(q 0 -c "SELECT s.contact_id, jsonb_populate_record(NULL::engagement.score, to_jsonb(s) || jsonb_build_object('as_of', s.calculated_at))::text
                   FROM engagement.engagement_scores s WHERE s.profile = 'default' AND s.contact_id % 50 = 0" | sort -n)
top=$(q 0 -c "SELECT c, engagement.cached_score(c, '1 day')::text FROM unnest(ARRAY(SELECT contact_id FROM engagement.engagement_scores
                WHERE profile = 'default' AND contact_id % 50 = 0)) c" | sort -n)
check "cached_score per row over engagement_scores returns the stored scores, as called on the coordinator" \
    '[ "$cached" = "$stored" ] && [ "$cached" = "$top" ] && [ "$(wc -l <<<"$cached")" = 40 ]' || echo "# ${cached:0:300}"
# A contact whose shards are on another node than the row's: refused, saying why (not read wrongly).
read -r near far <<<"$(q 0 -F ' ' -c "SELECT min(c) FILTER (WHERE n.nodeport = $((BASE + 1))), min(c) FILTER (WHERE n.nodeport = $((BASE + 2)))
                                      FROM generate_series(1, 200) c
                                      JOIN pg_dist_placement pl ON pl.shardid = get_shard_id_for_distribution_column('crm.events', c)
                                      JOIN pg_dist_node n USING (groupid)")"
s=$(q 0 -c "\\set VERBOSITY verbose" -c "SELECT engagement.engagement_score(c.id + $((far - near)), $AS_OF) FROM crm.contacts c WHERE c.id = $near" 2>&1 \
      | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)/\1: \2/p' | head -1)
check "per row with another node's contact ($far for row $near): 0A000 ($s)" '[[ "$s" == 0A000:*"not on this node"* ]]'
# A source the coordinator defines otherwise than this node can (columns renamed in event_sources,
# which only the coordinator has; here the fingerprint its last refresh stored is altered):
# refused, not read with the default columns.
fp=$(q 0 -c "SELECT source_fingerprint FROM engagement.score_distributions WHERE profile = 'default'")
q 0 -c "UPDATE engagement.score_distributions SET source_fingerprint = 'another source' WHERE profile = 'default'"
s=$(q 0 -c "\\set VERBOSITY verbose" -c "SELECT engagement.engagement_score(c.id, $AS_OF) FROM crm.contacts c WHERE c.id = $near" 2>&1 \
      | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)/\1: \2/p' | head -1)
q 0 -c "UPDATE engagement.score_distributions SET source_fingerprint = NULLIF('$fp', '') WHERE profile = 'default'"
check "per row with a source the coordinator defines otherwise: 0A000 ($s)" \
    '[ -n "$fp" ] && [[ "$s" == 0A000:*"defined on the coordinator"* ]]'
q 3 -c "DELETE FROM engagement.engagement_scores" -c "DROP TABLE crm.contacts"

# Incremental: inserts, updates, deletes and a COPY through the coordinator, the same in the
# coordinator's engagement_events.
# (changes() TABLE ID_COLUMN ID_VALUE: the statements for one table)
changes() {
    local changes="INSERT INTO @T@ (contact_id, campaign_id, event_type, occurred_at, conversion_value @ID@)
         SELECT c, 7, CASE WHEN c % 3 = 0 THEN 'converted' ELSE 'clicked' END::engagement.event_type,
                timestamptz '2026-05-30 00:00+00' + c * interval '1 minute', CASE WHEN c % 3 = 0 THEN 25.5 END @IDV@
           FROM generate_series(1991, 2010) c;
         UPDATE @T@ SET event_type = 'clicked' WHERE contact_id BETWEEN 100 AND 109 AND event_type = 'opened';
         UPDATE @T@ SET event_type = 'opened' WHERE contact_id BETWEEN 300 AND 304 AND event_type = 'delivered';
         DELETE FROM @T@ WHERE contact_id IN (500, 501, 502);
         DELETE FROM @T@ WHERE contact_id = 600 AND event_type = 'delivered';"
    changes=${changes//@T@/$1}; changes=${changes//@ID@/$2}; echo "${changes//@IDV@/$3}"
}
q 0 -c "TRUNCATE engagement.event_changes"
# (the contacts these statements change)
EXPECTED=$(q 0 -c "SELECT c FROM generate_series(1991, 2010) c
                   UNION SELECT DISTINCT contact_id FROM crm.events WHERE contact_id BETWEEN 100 AND 109 AND event_type = 'opened'
                   UNION SELECT DISTINCT contact_id FROM crm.events WHERE contact_id BETWEEN 300 AND 304 AND event_type = 'delivered'
                   UNION VALUES (500), (501), (502), (700), (701)
                   UNION SELECT DISTINCT contact_id FROM crm.events WHERE contact_id = 600 AND event_type = 'delivered' ORDER BY 1")
changed=$(wc -l <<<"$EXPECTED")
q 0 -c "$(changes crm.events ", id" ", 900000 + c")"
printf '%s\n' "950001	700	7	opened	2026-05-31 08:00:00+00	\\N	sms" "950002	701	7	clicked	2026-05-31 09:00:00+00	\\N	sms" >"$WORK/more.tsv"
q 0 -c "\\copy crm.events (id, contact_id, campaign_id, event_type, occurred_at, conversion_value, channel) FROM '$WORK/more.tsv'"
q 0 -c "$(changes engagement.engagement_events "" "")" \
    -c "INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, channel)
        VALUES (700, 7, 'opened', '2026-05-31 08:00+00', 'sms'), (701, 7, 'clicked', '2026-05-31 09:00+00', 'sms')"
logged=$(q 0 -c "SELECT contact_id FROM engagement.event_changes WHERE relation::oid = $EVENTS_OID GROUP BY 1 ORDER BY 1")
check "the change log holds exactly the $changed contacts changed through the coordinator" \
    '[ "$logged" = "$EXPECTED" ]' || echo "# $(tr '\n' ' ' <<<"$logged")"
r=$(refresh_both 2>&1)
run=$(q 0 -c "SELECT mode || ' ' || contacts_rescored FROM engagement.refresh_runs WHERE profile = 'default' ORDER BY id DESC LIMIT 1")
check "the incremental refresh rescored exactly the $((changed - 3)) changed contacts that still have events ($run)" \
    '[ "$run" = "incremental $((changed - 3))" ] &&
     [ "$(q 0 -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = '"'default'"' AND score_version = 2")" = $((changed - 13)) ]'
check "and removed the scores of the 3 contacts whose events were deleted" \
    '[ "$(q 0 -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = '"'default'"' AND contact_id IN (500, 501, 502)")" = 0 ]'
same=$(q 0 -c "$COMPARE")
check "after the incremental refresh every stored score equals the local table's ($same)" '[ "$same" = "2007 2007" ]'
check "so do the history and the score distribution" '[ "$(q 0 -c "$HISTORY")" = t ]'

TRENDS="SELECT c, t.* FROM unnest(ARRAY[100, 101, 1995, 2005]) c, engagement.score_trend(c, '2026-01-01', '@P@') t"
READABLE="SELECT r.* FROM engagement.readable_scores('@P@') r ORDER BY r.contact_id"
check "score_trend and readable_scores equal the local table's" \
    '[ "$(q 0 -c "${TRENDS//@P@/default}")" = "$(q 0 -c "${TRENDS//@P@/local}")" ] &&
     [ "$(q 0 -c "${READABLE//@P@/default}" | md5sum)" = "$(q 0 -c "${READABLE//@P@/local}" | md5sum)" ]'

# A profile change on the coordinator is what the workers score with.
q 0 -c "UPDATE engagement.scoring_profiles SET half_life_days = 9, recency_tau_days = 21 WHERE name IN ('default', 'local')"
q 3 -c "UPDATE engagement.scoring_profiles SET half_life_days = 9, recency_tau_days = 21 WHERE name = 'default'"
q 3 -c "$(changes engagement.engagement_events "" "")" \
    -c "INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, channel)
        VALUES (700, 7, 'opened', '2026-05-31 08:00+00', 'sms'), (701, 7, 'clicked', '2026-05-31 09:00+00', 'sms')"
same_as_single "after a profile change on the coordinator, score_events by name (the workers' reference copy)" \
    "SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, $AS_OF, 'default')::text FROM @EVENTS@ GROUP BY 1 ORDER BY 1"
r=$(refresh_both 2>&1)
run=$(q 0 -c "SELECT mode || ' ' || contacts_rescored FROM engagement.refresh_runs WHERE profile = 'default' ORDER BY id DESC LIMIT 1")
check "the profile change made the next refresh a full one ($run)" '[ "$run" = "full 2007" ]'
same=$(q 0 -c "$COMPARE")
check "with every stored score equal to the local table's ($same)" '[ "$same" = "2007 2007" ]'
same=$(against_single 2>&1)
check "and to the single node's scoring as of their calculated_at ($same)" '[ "$same" = "2007 2007" ]'

# The Citus settings the functions need hold only while they run: the caller's transaction goes on
# with DDL propagated and no unsafe triggers.  Sequential multi-shard work, which fit_model sets,
# lasts to the end of the transaction: Citus refuses parallel work on the scores after the write of
# the profiles (a refresh after fit_model, in one transaction).
settings=$(q 0 -c "BEGIN" -c "SELECT count(*) FROM engagement.fit_model('default', $AS_OF)" \
             -c "SELECT engagement.refresh_scores('default', true)" -c "SELECT engagement.track_event_changes('crm.events')" \
             -c "SELECT current_setting('citus.enable_ddl_propagation') || ' ' || current_setting('citus.multi_shard_modify_mode')
                        || ' ' || current_setting('citus.enable_unsafe_triggers')" -c "ROLLBACK" 2>&1 | tail -1)
check "fit_model, refresh_scores and track_event_changes in one transaction leave DDL propagation on and unsafe triggers off ($settings)" \
    '[ "$settings" = "on sequential off" ]'

# A refresh interrupted by an error: one shard of the scores refuses every write.  Nothing is
# half-written, no change is lost, and the error names the shard's constraint, not a temporary
# table of the refresh.
first=$(q 0 -c "SELECT min(contact_id) FROM crm.events WHERE event_type = 'converted' AND contact_id BETWEEN 1 AND 60")
read -r shard port <<<"$(q 0 -F ' ' -c "SELECT shard_name('engagement.engagement_scores', s.shardid), p.nodeport
                                         FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node p USING (groupid)
                                        WHERE s.shardid = get_shard_id_for_distribution_column('engagement.engagement_scores', $first)")"
node=$((port - BASE))
q "$node" -c "SET citus.enable_manual_changes_to_shards = on" \
    -c "ALTER TABLE $shard ADD CONSTRAINT refuse_writes CHECK (composite < 0) NOT VALID"
q 0 -c "UPDATE crm.events SET conversion_value = 99 WHERE event_type = 'converted' AND contact_id BETWEEN 1 AND 60"
SNAPSHOT="SELECT md5(string_agg(to_jsonb(s)::text, '' ORDER BY contact_id)) FROM engagement.engagement_scores s WHERE profile = 'default'"
DIST="SELECT md5(sorted_composites::text) || contacts FROM engagement.score_distributions WHERE profile = 'default'"
scores_before=$(q 0 -c "$SNAPSHOT"); dist_before=$(q 0 -c "$DIST")
changes_before=$(q 0 -c "SELECT count(*) FROM engagement.event_changes")
err=$(q 0 -c "SELECT engagement.refresh_scores('default')" 2>&1)
check "a refresh that fails in the write of one shard raises the shard's constraint, naming no temporary table" \
    'grep -q "^ERROR: .*refuse_writes" <<<"$err" && ! grep "^ERROR" <<<"$err" | grep -q "_es_"' || echo "# $err" | head -3
r=$(q 0 -c "SELECT engagement.refresh_scores('default', on_error => 'record')" 2>&1)
recorded=$(q 0 -c "SELECT error FROM engagement.refresh_runs WHERE profile = 'default' ORDER BY id DESC LIMIT 1")
check "with on_error => 'record' it returns NULL, warns and is recorded in refresh_runs" \
    'grep -q "WARNING" <<<"$r" && [[ "$recorded" == 23514:*refuse_writes* ]]' || echo "# $r / $recorded"
check "and nothing is half-written: scores and distribution as before, every change still logged" \
    '[ "$(q 0 -c "$SNAPSHOT")" = "$scores_before" ] && [ "$(q 0 -c "$DIST")" = "$dist_before" ] &&
     [ "$(q 0 -c "SELECT count(*) FROM engagement.event_changes")" = "$changes_before" ]'
q "$node" -c "SET citus.enable_manual_changes_to_shards = on" -c "ALTER TABLE $shard DROP CONSTRAINT refuse_writes"
q 0 -c "UPDATE engagement.engagement_events SET conversion_value = 99 WHERE event_type = 'converted' AND contact_id BETWEEN 1 AND 60"
r=$(refresh_both 2>&1)
run=$(q 0 -c "SELECT mode || ' ' || contacts_rescored FROM engagement.refresh_runs WHERE profile = 'default' ORDER BY id DESC LIMIT 1")
n60=$(q 0 -c "SELECT count(DISTINCT contact_id) FROM crm.events WHERE event_type = 'converted' AND contact_id BETWEEN 1 AND 60")
check "the next refresh rescores the changed contacts ($run)" '[ "$run" = "incremental $n60" ]'
same=$(q 0 -c "$COMPARE")
check "and every stored score equals the local table's again ($same)" '[ "$same" = "2007 2007" ]'

# A write made in a shard itself, on a worker, is tracked too (the trigger is the shard's).
read -r dshard dport <<<"$(q 0 -F ' ' -c "SELECT shard_name('crm.events', s.shardid), p.nodeport
                                           FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node p USING (groupid)
                                          WHERE s.shardid = get_shard_id_for_distribution_column('crm.events', 1999)")"
q $((dport - BASE)) -c "SET citus.enable_manual_changes_to_shards = on" \
    -c "INSERT INTO $dshard (id, contact_id, campaign_id, event_type, occurred_at) VALUES (990002, 1999, 7, 'opened', '2026-05-31 11:00+00')"
logged=$(q 0 -c "SELECT count(*) FROM engagement.event_changes WHERE contact_id = 1999 AND relation::oid = $EVENTS_OID" 2>&1)
check "a write made directly in a shard on a worker is logged for the coordinator's refresh ($logged)" '[ "$logged" = 1 ]'
r=$(q 0 -c "SELECT engagement.refresh_scores('default')")
check "and the next refresh rescores that contact ($r)" '[ "$r" = 1 ]'

# Roles, as a CRM team has them: an admin who adds a table of its own, tracks it, defines its source
# and profile; an application role that reads scores and cannot write the change log.
q 0 -c "CREATE ROLE crm_admin LOGIN" -c "CREATE ROLE crm_reader LOGIN" -c "GRANT USAGE, CREATE ON SCHEMA crm TO crm_admin" \
    -c "GRANT USAGE ON SCHEMA crm TO crm_reader" -c "GRANT SELECT ON crm.events TO crm_reader, crm_admin"
g=$(q 0 -c "SELECT engagement.grant_admin_access('crm_admin'), engagement.grant_application_access('crm_reader')" 2>&1)
check "grant_admin_access and grant_application_access work on Citus" '[ $? -eq 0 ] && [ "$g" = "|" ]' || echo "# $g"
qa() { psql -qXAt -v ON_ERROR_STOP=1 -d "$(conninfo 0) user=crm_admin" "$@"; }
more_oid=$(qa -c "CREATE TABLE crm.more_events (LIKE crm.events INCLUDING ALL)" \
              -c "SELECT create_distributed_table('crm.more_events', 'contact_id', colocate_with => 'crm.events')" \
              -c "SELECT engagement.track_event_changes('crm.more_events')" \
              -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('more', 'crm.more_events')" \
              -c "SELECT 'crm.more_events'::regclass::oid" 2>&1 | tail -1)
check "an admin role distributes a table of its own, tracks it and gives it a profile" '[[ "$more_oid" =~ ^[0-9]+$ ]]' || echo "# $more_oid"
qa -c "INSERT INTO crm.more_events (id, contact_id, campaign_id, event_type, occurred_at) VALUES (1, 5, 7, 'opened', '2026-05-30'), (2, 6, 7, 'clicked', '2026-05-30')"
check "its inserts are logged" '[ "$(q 0 -c "SELECT string_agg(contact_id::text, '"','"' ORDER BY contact_id) FROM engagement.event_changes WHERE relation::oid = $more_oid")" = "5,6" ]'
scored=$(q 0 -c "SELECT count(DISTINCT contact_id) FROM engagement.engagement_scores")
qa -c "TRUNCATE crm.more_events"
check "TRUNCATE of a tracked distributed table logs every scored contact ($scored)" \
    '[ "$(q 0 -c "SELECT count(DISTINCT contact_id) FROM engagement.event_changes WHERE relation::oid = $more_oid")" = "$scored" ]'
v0=$(q 0 -c "SELECT version FROM engagement.scoring_profiles WHERE name = 'more'")
qa -c "SELECT engagement.define_event_source('crm.more_events', on_unmapped => 'reject')" >/dev/null 2>"$WORK/define.err"
versions=$(for n in 0 1 2; do q "$n" -c "SET citus.show_shards_for_app_name_prefixes = '*'" \
               -c "SELECT version FROM engagement.scoring_profiles WHERE name = 'more'"; done | sort -u)
check "define_event_source on Citus bumps the version of the profile reading it, the same on every node ($v0 -> $versions)" \
    '[ ! -s "$WORK/define.err" ] && [ "$versions" = $((v0 + 1)) ]' || sed 's/^/# /' "$WORK/define.err"
u=$(qa -c "SELECT engagement.untrack_event_changes('crm.more_events')" 2>&1)
logged_before=$(q 0 -c "SELECT count(*) FROM engagement.event_changes WHERE relation::oid = $more_oid")
qa -c "INSERT INTO crm.more_events (id, contact_id, campaign_id, event_type, occurred_at) VALUES (3, 9, 7, 'opened', '2026-05-30')"
check "untrack_event_changes removes the shards' triggers ($u): inserts are no longer logged" \
    '[ "$u" = 4 ] && [ "$(q 0 -c "SELECT count(*) FROM engagement.event_changes WHERE relation::oid = $more_oid")" = "$logged_before" ]'
s=$(q 0 -c "\\set VERBOSITY verbose" -c "CREATE TABLE crm.ref (LIKE crm.events)" -c "SELECT create_reference_table('crm.ref')" \
      -c "SELECT engagement.track_event_changes('crm.ref')" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)/\1: \2/p')
check "track_event_changes of a reference table: 0A000 ($s)" '[[ "$s" == 0A000:* ]]'
r=$(psql -qXAt -d "$(conninfo 0) user=crm_reader" -c "SELECT (engagement.engagement_score(5, $AS_OF)).segment" 2>&1)
w=$(psql -qXAt -d "$(conninfo 0) user=crm_reader" -c "\\set VERBOSITY verbose" -c "INSERT INTO engagement.event_changes VALUES (5, 1)" 2>&1)
check "the application role scores contacts ($r) and cannot write the change log" \
    '[ -n "$r" ] && [[ "$r" != *ERROR* ]] && [[ "$w" == *42501* ]]' || echo "# $r / $w"

# What citus_distribute refuses, with the SQLSTATE of each.
q 0 -c "CREATE VIEW crm.events_view AS SELECT * FROM crm.events" \
    -c "CREATE TABLE crm.other (LIKE crm.events)" -c "CREATE ROLE crm_app LOGIN" \
    -c "GRANT USAGE ON SCHEMA crm, engagement TO crm_app"
state() { q 0 -c "\\set VERBOSITY verbose" -c "$1" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)/\1: \2/p' | head -1; }
s=$(state "SELECT engagement.citus_distribute('crm.events_view')")
check "citus_distribute of a view: 42809 ($s)" '[[ "$s" == 42809:* ]]'
s=$(state "SELECT engagement.citus_distribute('crm.other')")
check "citus_distribute of a second events table: 0A000 with the way to co-locate it ($s)" '[[ "$s" == 0A000:*already\ distributed* ]]'
s=$(state "SET ROLE crm_app; SELECT engagement.citus_distribute('crm.events')")
check "citus_distribute by a role that is not a superuser: 42501 ($s)" '[[ "$s" == 42501:*citus_distribute* ]]'
s=$(q 1 -c "\\set VERBOSITY verbose" -c "SELECT engagement.citus_distribute('crm.events')" 2>&1 | grep -o "^ERROR:  [0-9A-Z]\{5\}: .*" | head -1)
check "citus_distribute on a worker refuses ($s)" '[[ "$s" == *0A000:* ]] || [[ "$s" == *coordinator* ]]'

# pg_cron on the coordinator: schedule_refresh's job refreshes the distributed scores.
q 0 -c "SET citus.enable_ddl_propagation = off" -c "CREATE EXTENSION pg_cron" -c "SELECT engagement.schedule_refresh('default', '* * * * *')" >/dev/null
q 0 -c "INSERT INTO crm.events (id, contact_id, campaign_id, event_type, occurred_at) VALUES (990001, 42, 7, 'responded', '2026-05-31 10:00+00')"
last=$(q 0 -c "SELECT max(id) FROM engagement.refresh_runs")
ran_sql="SELECT mode || ' ' || contacts_rescored || ' ' || coalesce(error, '') FROM engagement.refresh_runs
         WHERE profile = 'default' AND id > $last ORDER BY id LIMIT 1"
wait_until 300 1 'ran=$(q 0 -c "$ran_sql") && [ -n "$ran" ]'   # (pg_cron starts it at the next minute)
check "the pg_cron job on the coordinator refreshed the distributed scores ($ran)" '[ "$ran" = "incremental 1 " ]'
check "refresh_jobs shows it" '[ "$(q 0 -c "SELECT count(*) FROM engagement.refresh_jobs() WHERE kind = '"'incremental'"' AND last_status IS NOT NULL")" -ge 1 ]' \
    || q 0 -c "SELECT * FROM engagement.refresh_jobs()" | sed 's/^/# /'
q 0 -c "SELECT engagement.unschedule_refresh('default')" >/dev/null

echo "# citus: $(( $(date +%s) - STARTED )) s in all, of which $BUILD_SECONDS s installing Citus"
