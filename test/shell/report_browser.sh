#!/usr/bin/env bash
# The demo's HTML report in a browser: on the demo's contacts (demo/generate_crm_events.sql, 2,000),
# with the models fitted and the scores refreshed as demo/run_demo.sh leaves them, demo/report.py
# writes the report, and headless Chromium (test/browser/check_report.py) opens it: every chart
# renders (its image decodes, its screenshot is not blank), the page's screenshot is not empty, and
# no console error is reported.  Runs against the cluster of test/run_all.sh (PGHOST, PGPORT, PGUSER
# set).  Prints TAP-style lines.  ES_REPORT_KEEP=DIR keeps the report and its screenshot there.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${ES_PYTHON:-/usr/bin/python3}    # Debian's, with python3-matplotlib
W=$(mktemp -d "${ES_WORK:-/tmp}/report.XXXXXX")
trap 'rm -rf "$W"' EXIT
export PGDATABASE=es_report
q() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }
. "$(dirname "$0")/../tap.sh"

AS_OF='2026-11-24 00:00:00+00'
CAL='2026-09-25 00:00:00+00'        # 60 days before, as the demo's holdout check
PGOPTIONS="-c client_min_messages=warning" psql -qXAt -d postgres -c "DROP DATABASE IF EXISTS es_report" \
    -c "CREATE DATABASE es_report"
q -c "CREATE EXTENSION engagement_scoring"
q -v contacts=2000 -v as_of="'$AS_OF'" -f "$REPO/demo/generate_crm_events.sql" >/dev/null
q -c "SELECT count(*) FROM engagement.fit_model('default', '$AS_OF', on_failure => 'warning')" \
  -c "SELECT engagement.refresh_scores()" >/dev/null 2>"$W/setup.err"
check "the demo's data loaded, the models fitted and the scores refreshed" \
    '[ "$(q -c "SELECT count(*) FROM engagement.engagement_scores")" = 2000 ]'
[ -s "$W/setup.err" ] && sed 's/^/# /' "$W/setup.err"

start=$(date +%s)
out=$("$PY" "$REPO/demo/report.py" --output "$W/report.html" --as-of "$AS_OF" --calibration-end "$CAL" 2>&1)
check "demo/report.py writes the report and prints its path in $(( $(date +%s) - start )) s ($out)" \
    '[ "$out" = "$W/report.html" ] && [ -s "$W/report.html" ]'
check "the report is one self-contained file: 5 charts embedded, nothing fetched from elsewhere" \
    '[ "$(grep -c "<img class=\"chart\" alt=\"[^\"]*\" src=\"data:image/svg+xml;base64," "$W/report.html")" = 5 ] &&
     ! grep -qE "(src|href)=\"(https?:|//)" "$W/report.html"'

start=$(date +%s)
"$PY" "$REPO/test/browser/check_report.py" "$W/report.html" "$W/report.png" 5 2>"$W/browser.err"
check "headless Chromium checked the report in $(( $(date +%s) - start )) s" '[ ! -s "$W/browser.err" ]'
[ -s "$W/browser.err" ] && sed 's/^/# /' "$W/browser.err"
if [ -n "${ES_REPORT_KEEP:-}" ]; then
    mkdir -p "$ES_REPORT_KEEP" && cp "$W/report.html" "$W/report.png" "$ES_REPORT_KEEP/"
fi
psql -qXAt -d postgres -c "DROP DATABASE es_report"
