#!/usr/bin/env bash
# Concurrent-ingest soak (issue 11): incremental refreshes lose no change under a concurrent load.
# A database of its own with the extension, a second profile (`other`, different parameters) and
# an initial load (a few thousand contacts, some events dated up to ~45 s in the future), fully
# refreshed once.  Then, for ES_SOAK_SECONDS (35 by default), pgbench writers (single- and
# multi-row INSERTs, some dated a few seconds in the future; UPDATEs of occurred_at, event_type,
# conversion_value, contact_id and of unscored columns; DELETEs of events and of whole contacts;
# multi-statement and rolled-back transactions) run against pgbench refreshers (incremental
# refresh_scores of `default` and `other`, concurrently) and a loop of full refreshes of each
# profile in turn.  After the load: wait until every event is due, one last *incremental* refresh
# of each profile, then every stored score must equal a from-scratch computation as of its
# calculated_at, every contact with events must be scored (and only those), nothing may be left
# pending or in the change log, no client may have failed and the server may report no deadlock.
# Runs against the cluster of test/run_all.sh (PGHOST, PGPORT, PGUSER set).  Prints TAP-style
# lines; on a failure, the offending counts and a few example rows as "# " comments.
#
# Settings (all optional): ES_SOAK_SECONDS (the load's duration), ES_SOAK_WRITE_RATE (writer
# transactions per second, all writers together; 150), ES_SOAK_MAX_SCORE_AGE (max_score_age of
# `other`; 3 seconds by default, so that its incremental refreshes also rescore aged scores, the
# path on which two profiles' refreshes once deadlocked; empty keeps the profile default of 1 day),
# ES_KEEP=1 (keep the database and the work files).
set -uo pipefail
export PGOPTIONS="-c client_min_messages=warning"
WORK=${ES_WORK:-/tmp}/concurrent_ingest
rm -rf "$WORK" && mkdir -p "$WORK" && chmod 777 "$WORK"
DB=es_soak
SECONDS_LOAD=${ES_SOAK_SECONDS:-35}
WRITE_RATE=${ES_SOAK_WRITE_RATE:-150}
CONTACTS=3000          # the initial load's contacts; the writers also create up to NEW_CONTACTS more
NEW_CONTACTS=300
WRITERS=4              # pgbench writer clients (-j 2); contacts are split between them by residue
REFRESHERS=2           # pgbench refresher clients (-j 1)
q() { psql -qXAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
. "$(dirname "$0")/../tap.sh"
# show TITLE SQL: a few example rows of a failed check, as TAP comments
show() { echo "# $1:"; psql -qXA -F ' | ' -P footer=off -d "$DB" -c "$2" 2>&1 | head -8 | sed 's/^/#   /'; }
started=$(date +%s)

BIN=$(pg_config --bindir)
PGBENCH=$BIN/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench || true)
if [ -z "$PGBENCH" ] || [ ! -x "$PGBENCH" ]; then
    echo "not ok - pgbench is available (in $BIN or on PATH)"
    exit 1
fi

# The server's log, to look for deadlocks (the clusters of scripts/cluster.sh log to
# $PGHOST/server.log); the database's deadlock counter is checked as well.
SERVER_LOG=
[ -n "${PGHOST:-}" ] && [ -r "$PGHOST/server.log" ] && SERVER_LOG=$PGHOST/server.log
log_offset=0
[ -n "$SERVER_LOG" ] && log_offset=$(stat -c %s "$SERVER_LOG")

psql -qXAt -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" || {
    echo "not ok - database $DB is created"; exit 1; }

# ------------------------------------------------------------------------------------------------
# Set-up: extension, second profile, initial load (2% of the events 5-45 s in the future), the
# first (full) refresh of each profile, and the test's own helpers (in schema public).
# ------------------------------------------------------------------------------------------------
q -v contacts=$CONTACTS -v max_age="${ES_SOAK_MAX_SCORE_AGE-3 seconds}" >"$WORK/setup.log" 2>&1 <<'SQL'
CREATE EXTENSION engagement_scoring;
INSERT INTO engagement.scoring_profiles (name, description, lookback_days, recency_tau_days, frequency_min_days,
       half_life_days, weight_recency, weight_frequency, weight_monetary, weight_time_decay, weight_diversity,
       model_r, model_alpha, history_min_delta)
