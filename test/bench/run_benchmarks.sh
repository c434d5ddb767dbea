#!/usr/bin/env bash
# test/bench/run_benchmarks.sh: the performance figures of the README, measured in one run on one
# generated data set (demo/generate_crm_events.sql), each against a baseline on the same data.
# Baseline and subject runs are interleaved; a ratio is the median of the per-pair ratios.
# Not a test: nothing here passes or fails.  Usage: bash test/bench/run_benchmarks.sh [contacts] [reps]
# Section 16 (predict) reads the stored scores of a full refresh, which it runs when there are none.
# FIT_CONTACTS (1,000,000) sizes section 8's data set, on which section 12 also runs the full
# refresh.  ONLY="8 9" runs those sections alone (FIT_ONLY=1 is ONLY=8).  Every statement runs in a
# connection of its own (psql), as pg_cron runs a scheduled refresh.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
CONTACTS=${1:-200000}
REPS=${2:-5}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
. scripts/cluster.sh
PORT=${ES_BENCH_PORT:-55436}
scratch_dir bench
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s -j2 >/dev/null && make -s install >/dev/null
# Huge pages for the 4 GB of shared buffers, as PostgreSQL's documentation recommends for a large
# shared_buffers: a new connection (pg_cron opens one for every job) maps the buffers it touches
# 2 MB at a time instead of 4 kB.  Without them an incremental refresh's first touches of its
# contacts' pages cost ~50 ms in minor page faults (~8,600 of them) on this machine.  The script
# reserves them for its cluster and gives them back at exit; ES_BENCH_HUGE_PAGES=0 runs without.
HUGE_PAGES=off
if [ "${ES_BENCH_HUGE_PAGES:-1}" = 1 ] && [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages 2>/dev/null)" != "" ]; then
    HUGE_BEFORE=$(cat /proc/sys/vm/nr_hugepages)
    HUGE_WANT=$((HUGE_BEFORE + 2200))     # 4 GB of buffers and ~300 MB of other shared memory
    sysctl -qw vm.nr_hugepages="$HUGE_WANT" || true
    if [ "$(cat /proc/sys/vm/nr_hugepages)" -ge "$HUGE_WANT" ]; then HUGE_PAGES=on; fi
    trap 'cluster_stop_all; rm -rf "$WORK"; sysctl -qw vm.nr_hugepages="$HUGE_BEFORE"' EXIT
fi
log "huge pages: $HUGE_PAGES"
# JIT off: its compile time would be noise at these query sizes; the figures are the executor's.
cluster_start "$WORK/pg" "$PORT" "shared_buffers = 4GB" "work_mem = 256MB" "maintenance_work_mem = 1GB" \
    "max_parallel_workers_per_gather = 2" "jit = off" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
    "huge_pages = $HUGE_PAGES"
export PGHOST="$WORK/pg" PGPORT="$PORT" PGUSER=postgres PGDATABASE=bench
psql -qX -d postgres -c "CREATE DATABASE bench"
psql -qX -c "CREATE EXTENSION engagement_scoring"
AS_OF='2026-11-24 00:00:00+00'
SERIAL="SET max_parallel_workers_per_gather = 0"
PAR="SET max_parallel_workers_per_gather = 2"
FLOOR="SELECT sum(n) FROM (SELECT contact_id, count(*) AS n FROM engagement.engagement_events GROUP BY contact_id) s"

