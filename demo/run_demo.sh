#!/usr/bin/env bash
# demo/run_demo.sh: the main job.  Installs the packages it needs when they are missing
# (scripts/ensure_deps.sh demo), builds and installs the extension, starts a throwaway local
# cluster, loads a realistic synthetic SMS CRM (demo/generate_crm_events.sql), fits the prediction
# models (with standard errors) and checks them on a holdout, refreshes the scores table, schedules refreshes with pg_cron when it is installed,
# prints the top contacts, the segments, the scores' histogram, one campaign's funnel and one
# explanation, and writes an HTML report with charts of them (demo/report.py, matplotlib) whose path
# it prints (ES_DEMO_REPORT, default demo/out/report.html).  The cluster is stopped and removed at the end.  Stops at the first failure with a message naming the step (a
# failed build starts no cluster).  Usage: bash demo/run_demo.sh [contacts]   (default 5000)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "run_demo.sh: run it as root (it installs packages and the extension)" >&2; exit 1; }
    exec sudo -E bash "$0" "$@"
fi
CONTACTS=${1:-5000}
[[ $CONTACTS =~ ^[1-9][0-9]{0,8}$ ]] || { echo "usage: bash demo/run_demo.sh [contacts]   (a positive number; default 5000)" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
STEP="starting"
step() { STEP=$*; printf '\n==> %s\n' "$*"; }
# A failing command stops the script (set -e): say in which step.
trap 'echo "run_demo.sh: FAILED while ${STEP} (messages above)" >&2' ERR
# psql that stops at, and exits non-zero on, the first SQL error.
q() { psql -qX -v ON_ERROR_STOP=1 "$@"; }

step "checking the packages the demo needs"
bash scripts/ensure_deps.sh demo

. scripts/cluster.sh
PORT=${ES_DEMO_PORT:-55434}
scratch_dir demo

step "building and installing engagement_scoring"
if ! { make -s -j2 && make -s install; } >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    echo "run_demo.sh: FAILED: the build did not succeed (the end of its log is above); no cluster was started" >&2
    exit 1
fi

CRON_CONF=()
if [ -f "$(pg_config --pkglibdir)/pg_cron.so" ]; then
    CRON_CONF=("shared_preload_libraries = 'pg_cron'" "cron.database_name = 'crm'" "cron.use_background_workers = on")
fi
step "starting a throwaway PostgreSQL 15 cluster on port $PORT${CRON_CONF:+ (with pg_cron)}"
cluster_start "$WORK/pg" "$PORT" "${CRON_CONF[@]}"
export PGHOST="$WORK/pg" PGPORT="$PORT" PGUSER=postgres PGDATABASE=crm
q -d postgres -c "CREATE DATABASE crm"
q -c "CREATE EXTENSION engagement_scoring"
q -At -c "SELECT 'engagement_scoring ' || extversion || ' installed in schema engagement' FROM pg_extension WHERE extname = 'engagement_scoring'"

step "loading $CONTACTS contacts' SMS engagement events (15 months up to now; deterministic generator)"
AS_OF=$(q -At -c "SELECT date_trunc('hour', now())")
q -v contacts="$CONTACTS" -v as_of="'$AS_OF'" -f demo/generate_crm_events.sql

step "fitting the models to these contacts (maximum likelihood in the database): MBG/NBD for engagement days, Gamma-Gamma for conversion value"
q -c "SELECT f.model, p.key AS parameter, round(p.value::numeric, 4) AS estimate,
             round((f.standard_errors ->> p.key)::numeric, 4) AS standard_error,
             round(f.log_likelihood::numeric, 1) AS log_likelihood, f.contacts, f.converged,
             coalesce(f.message, '') AS message
        FROM engagement.fit_model('default', on_failure => 'warning') f,
             jsonb_each_text(f.parameters) p
       ORDER BY f.model DESC, p.key"

step "holdout check: the model fitted to the events up to 60 days ago, against what each contact did since"
CAL=$(q -At -c "SELECT timestamptz '$AS_OF' - interval '60 days'")
q -c "SELECT x_bucket AS engagement_days_before, contacts, round(predicted::numeric, 3) AS predicted_days_since,
             round(actual::numeric, 3) AS actual_days_since
        FROM engagement.validate_model('$CAL', '$AS_OF')"
q -c "SELECT contacts, round(predicted_total::numeric, 0) AS predicted_total, actual_total,
             round(mean_absolute_error::numeric, 3) AS mean_abs_error, round(correlation::numeric, 3) AS correlation
        FROM engagement.validate_model_summary('$CAL', '$AS_OF')"

step "lift by decile (engagement.validate_lift): the contacts ranked 60 days ago by expected value, and the value each tenth brought since"
q -c "SELECT decile, contacts, round(predicted::numeric, 0) AS predicted_value, round(actual::numeric, 0) AS actual_value,
             round(share::numeric, 3) AS share_of_value, round(cumulative_share::numeric, 3) AS cumulative_share,
             round(lift::numeric, 2) AS lift
        FROM engagement.validate_lift('$CAL', '$AS_OF')"

step "refreshing the scores table (engagement.refresh_scores)"
q -c '\timing on' -c "SELECT engagement.refresh_scores() AS contacts_scored"

if [ ${#CRON_CONF[@]} -gt 0 ]; then
    step "scheduling refreshes with pg_cron: incremental every 5 minutes, full nightly"
    q -c "CREATE EXTENSION pg_cron" -c "SELECT engagement.schedule_refresh('default')" >/dev/null
    q -c "SELECT job_name, schedule, command FROM engagement.refresh_jobs()"
fi

step "top 10 contacts (engagement.readable_scores: the stored scores rounded for people, best first)"
q -c "SELECT contact_id, composite AS score, percentile_rank AS pct, segment, tenure_days, recency, frequency,
             monetary, engagement_probability AS p_engage_30d, churn_risk, conversion_total
        FROM engagement.readable_scores() LIMIT 10"
q -At -c "SELECT 'contacts known for less than new_contact_days (' || p.new_contact_days || ') among the top 10: '
                 || count(*) FILTER (WHERE t.tenure_days < p.new_contact_days)
                 || '; in segment new overall: ' || (SELECT count(*) FROM engagement.engagement_scores s
                                                      WHERE s.profile = 'default' AND s.segment = 'new')
            FROM (SELECT tenure_days FROM engagement.readable_scores() LIMIT 10) t,
                 engagement.scoring_profiles p WHERE p.name = 'default' GROUP BY p.new_contact_days"

step "top 10 contacts by expected conversion value over the next 30 days, beside their composite rank"
q -c "SELECT contact_id, round(expected_value_30d::numeric, 2) AS value_30d,
             round(expected_conversion_value::numeric, 2) AS next_conversion_value,
             round(expected_engagements_30d::numeric, 2) AS engagement_days_30d, composite_rank,
             round(composite::numeric, 1) AS score, segment
        FROM (SELECT s.*, rank() OVER (ORDER BY composite DESC) AS composite_rank
                FROM engagement.engagement_scores s WHERE profile = 'default') r
       ORDER BY expected_value_30d DESC, contact_id LIMIT 10"

step "whom to text this week: the 10 contacts most likely to convert in the next 7 days (engagement.predict, from the stored scores, no second profile)"
q -c "SELECT p.contact_id, round(p.conversion_probability::numeric, 4) AS p_convert_7d,
             round(p.engagement_probability::numeric, 3) AS p_engage_7d, round(p.expected_value::numeric, 2) AS value_7d,
             round(c.lifetime_value::numeric, 2) AS value_12_months, s.segment
        FROM engagement.predict('default', 7) p
        JOIN engagement.customer_lifetime_value('default', 12, 0.01) c USING (contact_id)
        JOIN engagement.engagement_scores s ON s.profile = 'default' AND s.contact_id = p.contact_id
       ORDER BY p.conversion_probability DESC, p.contact_id LIMIT 10"

step "segments (engagement.readable_segments)"
q -c "SELECT * FROM engagement.readable_segments()"

step "how the scores spread (engagement.score_histogram)"
q -c "SELECT * FROM engagement.score_histogram()"

CAMPAIGN=$(q -At -c "SELECT campaign_id FROM engagement.engagement_events WHERE campaign_id IS NOT NULL
                      GROUP BY campaign_id ORDER BY max(occurred_at) DESC, campaign_id LIMIT 1")
step "funnel of the latest campaign ($CAMPAIGN): a contact counts at a stage when it reached every earlier one"
q -c "SELECT stage, contacts, events, round(rate_from_previous::numeric, 3) AS from_previous,
             round(rate_from_delivered::numeric, 3) AS from_delivered
        FROM engagement.funnel($CAMPAIGN)"

step "the CRM's own tables: messages with Twilio statuses, clicks, orders in cents with refunds, inbound texts (demo/crm_source.sql)"
q -v as_of="'$AS_OF'" -f demo/crm_source.sql
step "scoring them through the view crm.engagement (profile sms): every row accounted for"
q -c "SELECT engagement.refresh_scores('sms') AS contacts_scored"
q -c "SELECT contacts_rescored, unmapped_rows, ignored_rows AS ignored_queued_sent, invalid_rows AS skipped_by_reason
        FROM engagement.refresh_runs WHERE profile = 'sms' ORDER BY id DESC LIMIT 1"
q -At -c "SELECT 'the same behaviour read from the CRM tables (stored sms scores) and from engagement_events (live default'
                 || ' scores as of the same times): ' || count(*) FILTER (WHERE (l.segment, l.opted_out, l.undeliverable)
                                                                          IS DISTINCT FROM (s.segment, s.opted_out, s.undeliverable)
                    OR abs(l.composite - s.composite) > 1e-9 * greatest(1, s.composite)
                    OR abs(l.expected_value_30d - s.expected_value_30d) > 1e-9 * greatest(1, s.expected_value_30d))
                 || ' of ' || count(*) || ' contacts differ'
            FROM engagement.engagement_scores s, LATERAL engagement.engagement_score(s.contact_id, s.calculated_at, 'default') l
           WHERE s.profile = 'sms'"
step "SMS funnel of campaign $CAMPAIGN from the CRM's tables: delivered -> clicked -> converted"
q -c "SELECT stage, contacts, events, round(rate_from_previous::numeric, 3) AS from_previous,
             round(rate_from_delivered::numeric, 3) AS from_delivered
        FROM engagement.funnel($CAMPAIGN, profile => 'sms')"

step "why the top contact scores what it does"
q -At -c "SELECT engagement.explain_score(contact_id) FROM engagement.engagement_scores
           WHERE profile = 'default' ORDER BY composite DESC, contact_id LIMIT 1"

REPORT=${ES_DEMO_REPORT:-$REPO/demo/out/report.html}
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
    step "writing the HTML report: score distribution, segments on the R x FM grid, the funnel, the holdout check, the gains chart"
    REPORT=$(/usr/bin/python3 demo/report.py --output "$REPORT" --as-of "$AS_OF" --calibration-end "$CAL" --campaign "$CAMPAIGN")
    echo "report: $REPORT"
    echo "        (open it in a browser: file://$REPORT)"
else
    step "no HTML report: Debian's python3-matplotlib is not installed (scripts/ensure_deps.sh demo installs it)"
fi

step "done: the cluster is stopped and removed"
