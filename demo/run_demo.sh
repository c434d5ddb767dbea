#!/usr/bin/env bash
# demo/run_demo.sh: the main job.  Builds and installs the extension, starts a throwaway local
# cluster, loads a realistic synthetic SMS CRM (demo/generate_crm_events.sql), fits the prediction
# model, refreshes the scores table, schedules refreshes with pg_cron when it is installed, and
# prints the top contacts, the segments, one campaign's funnel and one explanation.  The cluster is
# stopped and removed at the end.  Usage: bash demo/run_demo.sh [contacts]   (default 5000)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
CONTACTS=${1:-5000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/cluster.sh
PORT=${ES_DEMO_PORT:-55434}
scratch_dir demo
step() { printf '\n==> %s\n' "$*"; }

step "building and installing engagement_scoring"
make -s -j2 >/dev/null && make -s install >/dev/null

CRON_CONF=()
if [ -f "$(pg_config --pkglibdir)/pg_cron.so" ]; then
    CRON_CONF=("shared_preload_libraries = 'pg_cron'" "cron.database_name = 'crm'" "cron.use_background_workers = on")
fi
step "starting a throwaway PostgreSQL 15 cluster on port $PORT${CRON_CONF:+ (with pg_cron)}"
cluster_start "$WORK/pg" "$PORT" "${CRON_CONF[@]}"
export PGHOST="$WORK/pg" PGPORT="$PORT" PGUSER=postgres PGDATABASE=crm
psql -qX -d postgres -c "CREATE DATABASE crm"
psql -qX -c "CREATE EXTENSION engagement_scoring"
psql -qXAt -c "SELECT 'engagement_scoring ' || extversion || ' installed in schema engagement' FROM pg_extension WHERE extname = 'engagement_scoring'"

step "loading $CONTACTS contacts' SMS engagement events (15 months up to now; deterministic generator)"
AS_OF=$(psql -qXAt -c "SELECT date_trunc('hour', now())")
psql -qX -v ON_ERROR_STOP=1 -v contacts="$CONTACTS" -v as_of="'$AS_OF'" -f demo/generate_crm_events.sql

if psql -qXAt -c "SELECT to_regprocedure('engagement.fit_model(text,timestamptz)') IS NOT NULL" | grep -q t; then
    step "fitting the MBG/NBD model to these contacts (maximum likelihood, in the database)"
    psql -qX -c "SELECT round(r::numeric, 4) AS r, round(alpha::numeric, 3) AS alpha, round(a::numeric, 4) AS a,
                        round(b::numeric, 4) AS b, round(log_likelihood::numeric, 1) AS log_likelihood, n AS contacts,
                        iterations, converged
                   FROM engagement.fit_model('default')"
fi

step "refreshing the scores table (engagement.refresh_scores)"
psql -qX -c '\timing on' -c "SELECT engagement.refresh_scores() AS contacts_scored"

if [ ${#CRON_CONF[@]} -gt 0 ]; then
    step "scheduling refreshes with pg_cron: incremental every 5 minutes, full nightly"
    psql -qX -c "CREATE EXTENSION pg_cron" \
             -c "SELECT engagement.schedule_refresh('default')" >/dev/null
    psql -qX -c "SELECT job_name, schedule, command FROM engagement.refresh_jobs()"
fi

step "top 10 contacts"
psql -qX -c "SELECT contact_id, round(composite::numeric, 1) AS score, round(percentile_rank::numeric, 1) AS pct, segment,
                    round(recency::numeric, 1) AS recency, round(frequency::numeric, 1) AS frequency,
                    round(monetary::numeric, 1) AS monetary, round(engagement_probability::numeric, 3) AS p_engage_30d,
                    round(churn_risk::numeric, 3) AS churn_risk, conversion_total
               FROM engagement.engagement_scores WHERE profile = 'default'
              ORDER BY composite DESC, contact_id LIMIT 10"

step "segments"
psql -qX -c "SELECT segment, contacts, round((100 * share)::numeric, 1) AS pct, round(mean_score::numeric, 1) AS mean_score
               FROM engagement.segment_summary()"

CAMPAIGN=$(psql -qXAt -c "SELECT campaign_id FROM engagement.engagement_events WHERE campaign_id IS NOT NULL
                           GROUP BY campaign_id ORDER BY max(occurred_at) DESC, campaign_id LIMIT 1")
step "funnel of the latest campaign ($CAMPAIGN)"
psql -qX -c "SELECT stage, contacts, events, round(rate_from_previous::numeric, 3) AS from_previous,
                    round(rate_from_delivered::numeric, 3) AS from_delivered
               FROM engagement.funnel($CAMPAIGN)"

step "why the top contact scores what it does"
psql -qXAt -c "SELECT engagement.explain_score(contact_id) FROM engagement.engagement_scores
                WHERE profile = 'default' ORDER BY composite DESC, contact_id LIMIT 1"

step "done: the cluster is stopped and removed"