# ms SQL...: runs the statements in one session and prints the time of the last one, in ms.
ms() {
    local args=(-qXAt -v ON_ERROR_STOP=1)
    local s
    for s in "${@:1:$#-1}"; do args+=(-c "$s"); done
    psql "${args[@]}" -c '\timing on' -c "${@: -1}" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
. "$REPO/test/bench/median.sh"
. "$REPO/test/tap.sh"   # (wait_until)
# compare NAME TARGET REPS BASE_SETUP BASE_SQL SUBJ_SETUP SUBJ_SQL [BEFORE_EACH_SQL]
compare() {
    local name=$1 target=$2 reps=$3 bset=$4 bsql=$5 sset=$6 ssql=$7 before=${8:-SELECT 1}
    local i b s ratios=() bs=() ss=()
    ms "$bset" "$bsql" >/dev/null; ms "$sset" "$ssql" >/dev/null   # warm the cache
    for ((i = 0; i < reps; i++)); do
        psql -qXAt -c "$before" >/dev/null
        b=$(ms "$bset" "$bsql")
        psql -qXAt -c "$before" >/dev/null
        s=$(ms "$sset" "$ssql")
        bs+=("$b"); ss+=("$s")
        ratios+=("$(awk -v s="$s" -v b="$b" 'BEGIN {print s / b}')")
    done
    local mb ms_ mr
    mb=$(printf '%s\n' "${bs[@]}" | median); ms_=$(printf '%s\n' "${ss[@]}" | median)
    mr=$(printf '%s\n' "${ratios[@]}" | median)
    printf '%-62s %10.1f %10.1f %8.3f   %s\n' "$name" "$mb" "$ms_" "$mr" "$target" | tee -a "$RESULTS" >&2
    LAST_RATIO=$mr
}
# quotient NAME TARGET BASE_RATIO SUBJ_RATIO: a line of the results of two compare() ratios (their
# medians, as printed, in the baseline and subject columns) and the second over the first.
quotient() {
    printf '%-62s %10.3f %10.3f %8.3f   %s\n' "$1" "$3" "$4" "$(awk -v s="$4" -v b="$3" 'BEGIN {print s / b}')" "$2" \
        | tee -a "$RESULTS" >&2
}
RESULTS="$WORK/results.txt"
: >"$RESULTS"
printf '%-62s %10s %10s %8s   %s\n' "benchmark (median ms of baseline, subject; ratio subject/baseline)" baseline subject ratio target | tee "$RESULTS" >&2
[ -n "${FIT_ONLY:-}" ] && ONLY=8
# want N...: whether one of these sections is to run
want() { [ -z "${ONLY:-}" ] && return 0; local n; for n; do [[ " $ONLY " == *" $n "* ]] && return 0; done; return 1; }
# view_source VIEW PROFILE [KIND_MATCH]: a view over engagement_events (the columns renamed, the
# kinds as text), its source (the eight kinds mapped to themselves) and a profile reading it.  With
# KIND_MATCH trim_lower (section 9) the view writes its kinds as a CRM might, ' Opened', and the map
# has them as 'OPENED': trim_lower has work on every row.  Else (exact, section 19) the kinds are the
# event types' names.
view_source() {
    local kind="event_type::text" key="t" match=${3:-exact}
    if [ "$match" = trim_lower ]; then kind="' ' || initcap(event_type::text)"; key="upper(t::text)"; fi
    psql -qX -v ON_ERROR_STOP=1 \
         -c "CREATE VIEW $1 AS SELECT contact_id, $kind AS kind, occurred_at AS at, conversion_value AS revenue
               FROM engagement.engagement_events" \
         -c "SELECT engagement.define_event_source('$1', (SELECT jsonb_object_agg($key, t) FROM unnest(enum_range(NULL::engagement.event_type)) t),
                                                    kind_column => 'kind', time_column => 'at', value_column => 'revenue',
                                                    kind_match => '$match')" \
         -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('$2', '$1')" >/dev/null
}
# crossover NAME PROFILE: for each share of CROSS_PCTS (multiples of 5) of the contacts given new
# events before each run, the profile's incremental refresh (kept one) against its full refresh.
crossover() {
    local pct changed
    for pct in ${CROSS_PCTS:-5 10 20 40 60 80}; do
        changed="INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
                 SELECT c, 'clicked', now() - interval '1 minute' FROM generate_series(1, $CONTACTS) c WHERE c % 20 < $((pct / 5))"
        compare "$1 ($pct% changed) vs full" "crossover: 1" "${CROSS_REPS:-3}" \
            "$PAR" "SELECT engagement.refresh_scores('$2', true)" \
            "$PAR; SET engagement.incremental_max_fraction = 1" "SELECT engagement.refresh_scores('$2')" "$changed"
    done
}
if want 1 2 3 4 5 6 7 9 10 11 13 14 15 16 17 18 19 20; then
log "generating $CONTACTS contacts"
psql -qX -v ON_ERROR_STOP=1 -v contacts="$CONTACTS" -v campaigns="${CAMPAIGNS:-65}" -v as_of="'$AS_OF'" -f demo/generate_crm_events.sql >/dev/null
psql -qX -c "TRUNCATE engagement.event_changes" -c "VACUUM ANALYZE engagement.engagement_events"
EVENTS=$(psql -qXAt -c "SELECT count(*) FROM engagement.engagement_events")
log "$EVENTS events"

SCORE="SELECT sum((s).composite) FROM (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '$AS_OF') AS s FROM engagement.engagement_events GROUP BY contact_id) q"

fi
if want 1; then
log "1. score_events against the scan floor"
compare "1. score_events GROUP BY contact vs count(*) floor" "<= 1.6" "$REPS" "$PAR" "$FLOOR" "$PAR" "$SCORE"
compare "1s. the same, both serial" "<= 1.4" "$REPS" "$SERIAL" "$FLOOR" "$SERIAL" "$SCORE"
fi

if want 16; then
# 16. predict and customer_lifetime_value over every stored score (the stored summary and the
# profile's parameters, no events) against a bare scan of the same columns of the scores table.
log "16. predictions from the stored summaries"
[ "$(psql -qXAt -c "SELECT count(*) FROM engagement.engagement_scores")" -gt 0 ] \
    || psql -qXAt -c "SELECT engagement.refresh_scores('default', true)" >/dev/null
psql -qX -c "VACUUM ANALYZE engagement.engagement_scores"
SCAN="SELECT count(*), sum(x), sum(t_x), sum(t_c), sum(n_days), sum(conv_days), sum(x_v), sum(m_v), count(*) FILTER (WHERE opted_out OR undeliverable) FROM engagement.engagement_scores WHERE profile = 'default'"
PREDICT="SELECT count(*), sum(engagement_probability), sum(conversion_probability), sum(expected_engagements), sum(expected_value) FROM engagement.predict('default', 7)"
CLV="SELECT count(*), sum(lifetime_value) FROM engagement.customer_lifetime_value('default', 12, 0.01)"
compare "16. predict('default', 7) vs a scan of the stored summaries" "<= 2" "$REPS" "$SERIAL" "$SCAN" "$SERIAL" "$PREDICT"
compare "16p. the same, 2 workers" "<= 2" "$REPS" "$PAR" "$SCAN" "$PAR" "$PREDICT"
compare "16c. customer_lifetime_value(12 months) vs the same scan" "(12 expectations a contact)" "$REPS" "$SERIAL" "$SCAN" "$SERIAL" "$CLV"
fi

if want 17; then
# 17. The reads for people, inlined into the caller's query (src/sql/presentation.sql): the best 15
# of readable_scores, and 15 of a segment in another order, against the same queries on the scores
# table (same rows, raw columns).  Target: within 1.5x.
log "17. readable_scores with a LIMIT, a condition and an ORDER BY"
[ "$(psql -qXAt -c "SELECT count(*) FROM engagement.engagement_scores")" -gt 0 ] \
    || psql -qXAt -c "SELECT engagement.refresh_scores('default', true)" >/dev/null
psql -qX -c "VACUUM ANALYZE engagement.engagement_scores"
compare "17. readable_scores('default') LIMIT 15 vs engagement_scores" "<= 1.5" "$REPS" \
    "$PAR" "SELECT * FROM engagement.engagement_scores WHERE profile = 'default' ORDER BY composite DESC, contact_id LIMIT 15" \
    "$PAR" "SELECT * FROM engagement.readable_scores('default') LIMIT 15"
compare "17b. the same, WHERE segment = 'at_risk' ORDER BY churn_risk" "<= 1.5" "$REPS" \
    "$PAR" "SELECT * FROM engagement.engagement_scores WHERE profile = 'default' AND segment = 'at_risk' ORDER BY churn_risk DESC, contact_id LIMIT 15" \
    "$PAR" "SELECT * FROM engagement.readable_scores('default') WHERE segment = 'at_risk' ORDER BY churn_risk DESC, contact_id LIMIT 15"
fi

if want 18; then
# 18. Where an incremental refresh stops paying: after new events for 5, 10, 20, 40, 60 and 80% of
# the contacts (CROSS_PCTS: multiples of 5) (inserted before each run, so both runs see the same share changed), an incremental
# refresh (kept incremental: engagement.incremental_max_fraction = 1) against a full one on the same
# data.  The crossover is where the ratio reaches 1; refresh_scores runs as a full refresh above
# the fraction it chose from these figures (docs/performance.md).
log "18. incremental refreshes of 5-40% of the contacts vs a full refresh"
[ "$(psql -qXAt -c "SELECT count(*) FROM engagement.engagement_scores")" -gt 0 ] \
    || psql -qXAt -c "SELECT engagement.refresh_scores('default', true)" >/dev/null
crossover "18. incremental refresh" default
fi

if want 19; then
# 19. Section 18 over a view source (section 9's view: text kinds mapped by event_kind_map, over
# engagement_events, whose changes it sees): where the issue's CRM found an incremental refresh of
# 70% of its contacts slower than a full one.  (The view is fed by engagement_events' change log,
# as track_event_changes(table, for_source => view) says of a table of one's own.)
log "19. incremental refreshes vs a full refresh, over a view source"
view_source bench_sms19 view_source19
psql -qX -v ON_ERROR_STOP=1 \
     -c "UPDATE engagement.event_sources SET changes_from = '{engagement.engagement_events}' WHERE relation = 'bench_sms19'::regclass" \
     -c "SELECT engagement.refresh_scores('view_source19', true)" >/dev/null
crossover "19. view source: incremental refresh" view_source19
fi

if want 14; then
# 14. Where score_events' serial time goes, each step against the floor: the floor plus reading the
# three other columns the model reads (counted, a by-value transition each); model_summary, whose
# transition updates score_events' state the same way (es_score_state_add_event, with the built-in
# profile: no profile lookup) and whose final function is light; score_events.
log "14. score_events' serial time, step by step"
READ3="SELECT sum(n) FROM (SELECT contact_id, count(event_type) + count(occurred_at) + count(conversion_value) AS n
                           FROM engagement.engagement_events GROUP BY contact_id) s"
SUMMARY="SELECT count((s).x) FROM (SELECT contact_id, engagement.model_summary(event_type, occurred_at, conversion_value, '$AS_OF') AS s
                                   FROM engagement.engagement_events GROUP BY contact_id) q"