VALUES ('other', 'concurrent_ingest: different parameters', 90, 10, 3, 5, 0.2, 0.2, 0.3, 0.2, 0.1, 0.4, 6, 0.5);
SELECT :'max_age' <> '' AS set_max_age \gset
\if :set_max_age
UPDATE engagement.scoring_profiles SET max_score_age = :'max_age' WHERE name = 'other';
\endif
SELECT setseed(0.11);
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value, channel)
SELECT c, c % 17, t, at, CASE WHEN t = 'converted' THEN round((random() * 400)::numeric, 2) END,
       (ARRAY['sms', 'mms', 'email'])[1 + c % 3]
  FROM (SELECT c, (enum_range(NULL::engagement.event_type))[1 + floor(random() * 7)::int] AS t,
               CASE WHEN random() < 0.02 THEN now() + interval '5 seconds' + random() * interval '40 seconds'
                    ELSE now() - random() * interval '200 days' END AS at
          FROM generate_series(1, :contacts) c, generate_series(1, 1 + (c * 7919) % 25) k) x;
ANALYZE engagement.engagement_events;
SELECT engagement.refresh_scores('default');
SELECT engagement.refresh_scores('other');

-- Every refresh of the load, with what it returned (NULL: another refresh of the profile held it off).
CREATE TABLE public.soak_refreshes (profile text, full_refresh boolean, started timestamptz,
                                    finished timestamptz DEFAULT clock_timestamp(), rescored bigint);
-- Floats equal to 1e-9 relative (absolute 1e-12 below 1e-3: the components are 0..100, the
-- probabilities 0..1).
CREATE FUNCTION public.soak_close(a float8, b float8) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT a IS NOT DISTINCT FROM b OR abs(a - b) <= 1e-9 * greatest(abs(a), abs(b), 1e-3) $$;
-- Every stored score against a from-scratch score_events over its contact's events at or before
-- its calculated_at: the fields that differ (none: an empty array).
CREATE VIEW public.soak_score_check AS
WITH fresh AS (
    SELECT s.profile, s.contact_id,
           engagement.score_events(e.event_type, e.occurred_at, e.conversion_value, s.calculated_at, s.profile) AS f
      FROM engagement.engagement_scores s
      LEFT JOIN engagement.engagement_events e ON e.contact_id = s.contact_id AND e.occurred_at <= s.calculated_at
     GROUP BY s.profile, s.contact_id)
