#!/usr/bin/env bash
# Scheduled refresh with the real pg_cron: the cluster of test/run_all.sh preloads pg_cron with
# cron.database_name = es_cron.  Without pg_cron the functions fail with a hint; with it,
# schedule_refresh is idempotent, a job actually runs and fills the scores table, and
# unschedule_refresh removes the jobs.  Prints TAP-style lines.
set -uo pipefail
export PGOPTIONS="-c client_min_messages=warning"
q() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }
. "$(dirname "$0")/../tap.sh"

q -d postgres -c "DROP DATABASE IF EXISTS es_nocron" -c "CREATE DATABASE es_nocron"
q -d es_nocron -c "CREATE EXTENSION engagement_scoring"
err=$(q -d es_nocron -c "\\set VERBOSITY verbose" -c "SELECT engagement.schedule_refresh()" 2>&1)
check "without pg_cron: SQLSTATE 55000 and a hint naming shared_preload_libraries" \
    '[[ "$err" == *"55000"* && "$err" == *"shared_preload_libraries"* && "$err" == *"cron.database_name"* ]]'
q -d postgres -c "DROP DATABASE es_nocron"

db=$(q -d postgres -c "SHOW cron.database_name")
q -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" -c "DROP EXTENSION IF EXISTS engagement_scoring CASCADE" \
  -c "CREATE EXTENSION engagement_scoring"
q -d "$db" -c "INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
               SELECT c % 40, (ARRAY['delivered','opened','clicked'])[1 + c % 3]::engagement.event_type,
                      date_trunc('day', now(), 'UTC') - (1 + c % 40) * interval '1 day' + c * interval '1 minute'
                 FROM generate_series(1, 400) c"
# A refit every minute too: each contact engages on its first day only (every x = 0), so the
# MBG/NBD fit cannot converge, with no penalty of fit_model's ladder either; the scheduled refit
# warns, records the failure and succeeds, and the next run comes.
q -d "$db" -c "SELECT engagement.schedule_refresh('default', '* * * * *', '17 3 * * *', '* * * * *')" >/dev/null
q -d "$db" -c "SELECT engagement.schedule_refresh('default', '* * * * *', '17 3 * * *', '* * * * *')" >/dev/null
jobs=$(q -d "$db" -c "SELECT string_agg(kind || ' ' || schedule || ' ' || command, '; ' ORDER BY kind) FROM engagement.refresh_jobs()")
check "scheduling twice leaves one job of each kind ($jobs)" \
    '[ "$jobs" = "full 17 3 * * * SELECT engagement.refresh_scores('"'default'"', true, '"'record'"'); incremental * * * * * SELECT engagement.refresh_scores('"'default'"', on_error => '"'record'"'); refit * * * * * SELECT engagement.fit_model('"'default'"', on_failure => '"'warning'"')" ]'
check "the jobs are pg_cron's" '[ "$(q -d "$db" -c "SELECT count(*) FROM cron.job WHERE jobname LIKE '"'engagement_scoring/default/%'"'")" = 3 ]'

# pg_cron runs at the top of each minute: wait for the incremental job to fill the table (polled,
# with a bound generous enough for a loaded machine: the outcome never depends on its speed).
wait_until 300 1 'n=$(q -d "$db" -c "SELECT count(*) FROM engagement.engagement_scores") && [ "$n" -gt 0 ]'
check "the scheduled job ran and scored the contacts ($n)" '[ "$n" = 40 ]'
job_status() { q -d "$db" -c "SELECT last_status FROM engagement.refresh_jobs() WHERE kind = '$1'"; }
wait_until 300 1 'status=$(job_status incremental) && [ "$status" = succeeded ]'
check "refresh_jobs reports the last run ($status)" '[ "$status" = succeeded ]'
last=$(q -d "$db" -c "SELECT last_refresh_rescored || ' ' || last_refresh_skipped || ' ' || coalesce(last_refresh_error, 'no error')
                        FROM engagement.refresh_jobs() WHERE kind = 'incremental'")
check "refresh_jobs shows the extension's record of that refresh beside pg_cron's ($last)" '[ "$last" = "40 false no error" ]'
wait_until 300 1 'refit=$(job_status refit) && [ "$refit" = succeeded ]'
fits=$(q -d "$db" -c "SELECT string_agg(model || ' ' || converged || ' ' || stored, ', ' ORDER BY model DESC)
                        FROM engagement.model_fits WHERE message IS NULL OR message LIKE '%the profile keeps%'")
check "a scheduled refit that does not converge succeeds as a job ($refit) and is recorded ($fits)" \
    '[ "$refit" = succeeded ] && [[ "$fits" == "mbgnbd false false, gammagamma "* ]]'

q -d "$db" -c "SELECT engagement.schedule_refresh('default', '*/10 * * * *', NULL)" >/dev/null
check "rescheduling changes the job and a NULL schedule removes one" \
    '[ "$(q -d "$db" -c "SELECT string_agg(kind || '"' '"' || schedule, '"', '"' ORDER BY kind) FROM engagement.refresh_jobs()")" = "incremental */10 * * * *" ]'
err=$(q -d "$db" -c "SELECT engagement.schedule_refresh('no_such_profile')" 2>&1)
check "an unknown profile is refused" '[[ "$err" == *"does not exist"* ]]'
removed=$(q -d "$db" -c "SELECT engagement.unschedule_refresh('default')")
check "unschedule_refresh removes the jobs" '[ "$removed" = 1 ] && [ "$(q -d "$db" -c "SELECT count(*) FROM engagement.refresh_jobs()")" = 0 ]'
q -d "$db" -c "DROP EXTENSION engagement_scoring CASCADE"

# The update to 1.4 makes the refit jobs of 1.3 (which called fit_model(profile), an error when a fit
# does not converge) warn and go on, as schedule_refresh now schedules them.
q -d "$db" -c "CREATE EXTENSION engagement_scoring VERSION '1.3'" \
  -c "SELECT engagement.schedule_refresh('default', '*/5 * * * *', NULL, '0 4 * * 0')" >/dev/null
before=$(q -d "$db" -c "SELECT string_agg(command, '; ' ORDER BY jobname) FROM cron.job WHERE jobname LIKE 'engagement_scoring/default/%'")
q -d "$db" -c "ALTER EXTENSION engagement_scoring UPDATE"
after=$(q -d "$db" -c "SELECT string_agg(command, '; ' ORDER BY jobname) FROM cron.job WHERE jobname LIKE 'engagement_scoring/default/%'")
check "the update to 1.4 turns 1.3's jobs ($before) into ones that record and warn ($after)" \
    '[ "$before" = "SELECT engagement.refresh_scores('"'default'"'); SELECT engagement.fit_model('"'default'"')" ] &&
     [ "$after" = "SELECT engagement.refresh_scores('"'default'"', on_error => '"'record'"'); SELECT engagement.fit_model('"'default'"', on_failure => '"'warning'"')" ]'
q -d "$db" -c "SELECT engagement.unschedule_refresh('default')" -c "DROP EXTENSION engagement_scoring CASCADE" >/dev/null