compare "14a. the floor + reading the model's other 3 columns" "report" "$REPS" "$SERIAL" "$FLOOR" "$SERIAL" "$READ3"
compare "14b. model_summary (score_events' state, light final)" "report" "$REPS" "$SERIAL" "$FLOOR" "$SERIAL" "$SUMMARY"
compare "14c. score_events (as 1s)" "report" "$REPS" "$SERIAL" "$FLOOR" "$SERIAL" "$SCORE"
fi

if want 2; then
log "2. the model in plain SQL (test/reference_model.sql) against score_events"
psql -qX -v ON_ERROR_STOP=1 -f test/reference_model.sql >/dev/null
PLAIN="SELECT sum((r.s).composite) FROM ref.scores('engagement.engagement_events', '$AS_OF') r"
compare "2. score_events vs the same model in plain SQL (speed-up)" ">= 20x" 2 "$PAR" "$SCORE" "$PAR" "$PLAIN"
fi
if want 3; then
log "3. full refresh against the floor"
compare "3. refresh_scores(full) vs count(*) floor" "<= 3" "$REPS" "$PAR" "$FLOOR" "$PAR" \
    "SELECT engagement.refresh_scores('default', true)"
fi

if want 4; then
log "4. incremental refresh after 1% of contacts get new events, against a full refresh"
ONE_PCT="INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
         SELECT c, 'clicked', now() - interval '1 minute' FROM generate_series(1, $CONTACTS, 100) c"
compare "4. incremental refresh (1% changed) vs full, each in a new connection" "<= 0.05" "$REPS" \
    "$PAR" "SELECT engagement.refresh_scores('default', true)" \
    "$PAR" "SELECT engagement.refresh_scores('default')" "$ONE_PCT"
fi

if want 15; then
# 15. What a full refresh cannot do without, each against the floor in the same run: scoring every
# contact into a table of the score's columns (the statement _refresh_score_contacts runs), and a
# bare UPDATE of every stored score of the profile from such a table (the columns a refresh writes,
# without its percentiles, history, distribution or checks).  Their ratios add up to what item 3
# could be at best.  (The UPDATE leaves the stored scores as a refresh at AS_OF would, but for
# their percentiles: a later refresh rewrites them all.)
log "15. a full refresh's scoring step and a bare write of every score"
SCORED="SELECT q.contact_id, (q.s).* FROM (SELECT contact_id, engagement.score_events(event_type, occurred_at, conversion_value, '$AS_OF') AS s
                                          FROM engagement.engagement_events GROUP BY contact_id) q"
psql -qX -v ON_ERROR_STOP=1 -c "CREATE TABLE bench_new_scores AS $SCORED" \
     -c "ALTER TABLE bench_new_scores ADD PRIMARY KEY (contact_id)" -c "VACUUM ANALYZE bench_new_scores" \
     -c "SELECT engagement.refresh_scores('default', true)" >/dev/null