SELECT s.profile, s.contact_id, s.calculated_at, s.event_count, (n.f).event_count AS fresh_event_count,
       s.composite, (n.f).composite AS fresh_composite,
       array_remove(ARRAY[
           CASE WHEN n.f IS NULL THEN 'no event at or before calculated_at' END,
           CASE WHEN NOT soak_close(s.composite, (n.f).composite) THEN 'composite' END,
           CASE WHEN NOT soak_close(s.recency, (n.f).recency) THEN 'recency' END,
           CASE WHEN NOT soak_close(s.frequency, (n.f).frequency) THEN 'frequency' END,
           CASE WHEN NOT soak_close(s.monetary, (n.f).monetary) THEN 'monetary' END,
           CASE WHEN NOT soak_close(s.time_decay, (n.f).time_decay) THEN 'time_decay' END,
           CASE WHEN NOT soak_close(s.diversity, (n.f).diversity) THEN 'diversity' END,
           CASE WHEN NOT soak_close(s.engagement_probability, (n.f).engagement_probability) THEN 'engagement_probability' END,
           CASE WHEN NOT soak_close(s.conversion_probability, (n.f).conversion_probability) THEN 'conversion_probability' END,
           CASE WHEN NOT soak_close(s.churn_risk, (n.f).churn_risk) THEN 'churn_risk' END,
           CASE WHEN NOT soak_close(s.expected_engagements_30d, (n.f).expected_engagements_30d) THEN 'expected_engagements_30d' END,
           CASE WHEN s.segment IS DISTINCT FROM (n.f).segment THEN 'segment' END,
           CASE WHEN s.opted_out IS DISTINCT FROM (n.f).opted_out THEN 'opted_out' END,
           CASE WHEN s.event_count IS DISTINCT FROM (n.f).event_count THEN 'event_count' END,
           CASE WHEN s.engaging_count IS DISTINCT FROM (n.f).engaging_count THEN 'engaging_count' END,
           CASE WHEN s.conversion_total IS DISTINCT FROM (n.f).conversion_total THEN 'conversion_total' END,
           CASE WHEN s.first_event_at IS DISTINCT FROM (n.f).first_event_at THEN 'first_event_at' END,
           CASE WHEN s.last_engaged_at IS DISTINCT FROM (n.f).last_engaged_at THEN 'last_engaged_at' END,
           CASE WHEN s.profile_version IS DISTINCT FROM p.version THEN 'profile_version' END], NULL) AS differs
  FROM engagement.engagement_scores s
  JOIN fresh n USING (profile, contact_id)
  JOIN engagement.scoring_profiles p ON p.name = s.profile;
SQL
rc=$?
check "set-up: extension, profile other, $CONTACTS contacts' events, a first refresh of each profile" '[ $rc -eq 0 ]' \
    || { sed 's/^/# /' "$WORK/setup.log"; exit 1; }
initial=$(q -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE occurred_at > now()),
                              (SELECT count(*) FROM engagement.pending_rescore) FROM engagement.engagement_events")
echo "# initial load: events, of which in the future, pending rows: $initial"

# ------------------------------------------------------------------------------------------------
# The load.  Writers: row-locking statements that hold more than one row lock (multi-statement
# transactions, deleting a whole contact, moving an event to another contact) stay within the
# client's own residue class of contacts ((c - 1) % WRITERS = client_id), so writers cannot deadlock
# with each other: any deadlock is the extension's.  Single-row statements touch any contact.
# ------------------------------------------------------------------------------------------------
S=$WORK/scripts
mkdir -p "$S"
# :k random events (per row g: type, time, value), for INSERT ... SELECT
EVENT_ROWS="SELECT g, t, CASE WHEN r < 0.12 THEN now() + random() * interval '6 seconds'
                             WHEN r < 0.35 THEN now() - random() * interval '3 seconds'
                             ELSE now() - random() * interval '200 days' END AS at,
                   CASE WHEN t = 'converted' THEN round((random() * 400)::numeric, 2) END AS v
              FROM (SELECT g, (enum_range(NULL::engagement.event_type))[1 + floor(random() * 7)::int] AS t,
                           random() AS r FROM generate_series(1, :k) g) x"
INS="INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)"
ONE_OF="(SELECT id FROM engagement.engagement_events WHERE contact_id = :c ORDER BY random() LIMIT 1)"
# a new time: a few seconds in the future, or moved by up to 10 days but not into the future
NEW_TIME="CASE WHEN random() < 0.2 THEN now() + random() * interval '6 seconds'
               ELSE least(occurred_at + (random() - 0.5) * interval '20 days', now()) END"
