#!/usr/bin/env bash
# The models on the demo's contacts (demo/generate_crm_events.sql, 5,000 as the demo loads): both fits
# of fit_model converge with standard errors and without a NOTICE of a local maximum (model version
# 1's summaries gave one on this data), the fitted scores carry the value predictions, and the
# demo's holdout check (calibration 60 days before the end) has a row per calibration bucket.
# Runs against the cluster of test/run_all.sh (PGHOST, PGPORT, PGUSER set).  Prints TAP-style lines.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
q() { psql -qXAt -v ON_ERROR_STOP=1 -d es_demo_models "$@"; }
. "$(dirname "$0")/../tap.sh"

AS_OF='2026-11-24 00:00:00+00'
PGOPTIONS="-c client_min_messages=warning" psql -qXAt -d postgres -c "DROP DATABASE IF EXISTS es_demo_models" \
    -c "CREATE DATABASE es_demo_models"
q -c "CREATE EXTENSION engagement_scoring"
q -v contacts=5000 -v as_of="'$AS_OF'" -f "$REPO/demo/generate_crm_events.sql" >/dev/null

fits=$(q -F ' ' -c "SELECT model, converged, stored, standard_errors IS NOT NULL
                      FROM engagement.fit_model('default', '$AS_OF') ORDER BY model DESC" 2>"${ES_WORK:-/tmp}/demo_models.err")
check "both fits converge, are stored and have standard errors ($(tr '\n' ';' <<<"$fits"))" \
    '[ "$fits" = "mbgnbd t t t
gammagamma t t t" ]'
check "no NOTICE or WARNING from the fits (a local maximum, a fit that did not converge)" \
    '[ ! -s "${ES_WORK:-/tmp}/demo_models.err" ]'
[ -s "${ES_WORK:-/tmp}/demo_models.err" ] && sed 's/^/# /' "${ES_WORK:-/tmp}/demo_models.err"

q -c "SELECT engagement.refresh_scores()" >/dev/null
values=$(q -c "SELECT count(*) FILTER (WHERE expected_conversion_value > 0 AND expected_value_30d >= 0) || '/' || count(*)
                 FROM engagement.engagement_scores WHERE profile = 'default'")
check "every stored score carries the value predictions ($values)" '[ "$values" = "5000/5000" ]'

buckets=$(q -c "SELECT string_agg(x_bucket, ',' ORDER BY min_x) FROM (
                    SELECT x_bucket, min(x_bucket) AS min_x FROM engagement.validate_model(
                        timestamptz '$AS_OF' - interval '60 days', '$AS_OF') GROUP BY x_bucket) v")
check "the holdout check has a row per calibration bucket ($buckets)" '[ "$buckets" = "0,1,2,3,4,5,6,7+" ]'

psql -qXAt -d postgres -c "DROP DATABASE es_demo_models"