# (every column the two tables share, as the refresh sets them from its table of scores)
SHARED=$(psql -qXAt -c "SELECT string_agg(format('%I = n.%I', a.attname, a.attname), ', ' ORDER BY a.attnum)
                          FROM pg_attribute a JOIN pg_attribute b ON b.attname = a.attname
                         WHERE a.attrelid = 'engagement.engagement_scores'::regclass AND b.attrelid = 'bench_new_scores'::regclass
                           AND a.attnum > 0 AND NOT a.attisdropped AND NOT b.attisdropped
                           AND a.attname NOT IN ('profile', 'contact_id')")
BARE_WRITE="UPDATE engagement.engagement_scores cur
               SET $SHARED, percentile_rank = 50, score_version = cur.score_version + 1,
                   profile_version = cur.profile_version, model_version = cur.model_version, calculated_at = now()
              FROM bench_new_scores n
             WHERE cur.profile = 'default' AND cur.contact_id = n.contact_id"
compare "15a. scoring into a table of the score's columns vs the floor" "report" "$REPS" "$PAR" "$FLOOR" \
    "$PAR" "CREATE TEMP TABLE scored AS $SCORED"
compare "15b. a bare UPDATE of every stored score vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$BARE_WRITE"
fi

if want 20; then
# 20. Issue 27 item 6, a prototype: a full refresh's scores written into a new heap that replaces the
# old one, against 15b's UPDATE of every stored score (the same columns from bench_new_scores, the
# same values).  Measured on copies of engagement_scores in a schema hs, with what a swap has to carry
# made by hand: the CHECKs and defaults (LIKE), fillfactor 45, the primary key (built after the load),
# the foreign key to scoring_profiles (validated), a security_invoker view over it (as contact_scores),
# a grant to a reading role, and ANALYZE (a new heap has no statistics).  Each swap first takes SHARE
# on the old heap (no write may be lost between its read and the swap; readers go on), then:
#   20a. rename swap: the new table renamed over the old one, the view replaced, the grant given
#        again, the old heap dropped;
#   20b. partition swap: hs.pscores is LIST-partitioned by profile; the new partition (with a CHECK
#        matching its bound, so ATTACH does not scan it) replaces the profile's partition by DETACH
#        and ATTACH;
#   20c. TRUNCATE + INSERT: the new rows staged in a temporary table, the heap truncated (a new
#        relfilenode, the same OID) and refilled; its index maintained row by row, its statistics kept.
# 20u is 15b's UPDATE on the copy; 20x, 20a against 15b's UPDATE directly.  20r: a reader's point
# lookups (pgbench, one client) during one write of each kind; 20m: what a REPEATABLE READ reader whose
# snapshot predates the write sees of the table after it.  Needs section 15 (ONLY="15 20").
want 15 || { log "section 20 needs section 15 (bench_new_scores, BARE_WRITE)"; exit 1; }
log "20. a full refresh's scores into a new heap swapped in, against the UPDATE (15b)"
psql -qX -v ON_ERROR_STOP=1 -c "CREATE SCHEMA hs" -c "CREATE ROLE hs_reader LOGIN" -c "GRANT USAGE ON SCHEMA hs TO hs_reader" \
     -c "CREATE TABLE hs.scores (LIKE engagement.engagement_scores INCLUDING ALL) WITH (fillfactor = 45)" \
     -c "ALTER TABLE hs.scores ADD CONSTRAINT scores_profile_fkey FOREIGN KEY (profile) REFERENCES engagement.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE" \
     -c "INSERT INTO hs.scores SELECT * FROM engagement.engagement_scores" \
     -c "CREATE VIEW hs.v WITH (security_invoker = true) AS SELECT s.* FROM hs.scores s" \
     -c "GRANT SELECT ON hs.scores, hs.v TO hs_reader" \
     -c "CREATE TABLE hs.pscores (LIKE engagement.engagement_scores INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY LIST (profile)" \
     -c "ALTER TABLE hs.pscores ADD PRIMARY KEY (profile, contact_id)" \
     -c "ALTER TABLE hs.pscores ADD CONSTRAINT pscores_profile_fkey FOREIGN KEY (profile) REFERENCES engagement.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE" \
     -c "CREATE TABLE hs.pscores_default PARTITION OF hs.pscores FOR VALUES IN ('default') WITH (fillfactor = 45)" \
     -c "INSERT INTO hs.pscores SELECT * FROM engagement.engagement_scores WHERE profile = 'default'" \
     -c "CREATE VIEW hs.pv WITH (security_invoker = true) AS SELECT s.* FROM hs.pscores s" \
     -c "GRANT SELECT ON hs.pscores, hs.pscores_default, hs.pv TO hs_reader" \
     -c "VACUUM ANALYZE hs.scores" -c "VACUUM ANALYZE hs.pscores" >/dev/null
# (the columns in order, and each one's new value: BARE_WRITE's, the rest kept from the stored row)
COLS=$(psql -qXAt -c "SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) FROM pg_attribute
                       WHERE attrelid = 'engagement.engagement_scores'::regclass AND attnum > 0 AND NOT attisdropped")
NEWVALS=$(psql -qXAt -c "SELECT string_agg(CASE a.attname WHEN 'profile' THEN 'cur.profile' WHEN 'contact_id' THEN 'n.contact_id'
                                  WHEN 'percentile_rank' THEN '50' WHEN 'score_version' THEN 'cur.score_version + 1'
                                  WHEN 'profile_version' THEN 'cur.profile_version' WHEN 'model_version' THEN 'cur.model_version'
                                  WHEN 'calculated_at' THEN 'now()'
                                  ELSE CASE WHEN b.attname IS NOT NULL THEN format('n.%I', a.attname) ELSE format('cur.%I', a.attname) END END,
                                  ', ' ORDER BY a.attnum)
                           FROM pg_attribute a LEFT JOIN pg_attribute b ON b.attrelid = 'bench_new_scores'::regclass AND b.attname = a.attname AND NOT b.attisdropped
                          WHERE a.attrelid = 'engagement.engagement_scores'::regclass AND a.attnum > 0 AND NOT a.attisdropped")
HS_UPDATE=${BARE_WRITE//engagement.engagement_scores cur/hs.scores cur}
FKEY="FOREIGN KEY (profile) REFERENCES engagement.scoring_profiles (name) ON UPDATE CASCADE ON DELETE CASCADE"
HEAP_STEPS=(
  "BEGIN"
  "LOCK TABLE hs.scores IN SHARE MODE"
  "CREATE TABLE hs.scores_new (LIKE hs.scores INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) WITH (fillfactor = 45)"
  "INSERT INTO hs.scores_new ($COLS) SELECT $NEWVALS FROM bench_new_scores n JOIN hs.scores cur ON cur.profile = 'default' AND cur.contact_id = n.contact_id"
  "INSERT INTO hs.scores_new ($COLS) SELECT $COLS FROM hs.scores WHERE profile <> 'default'"
  "ALTER TABLE hs.scores_new ADD CONSTRAINT scores_new_pkey PRIMARY KEY (profile, contact_id)"
  "ALTER TABLE hs.scores_new ADD CONSTRAINT scores_new_profile_fkey $FKEY"
  "ANALYZE hs.scores_new"
  "ALTER TABLE hs.scores RENAME TO scores_old"
  "ALTER TABLE hs.scores_new RENAME TO scores"
  "CREATE OR REPLACE VIEW hs.v WITH (security_invoker = true) AS SELECT s.* FROM hs.scores s"
  "GRANT SELECT ON hs.scores TO hs_reader"
  "DROP TABLE hs.scores_old"
  "ALTER INDEX hs.scores_new_pkey RENAME TO scores_pkey"
  "ALTER TABLE hs.scores RENAME CONSTRAINT scores_new_profile_fkey TO scores_profile_fkey"
  "COMMIT")
PART_STEPS=(
  "BEGIN"
  "LOCK TABLE hs.pscores_default IN SHARE MODE"
  "CREATE TABLE hs.pscores_new (LIKE hs.pscores INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) WITH (fillfactor = 45)"
  "ALTER TABLE hs.pscores_new ADD CONSTRAINT pscores_new_bound CHECK (profile = 'default')"
  "INSERT INTO hs.pscores_new ($COLS) SELECT $NEWVALS FROM bench_new_scores n JOIN hs.pscores_default cur ON cur.profile = 'default' AND cur.contact_id = n.contact_id"
  "ALTER TABLE hs.pscores_new ADD CONSTRAINT pscores_new_pkey PRIMARY KEY (profile, contact_id)"
  "ALTER TABLE hs.pscores_new ADD CONSTRAINT pscores_new_profile_fkey $FKEY"
  "ANALYZE hs.pscores_new"
  "ALTER TABLE hs.pscores DETACH PARTITION hs.pscores_default"
  "ALTER TABLE hs.pscores ATTACH PARTITION hs.pscores_new FOR VALUES IN ('default')"
  "DROP TABLE hs.pscores_default"
  "ALTER TABLE hs.pscores_new RENAME TO pscores_default"
  "ALTER INDEX hs.pscores_new_pkey RENAME TO pscores_default_pkey"
  "COMMIT")
TRUNC_STEPS=(
  "BEGIN"
  "LOCK TABLE hs.scores IN SHARE MODE"
  "CREATE TEMP TABLE hs_stage (LIKE hs.scores) ON COMMIT DROP"
  "INSERT INTO hs_stage ($COLS) SELECT $NEWVALS FROM bench_new_scores n JOIN hs.scores cur ON cur.profile = 'default' AND cur.contact_id = n.contact_id"
  "INSERT INTO hs_stage ($COLS) SELECT $COLS FROM hs.scores WHERE profile <> 'default'"
  "TRUNCATE hs.scores"
  "INSERT INTO hs.scores ($COLS) SELECT $COLS FROM hs_stage"
  "COMMIT")
joined() { local IFS=$'\n'; local s out=""; for s in "$@"; do out+="$s; "; done; printf '%s' "$out"; }
HEAP_SWAP=$(joined "${HEAP_STEPS[@]}"); PART_SWAP=$(joined "${PART_STEPS[@]}"); TRUNC_SWAP=$(joined "${TRUNC_STEPS[@]}")
if [ -z "${HS_LOCKS_ONLY:-}" ]; then   # (HS_LOCKS_ONLY=1: only 20r and 20m)
compare "20u. 15b's UPDATE on the copy (hs.scores) vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$HS_UPDATE"
compare "20a. new heap, rename swap vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$HEAP_SWAP"
compare "20b. new partition, DETACH/ATTACH swap vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$PART_SWAP"
compare "20c. TRUNCATE + INSERT in one transaction vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$TRUNC_SWAP"
HEAP_SWAP_FF100=${HEAP_SWAP//WITH (fillfactor = 45)/WITH (fillfactor = 100)}
LOAD_ONLY="BEGIN; CREATE TABLE hs.lb ($COLS) AS SELECT $NEWVALS FROM bench_new_scores n JOIN hs.scores cur ON cur.profile = 'default' AND cur.contact_id = n.contact_id; ROLLBACK"
compare "20f. 20a with fillfactor 100 vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$HEAP_SWAP_FF100"
psql -qXAt -c "ALTER TABLE hs.scores SET (fillfactor = 45)" -c "VACUUM FULL hs.scores" -c "ANALYZE hs.scores" >/dev/null
compare "20l. its load alone (CREATE TABLE AS the join) vs the floor" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" "$LOAD_ONLY"
compare "20x. 20a's rename swap vs 15b's UPDATE" "report" "$REPS" "$PAR" "$BARE_WRITE" "$PAR" "$HEAP_SWAP"
compare "20y. 20b's partition swap vs 15b's UPDATE" "report" "$REPS" "$PAR" "$BARE_WRITE" "$PAR" "$PART_SWAP"
# steps NAME STEP...: each statement's time, the median of REPS runs (no baseline: where the time goes)
steps() {
    local name=$1; shift
    local i t f="$WORK/steps.$name"
    : >"$f"
    for ((i = 0; i < REPS; i++)); do
        local args=(-qXAt -v ON_ERROR_STOP=1 -c '\timing on') s
        for s in "$@"; do args+=(-c "$s"); done
        psql "${args[@]}" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | awk '{print NR, $1}' >>"$f"
    done
    local n=0 s
    for s in "$@"; do
        n=$((n + 1))
        t=$(awk -v n=$n '$1 == n {print $2}' "$f" | median)
        printf '%-12s %2d %9.1f ms  %s\n' "$name" "$n" "$t" "${s:0:90}" | tee -a "$RESULTS" >&2
    done
}
steps 20a-steps "${HEAP_STEPS[@]}"
steps 20b-steps "${PART_STEPS[@]}"
steps 20c-steps "${TRUNC_STEPS[@]}"
fi
# readers NAME USER READ_SQL WRITE_SQL [HOLDER_SQL]: one client's READ_SQL (pgbench, RD_SECS = 12 s; :k
# a random contact) while WRITE_SQL runs once, once the reader is reading; HOLDER_SQL (a transaction,
# in another session, whose pg_sleep is the length of the report or refresh it stands for) holding
# its locks before the write starts.  Prints the reads' count, median and longest latency, how many
# took over 10 ms, the failed ones, the write's own time (or its error) and the holder's errors.
# (Each session is waited for in the state needed, not for a time.)
in_state() {   # in_state APPLICATION_NAME SQL_CONDITION_ON_a_AND_l: whether such a backend exists
    [ "$(psql -qXAt -c "SELECT count(*) FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND l.granted
                          WHERE a.application_name = '$1' AND $2")" -ge 1 ]
}
readers() {
    local name=$1 user=$2 read=$3 sql=$4 holder=${5:-} pfx="$WORK/rd_${1//[^a-z0-9]/_}"
    printf '\\set k random(1, %d)\n%s;\n' "$CONTACTS" "$read" >"$WORK/reader.sql"
    pgbench -n -c 1 -T "${RD_SECS:-12}" -U "$user" -f "$WORK/reader.sql" -l --log-prefix="$pfx" >"$pfx.out" 2>&1 &
    local rpid=$! hpid=""
    wait_until 6000 0.1 'in_state pgbench "a.state = '"'active'"'"'
    if [ -n "$holder" ]; then
        PGAPPNAME=es_bench_holder psql -qXAt -c "$holder" >/dev/null 2>"$pfx.holder" &
        hpid=$!
        # (its first statement has taken its locks: one on a table of the database's own)
        wait_until 6000 0.1 'in_state es_bench_holder "l.locktype = '"'relation'"' AND l.relation >= 16384"'
    fi
    local w; w=$(ms "$sql" 2>"$pfx.werr") || true
    wait $rpid || true
    if [ -n "$hpid" ]; then wait "$hpid" || true; fi
    local failed; failed=$(grep -c -i 'error\|abort' "$pfx.out" || true)
    cat "$pfx".[0-9]* | awk '{print $3 / 1000}' | sort -g >"$pfx.lat"
    printf '%-50s reads %6d, median %.3f ms, longest %.3f ms, >10 ms: %d; errors %s; write %s ms %s%s\n' "$name" \
        "$(wc -l <"$pfx.lat")" "$(median <"$pfx.lat")" "$(tail -1 "$pfx.lat")" "$(awk '$1 > 10' "$pfx.lat" | wc -l)" \
        "$failed" "${w:-(failed)}" "$(grep -m1 ERROR "$pfx.werr" || true)" "$( [ -n "$holder" ] && { e=$(grep -m1 ERROR "$pfx.holder" || true); echo "; holder: ${e:-no error}"; } )" \
        | tee -a "$RESULTS" >&2
    grep -i 'error\|abort' "$pfx.out" | head -3 >&2 || true
}
SCORE_READ="SELECT * FROM hs.scores WHERE profile = 'default' AND contact_id = :k"
PROFILE_READ="SELECT * FROM engagement.scoring_profiles WHERE name = 'default'"
readers "20r. UPDATE (15b, engagement_scores)" postgres "SELECT * FROM engagement.engagement_scores WHERE profile = 'default' AND contact_id = :k" "$BARE_WRITE"
readers "20r. UPDATE on the copy (20u)" hs_reader "$SCORE_READ" "$HS_UPDATE"
readers "20r. rename swap (20a)" hs_reader "$SCORE_READ" "$HEAP_SWAP"
readers "20r. rename swap (20a), via the view" hs_reader "SELECT * FROM hs.v WHERE profile = 'default' AND contact_id = :k" "$HEAP_SWAP"
readers "20r. partition swap (20b)" hs_reader "SELECT * FROM hs.pscores WHERE profile = 'default' AND contact_id = :k" "$PART_SWAP"
readers "20r. TRUNCATE + INSERT (20c)" hs_reader "$SCORE_READ" "$TRUNC_SWAP"
readers "20r. profiles read, UPDATE (20u)" postgres "$PROFILE_READ" "$HS_UPDATE"
readers "20r. profiles read, rename swap (20a)" postgres "$PROFILE_READ" "$HEAP_SWAP"
readers "20r. profiles read, partition swap (20b)" postgres "$PROFILE_READ" "$PART_SWAP"
# (a report reading the scores for 12 s (the readers then run 24 s); another profile's refresh: its
# profile row FOR SHARE for 6 s)
LONG_READ="BEGIN; SELECT count(*) FROM hs.scores; SELECT pg_sleep(12); COMMIT"
OTHER_REFRESH="BEGIN; SELECT 1 FROM engagement.scoring_profiles WHERE name = 'default' FOR SHARE; SELECT pg_sleep(6); COMMIT"
OTHER_REFRESH_W="BEGIN; SELECT 1 FROM engagement.scoring_profiles WHERE name = 'default' FOR SHARE; SELECT pg_sleep(6);
                 UPDATE hs.scores SET calculated_at = calculated_at WHERE profile = 'default' AND contact_id = 1; COMMIT"
RD_SECS=24 readers "20r. UPDATE (20u), a 12 s report open" hs_reader "$SCORE_READ" "$HS_UPDATE" "$LONG_READ"
RD_SECS=24 readers "20r. rename swap (20a), a 12 s report open" hs_reader "$SCORE_READ" "$HEAP_SWAP" "$LONG_READ"
readers "20r. UPDATE (20u), profile FOR SHARE 6 s" hs_reader "$SCORE_READ" "$HS_UPDATE" "$OTHER_REFRESH"
readers "20r. rename swap (20a), profile FOR SHARE 6 s" hs_reader "$SCORE_READ" "$HEAP_SWAP" "$OTHER_REFRESH"
readers "20r. partition swap (20b), profile FOR SHARE 6 s" hs_reader "SELECT * FROM hs.pscores WHERE profile = 'default' AND contact_id = :k" "$PART_SWAP" "$OTHER_REFRESH"
readers "20r. UPDATE (20u), FOR SHARE 6 s then a write" hs_reader "$SCORE_READ" "$HS_UPDATE" "$OTHER_REFRESH_W"
readers "20r. rename swap (20a), FOR SHARE 6 s then a write" hs_reader "$SCORE_READ" "$HEAP_SWAP" "$OTHER_REFRESH_W"
# snapshot NAME TABLE WRITE_SQL: rows of TABLE a REPEATABLE READ transaction sees after WRITE_SQL
# committed, its snapshot taken before (by SELECT 1: it holds no lock on any table).  The transaction
# reads its statements from a pipe: the write runs once it is idle in it, the count once the write
# has returned.
snapshot() {
    local out="$WORK/snap.out" in="$WORK/snap.in"
    mkfifo "$in"
    PGAPPNAME=es_bench_snapshot psql -qXAt <"$in" >"$out" 2>&1 &
    local spid=$! w
    exec 4>"$in"
    echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;" >&4
    wait_until 6000 0.1 'in_state es_bench_snapshot "a.state = '"'idle in transaction'"'"'
    w=$(ms "$3" 2>&1) || true
    echo "SELECT count(*) FROM $2; COMMIT;" >&4
    exec 4>&-
    wait $spid || true
    rm -f "$in"
    printf '%-40s %s rows of %s after the write (%s ms); the older snapshot sees: %s\n' "$1" "$(psql -qXAt -c "SELECT count(*) FROM $2")" "$2" \
        "$w" "$(grep -v '^$' "$out" | tail -n +2 | tr '\n' ' ')" | tee -a "$RESULTS" >&2
}
snapshot "20m. UPDATE (20u)" hs.scores "$HS_UPDATE"
snapshot "20m. rename swap (20a)" hs.scores "$HEAP_SWAP"
snapshot "20m. partition swap (20b)" hs.pscores "$PART_SWAP"
snapshot "20m. TRUNCATE + INSERT (20c)" hs.scores "$TRUNC_SWAP"
fi

if want 5; then
log "5. parallel workers"
compare "5. score_events 2 workers vs 0 (speed-up)" ">= 5f" "$REPS" "$PAR" "$SCORE" "$SERIAL" "$SCORE"
compare "5f. the floor: 2 workers vs 0 (its speed-up)" "report" "$REPS" "$PAR" "$FLOOR" "$SERIAL" "$FLOOR"
fi

if want 9; then
# 9. A view source costs about what its own scan costs (issue 27, item 4): a view over
# engagement_events with text kinds (' Opened', ...) matched by kind_match trim_lower against the
# map ('OPENED': 'opened', ...) and a value column.  Its full refresh against its floor (count(*)
# by contact over the view), and that ratio over the native table's (its full refresh against
# $FLOOR): the item's figure, target 1.2.  Then where the view's time goes, each step against the
# view's floor, on the query a refresh runs (_source_select, _refresh_score_contacts) without its
# writes: (c) the floor reading the view's columns (the view's own kind expression, no mapping),
# (d) the floor over the source's select (the kind mapped, the validity CASEs), (e) plus the
# refresh's count of the rows not scored (count(e.skip): one reading of e.skip, whose every
# reading evaluates the skip CASE, the kind's mapping with it), (e2) plus the accounting the
# refresh did before b3f79a9 (array_agg, which has no combine function before PostgreSQL 16: the
# scoring statement ran without workers; and four readings of e.skip), (f) score_events over it,
# as the refresh scores a view source (the profile as a document), and (g) the same scoring of
# engagement_events, as the refresh scores it, against $FLOOR.
log "9. a full refresh over a view source (text kinds, trim_lower) vs over engagement_events, each against its floor"
view_source bench_sms view_source trim_lower
VFLOOR="SELECT sum(n) FROM (SELECT contact_id, count(*) AS n FROM bench_sms GROUP BY contact_id) s"
compare "9a. refresh_scores(full), engagement_events, vs its floor" "report" "$REPS" \
    "$PAR" "$FLOOR" "$PAR" "SELECT engagement.refresh_scores('default', true)"
R_NATIVE=$LAST_RATIO
compare "9b. refresh_scores(full), the view source, vs its floor" "report" "$REPS" \
    "$PAR" "$VFLOOR" "$PAR" "SELECT engagement.refresh_scores('view_source', true)"
R_VIEW=$LAST_RATIO
quotient "9. the view's ratio 9b over the table's 9a" "<= 1.2" "$R_NATIVE" "$R_VIEW"
# (the select a refresh binds as pg_temp._es_events, the profile document it scores with, and what
# _refresh_score_contacts adds to its scan: a source with kinds to map counts the rows not scored)
SRC_SELECT=$(psql -qXAt -v ON_ERROR_STOP=1 -c "SELECT engagement._source_select(s, 'public.bench_sms') FROM engagement.event_sources s
                                                WHERE s.relation = 'bench_sms'::regclass")
DOC=$(psql -qXAt -v ON_ERROR_STOP=1 -c "SET extra_float_digits = 3" -c "SELECT to_jsonb(p) FROM engagement.scoring_profiles p WHERE p.name = 'view_source'")
DOC=${DOC//\'/\'\'}
OLD_ACCOUNT="count(*) FILTER (WHERE e.skip = 2) AS unmapped, array_agg(e.kind) FILTER (WHERE e.skip = 2) AS unmapped_kinds,
             count(*) FILTER (WHERE e.skip = 1) AS ignored, array_agg(e.skip) FILTER (WHERE e.skip > 2) AS invalid"
OLD_ACCOUNT_SUMS="sum(q.unmapped), sum(cardinality(q.unmapped_kinds)), sum(q.ignored), sum(cardinality(q.invalid))"
log "9. the source's select: $SRC_SELECT"
compare "9c. the view's floor + reading its columns (its kinds as text)" "report" "$REPS" "$PAR" "$VFLOOR" "$PAR" \
    "SELECT sum(n), sum(k), sum(r) FROM (SELECT contact_id, count(*) AS n, count(kind) AS k, sum(revenue) AS r FROM bench_sms
                                          WHERE at <= now() GROUP BY contact_id) s"
compare "9d. the floor over the source's select (mapping, CASEs)" "report" "$REPS" "$PAR" "$VFLOOR" "$PAR" \
    "SELECT sum(n), sum(v) FROM (SELECT e.contact_id, count(e.event_type) AS n, sum(e.conversion_value) AS v FROM ($SRC_SELECT) e
                                  WHERE (e.occurred_at <= now() OR e.occurred_at IS NULL) GROUP BY e.contact_id) s"
compare "9e. 9d + the refresh's count of rows not scored" "report" "$REPS" "$PAR" "$VFLOOR" "$PAR" \
    "SELECT sum(q.n), sum(q.v), sum(q.skipped)
       FROM (SELECT e.contact_id, count(e.event_type) AS n, sum(e.conversion_value) AS v, count(e.skip) AS skipped
               FROM ($SRC_SELECT) e WHERE (e.occurred_at <= now() OR e.occurred_at IS NULL) GROUP BY e.contact_id) q"
compare "9e2. 9d + the accounting before b3f79a9 (array_agg)" "report" "$REPS" "$PAR" "$VFLOOR" "$PAR" \
    "SELECT sum(q.n), sum(q.v), $OLD_ACCOUNT_SUMS
       FROM (SELECT e.contact_id, count(e.event_type) AS n, sum(e.conversion_value) AS v, $OLD_ACCOUNT FROM ($SRC_SELECT) e
              WHERE (e.occurred_at <= now() OR e.occurred_at IS NULL) GROUP BY e.contact_id) q"
compare "9f. score_events over it as a refresh of the view, no writes" "report" "$REPS" "$PAR" "$VFLOOR" "$PAR" \
    "SELECT sum((q.s).composite), sum(q.skipped)
       FROM (SELECT e.contact_id, engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, now(), '$DOC'::jsonb) AS s,
                    count(e.skip) AS skipped
               FROM ($SRC_SELECT) e WHERE (e.occurred_at <= now() OR e.occurred_at IS NULL) GROUP BY e.contact_id) q"
compare "9g. score_events as a refresh of engagement_events, no writes" "report" "$REPS" "$PAR" "$FLOOR" "$PAR" \
    "SELECT sum((q.s).composite)
       FROM (SELECT e.contact_id, engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, now(), 'default') AS s
               FROM engagement.engagement_events e WHERE e.occurred_at <= now() GROUP BY e.contact_id) q"
fi

if want 13; then
# 13. The issue-16 layout: the same events in a CRM's own table hash-partitioned by contact
# (PARTS partitions, 8 by default), so that a worker scores whole contacts partition by partition
# under a Parallel Append (enable_partitionwise_aggregate, which the refresh sets for itself) and
# the leader combines no partial state.  Baseline and subject read the same partitioned table.
PARTS=${PARTS:-8}
log "13. events hash-partitioned by contact ($PARTS partitions), scored partitionwise"
psql -qX -v ON_ERROR_STOP=1 \
     -c "CREATE TABLE bench_part (LIKE engagement.engagement_events INCLUDING DEFAULTS) PARTITION BY HASH (contact_id)" \
     -c "DO \$\$ BEGIN FOR i IN 0 .. $PARTS - 1 LOOP
           EXECUTE format('CREATE TABLE bench_part_%s PARTITION OF bench_part FOR VALUES WITH (MODULUS $PARTS, REMAINDER %s)', i, i);
         END LOOP; END \$\$" \
     -c "INSERT INTO bench_part SELECT * FROM engagement.engagement_events ORDER BY id" \
     -c "VACUUM ANALYZE bench_part" \
     -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('partitioned', 'bench_part')" >/dev/null
PWISE="SET enable_partitionwise_aggregate = on"
PFLOOR=${FLOOR//engagement.engagement_events/bench_part}
PSCORE=${SCORE//engagement.engagement_events/bench_part}
compare "13. score_events vs the floor, partitioned, 2 workers" "<= 1.6" "$REPS" "$PAR;$PWISE" "$PFLOOR" "$PAR;$PWISE" "$PSCORE"
compare "13s. the same, both serial" "<= 1.4" "$REPS" "$SERIAL;$PWISE" "$PFLOOR" "$SERIAL;$PWISE" "$PSCORE"
compare "13w. score_events 2 workers vs 0, partitioned (speed-up)" ">= 13f" "$REPS" "$PAR;$PWISE" "$PSCORE" "$SERIAL;$PWISE" "$PSCORE"
compare "13f. the floor: 2 workers vs 0, partitioned (its speed-up)" "report" "$REPS" "$PAR;$PWISE" "$PFLOOR" "$SERIAL;$PWISE" "$PFLOOR"
compare "13u. score_events, 2 workers: partitioned vs not (speed-up)" "report" "$REPS" "$PAR;$PWISE" "$PSCORE" "$PAR" "$SCORE"
compare "13r. refresh_scores(full) of the partitioned source vs its floor" "<= 3" "$REPS" "$PAR;$PWISE" "$PFLOOR" "$PAR" \
    "SELECT engagement.refresh_scores('partitioned', true)"
fi

if want 6; then
log "6. bulk COPY of 1M events, change tracking on vs off"
psql -qX -c "CREATE DATABASE copybench"
psql -qX -d copybench -c "CREATE EXTENSION engagement_scoring"
mkdir -p "$WORK/copy" && chown postgres "$WORK/copy"   # the server writes and reads the file
psql -qXAt -c "COPY (SELECT contact_id, campaign_id, event_type, occurred_at, conversion_value, channel, device_type, metadata
                      FROM engagement.engagement_events ORDER BY id LIMIT 1000000) TO '$WORK/copy/events.copy'"
COPYSQL="COPY engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value, channel, device_type, metadata) FROM '$WORK/copy/events.copy'"
PGDATABASE=copybench compare "6. COPY 1M events: tracking on vs off" "<= 1.15" 3 \
    "ALTER TABLE engagement.engagement_events DISABLE TRIGGER USER" "$COPYSQL" \
    "ALTER TABLE engagement.engagement_events ENABLE TRIGGER USER" "$COPYSQL" \
    "TRUNCATE engagement.engagement_events, engagement.event_changes; CHECKPOINT"
fi

if want 7; then
log "7. engagement_score(contact) for a contact with 1,000 events"
psql -qX -c "INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)
             SELECT 999999999, i % 40, (ARRAY['delivered','opened','clicked','responded','converted'])[1 + i % 5]::engagement.event_type,
                    timestamptz '$AS_OF' - i * interval '7 hours', CASE WHEN i % 5 = 4 THEN 10 END
               FROM generate_series(1, 1000) i" -c "VACUUM ANALYZE engagement.engagement_events"
psql -qXAt >>"$RESULTS" <<SQL
CREATE TEMP TABLE t (kind text, ms float8);
DO \$\$
DECLARE t0 timestamptz; i int; r record;
BEGIN
    FOR i IN 1..300 LOOP
        t0 := clock_timestamp();
        PERFORM count(*) FROM engagement.engagement_events WHERE contact_id = 999999999 AND occurred_at <= now();
        INSERT INTO t VALUES ('count', extract(epoch FROM clock_timestamp() - t0) * 1000);
        t0 := clock_timestamp();
        PERFORM engagement.engagement_score(999999999, now());
        INSERT INTO t VALUES ('score', extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
END \$\$;
SELECT format('%-62s %10s %10s %8s   %s', '7. engagement_score (1,000 events) vs count(*) by the index',
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'count')::numeric, 3),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'score')::numeric, 3),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'score')
                     / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'count'))::numeric, 3),
              'report')
  FROM t;