ANY_CONTACT='\set c random(1, :contacts)'
OWN_CONTACT='\set c 1 + :client_id + :writers * random(0, (:contacts - 1) / :writers - 1)'
cat >"$S/insert_one.sql" <<EOF
$ANY_CONTACT
\set k 1
$INS SELECT :c, :c % 17, t, at, v FROM ($EVENT_ROWS) y;
EOF
cat >"$S/insert_multi.sql" <<EOF
$ANY_CONTACT
\set k random(2, 6)
$INS SELECT :c + g % 3, :c % 17, t, at, v FROM ($EVENT_ROWS) y;   -- over three contacts
EOF
cat >"$S/update_time.sql" <<EOF
$ANY_CONTACT
UPDATE engagement.engagement_events SET occurred_at = $NEW_TIME WHERE id = $ONE_OF;
EOF
cat >"$S/update_type.sql" <<EOF
$ANY_CONTACT
UPDATE engagement.engagement_events e
   SET event_type = x.t, conversion_value = CASE WHEN x.t = 'converted' THEN round((random() * 400)::numeric, 2) END
  FROM (SELECT (enum_range(NULL::engagement.event_type))[1 + floor(random() * 7)::int] AS t) x
 WHERE e.id = $ONE_OF;
EOF
cat >"$S/update_value.sql" <<EOF
$ANY_CONTACT
UPDATE engagement.engagement_events SET conversion_value = round((random() * 400)::numeric, 2)
 WHERE id = (SELECT id FROM engagement.engagement_events WHERE contact_id = :c AND event_type = 'converted'
              ORDER BY random() LIMIT 1);
EOF
# unscored columns only: no change to log, the scores stay right
cat >"$S/update_noise.sql" <<EOF
$ANY_CONTACT
UPDATE engagement.engagement_events SET channel = (ARRAY['sms', 'mms', 'web'])[1 + floor(random() * 3)::int],
       metadata = jsonb_build_object('touched', clock_timestamp()), campaign_id = campaign_id + 1
 WHERE id = $ONE_OF;
EOF
cat >"$S/move_event.sql" <<EOF
$OWN_CONTACT
\set d 1 + :client_id + :writers * random(0, (:contacts - 1) / :writers - 1)
UPDATE engagement.engagement_events SET contact_id = :d WHERE id = $ONE_OF;
EOF
cat >"$S/delete_one.sql" <<EOF
$ANY_CONTACT
DELETE FROM engagement.engagement_events WHERE id = $ONE_OF;
EOF
cat >"$S/delete_contact.sql" <<EOF
$OWN_CONTACT
DELETE FROM engagement.engagement_events WHERE contact_id = :c;
EOF
cat >"$S/transaction.sql" <<EOF
$OWN_CONTACT
\set k random(1, 3)
BEGIN;
$INS SELECT :c, :c % 17, t, at, v FROM ($EVENT_ROWS) y;
UPDATE engagement.engagement_events SET occurred_at = $NEW_TIME WHERE id = $ONE_OF;
DELETE FROM engagement.engagement_events WHERE id = $ONE_OF;
COMMIT;
EOF
cat >"$S/rolled_back.sql" <<EOF
$OWN_CONTACT
\set k 2
BEGIN;
$INS SELECT :c, :c % 17, t, at, v FROM ($EVENT_ROWS) y;
DELETE FROM engagement.engagement_events WHERE id = $ONE_OF;
ROLLBACK;
EOF
# refreshers: back to back but for a pause of 0-10 ms (a refresh held off returns at once)
for p in default other; do
    printf '%s\n' '\set pause random(0, 10)' '\sleep :pause ms' \
        "INSERT INTO public.soak_refreshes (profile, full_refresh, started, rescored)
         SELECT '$p', false, now(), engagement.refresh_scores('$p');" >"$S/refresh_$p.sql"
done

# contacts up to CONTACTS + NEW_CONTACTS: the writers create new contacts too
# (fixed seeds: the clients' choices are the same in every run; the interleaving is not, and no
# check depends on it)
common=(-n -D contacts=$((CONTACTS + NEW_CONTACTS)) -D writers=$WRITERS -T "$SECONDS_LOAD" --failures-detailed --random-seed=7919)
load_start=$(date +%s)
"$PGBENCH" "${common[@]}" -c $WRITERS -j 2 -R "$WRITE_RATE" \
    -f "$S/insert_one.sql@6" -f "$S/insert_multi.sql@3" -f "$S/update_time.sql@3" -f "$S/update_type.sql@2" \
    -f "$S/update_value.sql@1" -f "$S/update_noise.sql@1" -f "$S/move_event.sql@1" -f "$S/delete_one.sql@3" \
    -f "$S/delete_contact.sql@1" -f "$S/transaction.sql@2" -f "$S/rolled_back.sql@1" \
    "$DB" >"$WORK/writers.log" 2>&1 &