SQL
tail -1 "$RESULTS" >&2
fi

if want 10; then
# 10. Single-row INSERTs (pgbench, 4 clients, 8 s a round) with change tracking on and off (the
# tracking triggers disabled), interleaved rounds in a database of their own (1M events to begin with).
log "10. single-row INSERT throughput, change tracking on vs off"
psql -qX -d postgres -c "CREATE DATABASE insbench"
psql -qX -d insbench -v ON_ERROR_STOP=1 -c "CREATE EXTENSION engagement_scoring" \
     -c "INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
         SELECT 1 + i % $CONTACTS, (ARRAY['delivered','opened','clicked'])[1 + i % 3]::engagement.event_type,
                timestamptz '$AS_OF' - (i % 9000) * interval '1 hour'
           FROM generate_series(1, 1000000) i" \
     -c "TRUNCATE engagement.event_changes" -c "VACUUM ANALYZE engagement.engagement_events" >/dev/null
printf '%s\n' "\\set c random(1, $CONTACTS)" \
    "INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (:c, 'clicked', now() - interval '1 minute');" \
    >"$WORK/insert.pgbench"
tps() { PGDATABASE=insbench "$PG_BIN/pgbench" -n -c 4 -j 2 -T "${INSERT_SECONDS:-8}" -f "$WORK/insert.pgbench" 2>/dev/null \
            | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }
for ((i = 0; i < REPS; i++)); do
    psql -qX -d insbench -c "ALTER TABLE engagement.engagement_events DISABLE TRIGGER USER"
    off=$(tps)
    psql -qX -d insbench -c "ALTER TABLE engagement.engagement_events ENABLE TRIGGER USER" -c "CHECKPOINT"
    on=$(tps)
    psql -qX -d insbench -c "CHECKPOINT"
    echo "$off $on"
done >"$WORK/insert.txt"
printf '%-62s %10.1f %10.1f %8.3f   %s\n' "10. single-row INSERT tps (4 clients): tracking on vs off" \
    "$(cut -d' ' -f1 "$WORK/insert.txt" | median)" "$(cut -d' ' -f2 "$WORK/insert.txt" | median)" \
    "$(awk '{print $2 / $1}' "$WORK/insert.txt" | median)" ">= 0.90 (tps)" | tee -a "$RESULTS" >&2
fi

if want 11; then
# 11. fit_mbgnbd on 1M distinct summaries (what fit_model feeds it: every row a distinct (x, t_x, t)),
# against a scan of the same rows; and on 1M summaries that repeat, serial and with 2 workers.
log "11. fit_mbgnbd on 1M summaries"
psql -qX -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE TABLE distinct_summaries AS
SELECT (i % 40)::int AS x, CASE WHEN i % 40 = 0 THEN 0 ELSE (i % 997)::float8 / 3 END AS t_x, 400 + (i / 40)::float8 AS t
  FROM generate_series(1, 1000000) i;