writers_pid=$!
"$PGBENCH" "${common[@]}" -c $REFRESHERS -j 1 -f "$S/refresh_default.sql@1" -f "$S/refresh_other.sql@1" \
    "$DB" >"$WORK/refreshers.log" 2>&1 &
refreshers_pid=$!
# full refreshes, each profile in turn, while the writers run, and at least one of each: each is
# tried again until it runs (an incremental one may hold the profile's lock), boundedly
(
    n=0
    while [ "$n" -lt 2 ] || kill -0 "$writers_pid" 2>/dev/null; do
        p=$([ $((n % 2)) -eq 0 ] && echo default || echo other)
        for _ in $(seq 1 2000); do
            r=$(q -c "INSERT INTO public.soak_refreshes (profile, full_refresh, started, rescored)
                      SELECT '$p', true, now(), engagement.refresh_scores('$p', true) RETURNING rescored" 2>>"$WORK/full.log") \
                || { echo "full refresh of $p failed" >>"$WORK/full.log"; break; }
            [ -n "$r" ] && break
            sleep 0.05
        done
        n=$((n + 1))
        sleep 3
    done
) &
fulls_pid=$!
wait $writers_pid; writers_rc=$?
wait $refreshers_pid; refreshers_rc=$?
wait $fulls_pid
load_end=$(date +%s)

# pgbench: exit status 0, no failed transaction (serialization or deadlock failures are counted
# there), no aborted client (any other error aborts one).
pgbench_ok() {  # LOG RC
    local failed
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$1")
    [ "$2" -eq 0 ] && [ "${failed:-x}" = 0 ] && ! grep -qiE 'aborted|error' "$1"
}
for who in writers refreshers; do
    log=$WORK/$who.log; rc_var=${who}_rc
    done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
    failed=$(sed -n 's/^number of failed transactions: \(.*\)/\1/p' "$log")
    check "pgbench $who: ${done_tx:-?} transactions, failed: ${failed:-?}, no client aborted (exit ${!rc_var})" \
        'pgbench_ok "$log" "${!rc_var}"' \
        || { grep -iE 'aborted|error|failed|serialization|deadlock' "$log" | head -12 | sed 's/^/# /'; }
done
check "the full refreshes ran without error" '! grep -q failed "$WORK/full.log"' || sed 's/^/# /' "$WORK/full.log" | head -12
stats=$(q -F ' ' -c "SELECT profile || ': ' || count(*) FILTER (WHERE NOT full_refresh) || ' incremental ('
                            || count(*) FILTER (WHERE NOT full_refresh AND rescored IS NULL) || ' held off, '
                            || coalesce(sum(rescored) FILTER (WHERE NOT full_refresh), 0) || ' contacts rescored), '
                            || count(*) FILTER (WHERE full_refresh AND rescored IS NOT NULL) || ' full'
                       FROM public.soak_refreshes GROUP BY profile ORDER BY profile")
check "the load ran both kinds of refresh of each profile ($(echo "$stats" | paste -sd';' | sed 's/;/; /g'))" \
    '[ "$(q -c "SELECT count(*) FROM (SELECT profile FROM public.soak_refreshes WHERE rescored IS NOT NULL
                GROUP BY profile HAVING bool_or(full_refresh) AND bool_or(NOT full_refresh)) x")" = 2 ]'