CREATE TABLE repeating_summaries AS
SELECT x, CASE WHEN x = 0 THEN 0 ELSE least(t, floor(t * ((i * 7919) % 1000) / 1000.0)) END::float8 AS t_x, t
  FROM (SELECT i, ((i * 104729) % 21)::int * ((i * 31) % 3 = 0)::int AS x, (30 + (i * 613) % 400)::float8 AS t
          FROM generate_series(1::bigint, 1000000) i) g;
VACUUM ANALYZE distinct_summaries; VACUUM ANALYZE repeating_summaries;
SQL
compare "11. fit_mbgnbd, 1M distinct summaries vs count(*) of them" "fit <= 2 s" "$REPS" \
    "$SERIAL" "SELECT count(*) FROM distinct_summaries" "$SERIAL" "SELECT (engagement.fit_mbgnbd(x, t_x, t)).r FROM distinct_summaries"
compare "11r. fit_mbgnbd, 1M repeating summaries: 2 workers vs serial" "report" "$REPS" \
    "$SERIAL" "SELECT (engagement.fit_mbgnbd(x, t_x, t)).r FROM repeating_summaries" \
    "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET min_parallel_table_scan_size = 0" \
    "SELECT (engagement.fit_mbgnbd(x, t_x, t)).r FROM repeating_summaries"
fi

if want 8; then
# 8. fit_model end to end (the summaries of every contact from its events, both fits, storing and
# recording them) and validate_model (calibration 60 days before as_of), each against computing the
# summaries alone: the scan of the events fit_model cannot avoid.  Interleaved, REPS rounds.
FIT_CONTACTS=${FIT_CONTACTS:-1000000}
log "8. the models on $FIT_CONTACTS contacts (generating their events first)"
psql -qX -d postgres -c "CREATE DATABASE fitbench"
psql -qX -d fitbench -c "CREATE EXTENSION engagement_scoring"
psql -qX -d fitbench -v ON_ERROR_STOP=1 -v contacts="$FIT_CONTACTS" -v as_of="'$AS_OF'" -f demo/generate_crm_events.sql >/dev/null
psql -qX -d fitbench -c "VACUUM ANALYZE engagement.engagement_events"
FIT_EVENTS=$(psql -qXAt -d fitbench -c "SELECT count(*) FROM engagement.engagement_events")
SUMMARIES="SELECT count((s).x) FROM (SELECT engagement.model_summary(event_type, occurred_at, conversion_value, '$AS_OF') AS s
             FROM engagement.engagement_events WHERE occurred_at <= '$AS_OF' GROUP BY contact_id) q"
FIT_MODEL="SELECT string_agg(model || ':' || converged, ' ') FROM engagement.fit_model('default', '$AS_OF', 'warning')"
VALIDATE="SELECT sum(contacts) FROM engagement.validate_model(timestamptz '$AS_OF' - interval '60 days', '$AS_OF')"
PGDATABASE=fitbench psql -qXAt -c "$FIT_MODEL" >&2   # warm the cache; says whether both fits converge
for ((i = 0; i < REPS; i++)); do
    a=$(PGDATABASE=fitbench ms "$SUMMARIES")
    b=$(PGDATABASE=fitbench ms "$FIT_MODEL")
    c=$(PGDATABASE=fitbench ms "$VALIDATE")
    echo "$a $b $c"
done >"$WORK/fit.txt"
printf '%-62s %10.1f %10.1f %8.3f   %s\n' "8. fit_model ($FIT_CONTACTS contacts) vs their summaries alone" \
    "$(cut -d' ' -f1 "$WORK/fit.txt" | median)" "$(cut -d' ' -f2 "$WORK/fit.txt" | median)" \
    "$(awk '{print $2 / $1}' "$WORK/fit.txt" | median)" "report" | tee -a "$RESULTS" >&2
printf '%-62s %10.1f %10.1f %8.3f   %s\n' "8b. validate_model (60-day holdout) vs the summaries alone" \
    "$(cut -d' ' -f1 "$WORK/fit.txt" | median)" "$(cut -d' ' -f3 "$WORK/fit.txt" | median)" \
    "$(awk '{print $3 / $1}' "$WORK/fit.txt" | median)" "report" | tee -a "$RESULTS" >&2
fi

if want 8 12 && [ -n "${FIT_EVENTS:-}" ]; then
# 12. The full refresh on section 8's data (FIT_CONTACTS contacts) against the floor on the same
# data: linear when its ratio is item 3's.
log "12. full refresh at $FIT_CONTACTS contacts"
PGDATABASE=fitbench compare "12. refresh_scores(full), $FIT_CONTACTS contacts, vs the floor" "item 3's ratio" "$REPS" \
    "$PAR" "$FLOOR" "$PAR" "SELECT engagement.refresh_scores('default', true)"
fi

echo
echo "data: $CONTACTS contacts, ${EVENTS:-(not generated)} events; section 8: ${FIT_CONTACTS:-(not run)} contacts, ${FIT_EVENTS:-} events; $(nproc) cores; huge pages $HUGE_PAGES; PostgreSQL $(psql -qXAt -c 'SHOW server_version')"
cat "$RESULTS"