# ------------------------------------------------------------------------------------------------
# Wait until every event is due, then one last incremental refresh of each profile, as of F[p].
# ------------------------------------------------------------------------------------------------
all_due="SELECT coalesce(max(occurred_at) < now(), true) FROM engagement.engagement_events"
wait_start=$(date +%s); due=no
wait_until 120 1 '[ "$(q -c "$all_due")" = t ]' && due=yes
waited=$(( $(date +%s) - wait_start ))
check "every event is due after the load (waited ${waited}s)" '[ $due = yes ]'
declare -A F
for p in default other; do
    IFS='|' read -r F[$p] rescored < <(q -c "SELECT now(), engagement.refresh_scores('$p')")
    check "a final incremental refresh of $p ran (rescored ${rescored:-NULL} contacts)" '[ -n "$rescored" ]'
done

# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------
echo "# after the load: $(q -F ' ' -c "SELECT count(*) || ' events of ' || count(DISTINCT contact_id) || ' contacts, '
        || (SELECT count(*) FROM engagement.engagement_scores) || ' stored scores'
        FROM engagement.engagement_events")"
for p in default other; do
    f=${F[$p]}
    unscored="SELECT DISTINCT e.contact_id FROM engagement.engagement_events e
                WHERE NOT EXISTS (SELECT FROM engagement.engagement_scores s WHERE s.profile = '$p' AND s.contact_id = e.contact_id)"
    n=$(q -c "SELECT count(*) FROM ($unscored) x")
    check "$p: every contact with events has a stored score ($n without)" '[ "$n" = 0 ]' \
        || show "contacts without a $p score, with their events" \
                "SELECT e.contact_id, count(*) AS events, min(e.occurred_at), max(e.occurred_at), max(e.created_at) AS last_created
                   FROM engagement.engagement_events e WHERE e.contact_id IN ($unscored) GROUP BY 1 ORDER BY 1 LIMIT 5"
    orphans="SELECT s.contact_id, s.calculated_at, s.event_count FROM engagement.engagement_scores s
              WHERE s.profile = '$p' AND NOT EXISTS (SELECT FROM engagement.engagement_events e WHERE e.contact_id = s.contact_id)"
    n=$(q -c "SELECT count(*) FROM ($orphans) x")
    check "$p: every stored score's contact has events ($n without)" '[ "$n" = 0 ]' \
        || show "$p scores of contacts without events" "$orphans ORDER BY 1 LIMIT 5"

    bad="SELECT * FROM public.soak_score_check WHERE profile = '$p' AND cardinality(differs) > 0"
    n=$(q -c "SELECT count(*) FROM ($bad) x")
    total=$(q -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = '$p'")
    check "$p: every stored score equals score_events over its events at or before its calculated_at ($n of $total differ)" \
        '[ "$n" = 0 ] && [ "$total" -gt 0 ]' \
        || show "$p scores that differ (stored vs from scratch)" \
                "SELECT contact_id, calculated_at, event_count, fresh_event_count, composite, fresh_composite, differs
                   FROM ($bad) x ORDER BY contact_id LIMIT 5"

    # A lost change: the stored event_count against the live count of the contact's events at or
    # before its calculated_at, and at or before the final refresh (a score left behind by a lost
    # change is consistent as of its own calculated_at, but not as of the final refresh).
    for as_of in s.calculated_at "'$f'"; do
        miscount="SELECT s.contact_id, s.calculated_at, s.event_count,
                         (SELECT count(*) FROM engagement.engagement_events e
                           WHERE e.contact_id = s.contact_id AND e.occurred_at <= $as_of) AS live_count
                    FROM engagement.engagement_scores s WHERE s.profile = '$p'"
        n=$(q -c "SELECT count(*) FROM ($miscount) x WHERE event_count <> live_count")
        what=$([ "$as_of" = s.calculated_at ] && echo "its calculated_at" || echo "the final refresh")
        check "$p: every event_count is the live count of the contact's events at or before $what ($n differ)" '[ "$n" = 0 ]' \
            || show "$p event counts that differ" "SELECT * FROM ($miscount) x WHERE event_count <> live_count ORDER BY 1 LIMIT 5"
    done
    # an event that became due (or was written) after a contact's scoring, before the final refresh
    late="SELECT s.contact_id, s.calculated_at, count(*) AS unreflected, min(e.occurred_at), max(e.created_at) AS last_created
            FROM engagement.engagement_scores s
            JOIN engagement.engagement_events e ON e.contact_id = s.contact_id
                 AND e.occurred_at > s.calculated_at AND e.occurred_at <= '$f'
           WHERE s.profile = '$p' GROUP BY 1, 2"
    n=$(q -c "SELECT count(*) FROM ($late) x")
    check "$p: no contact has events between its calculated_at and the final refresh that its score does not reflect ($n)" \
        '[ "$n" = 0 ]' || show "$p contacts with unreflected events" "$late ORDER BY 1 LIMIT 5"

    stuck="SELECT pr.contact_id FROM engagement.pending_rescore pr
            WHERE pr.profile = '$p'
              AND NOT EXISTS (SELECT FROM engagement.engagement_events e
                               WHERE e.contact_id = pr.contact_id AND e.occurred_at > '$f')"
    n=$(q -c "SELECT count(*) FROM ($stuck) x")
    check "$p: no pending_rescore row left whose contact has no event after the final refresh ($n)" '[ "$n" = 0 ]' \
        || show "$p pending contacts" "$stuck ORDER BY 1 LIMIT 5"

    # the stored distribution (percentiles) is the multiset of the stored composites
    dist="SELECT s.contact_id, s.composite, engagement._count_below(d.sorted_composites, s.composite) AS below_in_distribution,
                 rank() OVER (ORDER BY s.composite) - 1 AS below_in_scores
            FROM engagement.engagement_scores s JOIN engagement.score_distributions d ON d.profile = s.profile
           WHERE s.profile = '$p'"
    n=$(q -c "SELECT count(*) FROM ($dist) x WHERE below_in_distribution <> below_in_scores")
    counts=$(q -c "SELECT d.contacts || '/' || (SELECT count(*) FROM engagement.engagement_scores s WHERE s.profile = d.profile)
                     FROM engagement.score_distributions d WHERE d.profile = '$p'")
    check "$p: the score distribution holds the stored composites (contacts $counts, $n ranks differ)" \
        '[ "$n" = 0 ] && [ -n "$counts" ] && [ "${counts%/*}" = "${counts#*/}" ]' \
        || show "$p ranks that differ" "SELECT * FROM ($dist) x WHERE below_in_distribution <> below_in_scores ORDER BY 2 LIMIT 5"
done
n=$(q -c "SELECT count(*) FROM engagement.event_changes")
check "the change log is empty after the final refreshes ($n rows)" '[ "$n" = 0 ]' \
    || show "change log rows" "SELECT contact_id, count(*) FROM engagement.event_changes GROUP BY 1 ORDER BY 1 LIMIT 5"

# No deadlock: the database's counter and, when readable, the server log since this test began.
deadlocks=$(q -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
logged=0
if [ -n "$SERVER_LOG" ]; then
    tail -c +$((log_offset + 1)) "$SERVER_LOG" >"$WORK/server.log"
    logged=$(grep -c 'deadlock detected' "$WORK/server.log")
fi
where="server log not readable"
[ -n "$SERVER_LOG" ] && where="$logged in the server log"
check "no deadlock (pg_stat_database: $deadlocks; $where)" \
    '[ "$deadlocks" = 0 ] && [ "$logged" = 0 ]' \
    || { [ -n "$SERVER_LOG" ] && grep -A3 'deadlock detected' "$WORK/server.log" | head -16 | sed 's/^/# /'; }

echo "# load $((load_end - load_start))s, waited ${waited}s for future events, $(( $(date +%s) - started ))s in all"
if [ -z "${ES_KEEP:-}" ]; then
    psql -qXAt -d postgres -c "DROP DATABASE $DB"
    rm -rf "$WORK"
fi
