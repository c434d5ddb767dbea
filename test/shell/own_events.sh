#!/usr/bin/env bash
# The CRM's own events table, end to end as the README's "Your own events table" tells it: a database
# crm with sms_events(id, contact_id, kind, at, revenue) and its own kinds (delivered, open, click,
# reply, purchase, stop, fail; one ' STOP ' typed by hand), read through a kind map with no rewrite
# of the table, by a profile on the table and a profile on a view over it; unmapped kinds counted and
# warned about, or rejected; live scores equal to stored ones for every contact; changes tracked per
# source; every refresh in refresh_runs; DROP EXTENSION after untrack_event_changes.
# Runs against the cluster of test/run_all.sh (PGHOST, PGPORT, PGUSER set).  Prints TAP-style lines.
set -uo pipefail
WORK=${ES_WORK:-/tmp}/own_events
mkdir -p "$WORK"
q() { psql -qXAt -v ON_ERROR_STOP=1 -d es_crm "$@"; }
. "$(dirname "$0")/../tap.sh"

PGOPTIONS="-c client_min_messages=warning" psql -qXAt -d postgres -c "DROP DATABASE IF EXISTS es_crm" -c "CREATE DATABASE es_crm"
q <<'SQL'
CREATE EXTENSION engagement_scoring;
CREATE SCHEMA crm;
CREATE TABLE crm.sms_events (id bigserial PRIMARY KEY, contact_id bigint, kind text, at timestamptz, revenue numeric);
CREATE INDEX ON crm.sms_events (contact_id, at);
INSERT INTO crm.sms_events (contact_id, kind, at, revenue)
SELECT 1 + c % 300, (ARRAY['delivered', 'open', 'click', 'reply', 'purchase', 'fail', 'delivered'])[1 + (c * 7919) % 7],
       timestamptz '2026-06-01 00:00+00' - c * interval '97 minutes',
       CASE WHEN (c * 7919) % 7 = 4 THEN round(((c % 90) + 5.5)::numeric, 2) END
  FROM generate_series(1, 9000) c;
INSERT INTO crm.sms_events (contact_id, kind, at) VALUES (7, ' STOP ', '2026-05-31 10:00+00');
SQL

# 1. The source: the CRM's columns and kinds, exact matching first.
q -c "SELECT engagement.define_event_source('crm.sms_events',
        '{\"delivered\": \"delivered\", \"open\": \"opened\", \"click\": \"clicked\", \"reply\": \"responded\",
          \"purchase\": \"converted\", \"stop\": \"opted_out\", \"fail\": \"bounced\"}',
        kind_column => 'kind', time_column => 'at', value_column => 'revenue')" >/dev/null
q -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('crm', 'crm.sms_events')"
out=$(q -c "SELECT engagement.refresh_scores('crm')" 2>&1)
check "an unmapped kind is counted and named in a WARNING, not dropped silently" \
    '[[ "$out" == *"WARNING"*"1 rows of crm.sms_events were not scored"*" STOP "* ]]'
check "the refresh records it in refresh_runs" \
    '[ "$(q -c "SELECT mode, unmapped_rows, unmapped_kinds::text FROM engagement.refresh_runs WHERE profile = '"'crm'"' ORDER BY id DESC LIMIT 1" -F " ")" = "full 1 {\" STOP \": 1}" ]'
check "contact 7, whose ' STOP ' is unmapped, is not yet opted out" \
    '[ "$(q -c "SELECT opted_out FROM engagement.engagement_scores WHERE profile = '"'crm'"' AND contact_id = 7")" = f ]'
# ... a source that rejects unmapped kinds refuses to score instead
q -c "UPDATE engagement.event_sources SET on_unmapped = 'reject' WHERE relation = 'crm.sms_events'::regclass"
err=$(q -c "SELECT engagement.refresh_scores('crm')" 2>&1)
check "with on_unmapped = reject the refresh is an error naming the kind" '[[ "$err" == *"ERROR"*"do"*"not map"*" STOP "* ]]'
err=$(q -c "SELECT engagement.engagement_score(7, '2026-06-01', 'crm')" 2>&1)
check "... and so is the contact's live score" '[[ "$err" == *"ERROR"*" STOP "* ]]'
# ... and with matching as the source says (trimmed, lower-cased), ' STOP ' is an opt-out.
q -c "UPDATE engagement.event_sources SET kind_match = 'trim_lower' WHERE relation = 'crm.sms_events'::regclass"
out=$(q -c "SELECT engagement.refresh_scores('crm')" 2>&1)
check "trim_lower maps ' STOP ': no warning, contact 7 is opted out ($out)" \
    '[ "$out" = 300 ] && [ "$(q -c "SELECT opted_out FROM engagement.engagement_scores WHERE profile = '"'crm'"' AND contact_id = 7")" = t ]'

# 2. A view source: the CRM's mapping written as a view (the kinds as engagement.event_type), its
# changes coming from the table under it.
q <<'SQL'
CREATE VIEW crm.sms_events_mapped AS
SELECT e.contact_id, e.at AS occurred_at, e.revenue AS conversion_value,
       CASE lower(btrim(e.kind)) WHEN 'delivered' THEN 'delivered' WHEN 'open' THEN 'opened' WHEN 'click' THEN 'clicked'
            WHEN 'reply' THEN 'responded' WHEN 'purchase' THEN 'converted' WHEN 'stop' THEN 'opted_out'
            WHEN 'fail' THEN 'bounced' END::engagement.event_type AS event_type
  FROM crm.sms_events e;
SQL
q -c "SELECT engagement.define_event_source('crm.sms_events_mapped')" >/dev/null
q -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('crm_view', 'crm.sms_events_mapped')"
q -c "SELECT engagement.track_event_changes('crm.sms_events', for_source => 'crm.sms_events_mapped')"
q -c "SELECT engagement.refresh_scores('crm_view')" >/dev/null
# Live = stored: every contact's live score, as of its stored score's time, in every field.
LIVE_VS_STORED="SELECT count(*) FROM engagement.engagement_scores s,
    LATERAL (SELECT engagement.engagement_score(s.contact_id, s.calculated_at, s.profile) AS l) l
  WHERE s.profile = :'p' AND (
        (l.l).composite, (l.l).recency, (l.l).frequency, (l.l).monetary, (l.l).time_decay, (l.l).diversity,
        (l.l).engagement_probability, (l.l).conversion_probability, (l.l).churn_risk, (l.l).segment, (l.l).opted_out,
        (l.l).event_count, (l.l).engaging_count, (l.l).conversion_total, (l.l).expected_engagements_30d,
        (l.l).expected_conversion_value, (l.l).expected_value_30d, (l.l).undeliverable, (l.l).tenure_days, (l.l).birth_at,
        (l.l).x, (l.l).t_x, (l.l).t_c, (l.l).n_days, (l.l).conv_days, (l.l).x_v, (l.l).m_v)
      IS DISTINCT FROM (s.composite, s.recency, s.frequency, s.monetary, s.time_decay, s.diversity,
        s.engagement_probability, s.conversion_probability, s.churn_risk, s.segment, s.opted_out,
        s.event_count, s.engaging_count, s.conversion_total, s.expected_engagements_30d,
        s.expected_conversion_value, s.expected_value_30d, s.undeliverable, s.tenure_days, s.birth_at,
        s.x, s.t_x, s.t_c, s.n_days, s.conv_days, s.x_v, s.m_v)"
for p in crm crm_view; do
    n=$(q -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = '$p'")
    d=$(q -v p="$p" <<<"$LIVE_VS_STORED")
    check "$p: the live score of every contact equals the stored one ($d of $n differ)" '[ "$n" = 300 ] && [ "$d" = 0 ]'
done
check "the table and the view score every contact the same (as of one time)" \
    '[ "$(q -c "SELECT count(*) FROM generate_series(1, 300) c
                WHERE to_jsonb(engagement.engagement_score(c, '"'2026-06-01'"', '"'crm'"')) - '"'profile'"'
                    = to_jsonb(engagement.engagement_score(c, '"'2026-06-01'"', '"'crm_view'"')) - '"'profile'"'")" = 300 ]'
check "explain_score reads the profile's source" \
    '[[ "$(q -c "SELECT engagement.explain_score(7, '"'2026-06-01'"', '"'crm_view'"')")" == *"opted out"* ]]'
check "profile_events shows the CRM's kind beside the event type" \
    '[ "$(q -c "SELECT kind || '"' '"' || event_type FROM engagement.profile_events(7, '"'crm'"', '"'2026-05-31 11:00+00'"', 1)")" = " STOP  opted_out" ]'

# 3. Change tracking per source: a change in crm.sms_events rescores the CRM profiles only, a change
# in engagement_events the default profile only.
q -c "SELECT engagement.track_event_changes('crm.sms_events', for_source => 'crm.sms_events_mapped')"
q -c "INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (5, 'opened', '2026-05-30')"
q -c "SELECT engagement.refresh_scores('default')" >/dev/null
q -c "INSERT INTO crm.sms_events (contact_id, kind, at) VALUES (11, 'click', '2026-05-31 12:00+00')"
n=$(q -c "SELECT engagement.refresh_scores('crm') || ' ' || engagement.refresh_scores('crm_view') || ' ' || engagement.refresh_scores('default')")
check "a change of crm.sms_events rescores contact 11 for both CRM profiles and nothing for default ($n)" '[ "$n" = "1 1 0" ]'
q -c "INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at) VALUES (5, 'clicked', '2026-05-31')"
n=$(q -c "SELECT engagement.refresh_scores('crm') || ' ' || engagement.refresh_scores('crm_view') || ' ' || engagement.refresh_scores('default')")
check "a change of engagement_events rescores nothing for the CRM profiles ($n)" '[ "$n" = "0 0 1" ]'
for p in crm crm_view; do
    d=$(q -v p="$p" <<<"$LIVE_VS_STORED")
    check "$p: after the incremental refreshes, live still equals stored ($d differ)" '[ "$d" = 0 ]'
done

# 4. Validation when written: a view without the columns, a kind mapped to no event type.
err=$(q -c "CREATE VIEW crm.raw AS SELECT contact_id, kind, at FROM crm.sms_events" \
        -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('raw', 'crm.raw')" 2>&1)
check "a profile on a relation it cannot read is refused when written (42703)" '[[ "$err" == *"crm.raw has no column"* ]]'
err=$(q -c "SELECT engagement.define_event_source('crm.sms_events', '{\"open\": \"read\"}', kind_column => 'kind', time_column => 'at')" 2>&1)
check "a kind mapped to what is not an event type is refused (22023)" '[[ "$err" == *"not an event type"* ]]'

# 5. The refresh log: a refresh that another holds off is recorded as skipped; a scheduled refresh
# that fails is recorded with its error (and the work rolled back).
# A session that refreshes in a transaction it keeps open until told to commit (it reads its
# statements from a pipe); the second refresh runs once that one is idle in its transaction.
mkfifo "$WORK/holder"
PGAPPNAME=es_refresh_holder q <"$WORK/holder" >/dev/null &
holder=$!
exec 3>"$WORK/holder"
echo "BEGIN; SELECT engagement.refresh_scores('crm');" >&3
holder_idle="SELECT count(*) FROM pg_stat_activity WHERE application_name = 'es_refresh_holder' AND state = 'idle in transaction'"
wait_until 600 0.5 '[ "$(q -c "$holder_idle")" = 1 ]'
skipped=$(q -c "SELECT engagement.refresh_scores('crm') IS NULL" 2>/dev/null)
echo "COMMIT;" >&3
exec 3>&-
wait "$holder"
rm -f "$WORK/holder"
check "a refresh held off by another returns NULL and is recorded as skipped" \
    '[ "$skipped" = t ] && [ "$(q -c "SELECT skipped FROM engagement.refresh_runs WHERE profile = '"'crm'"' ORDER BY id DESC LIMIT 1")" = t ]'
q -c "ALTER TABLE crm.sms_events RENAME COLUMN revenue TO revenue_usd"
out=$(q -c "SELECT engagement.refresh_scores('crm', on_error => 'record') IS NULL" 2>&1)
check "a failing refresh with on_error => 'record' warns, returns NULL and is recorded with its error" \
    '[[ "$out" == *"WARNING"*"failed"* ]] && [[ "$(q -c "SELECT error FROM engagement.refresh_runs WHERE profile = '"'crm'"' ORDER BY id DESC LIMIT 1")" == 42703* ]]'
q -c "ALTER TABLE crm.sms_events RENAME COLUMN revenue_usd TO revenue"

# 5b. What the review of 1.4 found, checked: rows without a contact and rows with a value the model
# cannot read are counted, not fatal; a source's contact column cannot change under its triggers;
# switching to trim_lower refuses an ambiguous map; a kind column of another type is refused.
q -c "UPDATE engagement.event_sources SET on_unmapped = 'count' WHERE relation = 'crm.sms_events'::regclass" \
  -c "INSERT INTO crm.sms_events (contact_id, kind, at) VALUES (NULL, 'stop', '2026-05-30 10:00+00')" \
  -c "INSERT INTO crm.sms_events (contact_id, kind, at, revenue) VALUES (12, 'purchase', '2026-05-30 11:00+00', -5)"
out=$(q -c "SELECT engagement.refresh_scores('crm', true)" 2>&1)
n=$(grep -x "[0-9]*" <<<"$out" | head -1)
counted=$(q -c "SELECT unmapped_rows = 0 AND invalid_rows = '{\"no contact\": 1, \"negative value\": 1}'
                 FROM engagement.refresh_runs WHERE profile = 'crm' ORDER BY id DESC LIMIT 1")
check "a row without a contact and a negative value are counted by reason, and the refresh goes on ($n)" \
    '[ "$n" = 300 ] && [ "$counted" = t ]'
check "... and the warning names those reasons, not unmapped kinds" \
    '[[ "$out" == *"WARNING"*"2 rows of crm.sms_events were not scored"*"negative value"* ]] && [[ "$out" == *"no contact"* ]] && [[ "$out" != *"not mapped"* ]]'
q -c "DELETE FROM crm.sms_events WHERE contact_id IS NULL OR revenue < 0"
err=$(q -c "UPDATE engagement.event_sources SET contact_column = 'id' WHERE relation = 'crm.sms_events'::regclass" 2>&1)
check "the contact column cannot change under the tracking triggers (55000)" '[[ "$err" == *"change-tracking triggers of crm.sms_events read column contact_id"* ]]'
q -c "UPDATE engagement.event_sources SET kind_match = 'exact' WHERE relation = 'crm.sms_events'::regclass" \
  -c "INSERT INTO engagement.event_kind_map VALUES ('crm.sms_events', 'Open', 'opened')"
err=$(q -c "UPDATE engagement.event_sources SET kind_match = 'trim_lower' WHERE relation = 'crm.sms_events'::regclass" 2>&1)
check "switching to trim_lower with kinds Open and open is refused (23505)" '[[ "$err" == *"would be ambiguous"* ]]'
q -c "DELETE FROM engagement.event_kind_map WHERE relation = 'crm.sms_events'::regclass AND kind = 'Open'" \
  -c "UPDATE engagement.event_sources SET kind_match = 'trim_lower' WHERE relation = 'crm.sms_events'::regclass"
err=$(q -c "INSERT INTO engagement.event_kind_map VALUES ('crm.sms_events', ' OPEN', 'opened')" 2>&1)
check "under trim_lower, a kind ' OPEN' beside open is refused when the map is written (23505)" '[[ "$err" == *"would be ambiguous"* ]]'
q -c "UPDATE engagement.event_sources SET kind_match = 'exact' WHERE relation = 'crm.sms_events'::regclass" \
  -c "UPDATE engagement.event_sources SET kind_match = 'trim_lower' WHERE relation = 'crm.sms_events'::regclass"
err=$(q -c "CREATE TYPE crm.kind AS ENUM ('open')" -c "CREATE TABLE crm.typed (contact_id bigint, kind crm.kind, at timestamptz)" \
        -c "SELECT engagement.define_event_source('crm.typed', kind_column => 'kind', time_column => 'at', value_column => NULL)" 2>&1)
check "a kind column of a type of the CRM's is refused (its cast to text would run as the refresher; 42804)" '[[ "$err" == *"is crm.kind, not one of"* ]]'
# Security: a view (or a table with row-level security) of another role's is not read for a
# superuser by the per-contact functions; a refresh reads a security_invoker view with the rights
# of the role that set it, whoever runs the refresh (sql/source_access.sql has the rest).
q -c "CREATE ROLE es_crm_admin" -c "SELECT engagement.grant_admin_access('es_crm_admin')" \
  -c "GRANT USAGE, CREATE ON SCHEMA crm TO es_crm_admin" -c "GRANT SELECT ON crm.sms_events TO es_crm_admin" >/dev/null
q -c "SET ROLE es_crm_admin" -c "CREATE VIEW crm.admin_view AS SELECT * FROM crm.sms_events_mapped" \
  -c "SELECT engagement.define_event_source('crm.admin_view')" \
  -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('admin_view', 'crm.admin_view')" >/dev/null 2>&1
err=$(q -c "SELECT engagement.engagement_score(7, now(), 'admin_view')" 2>&1)
check "a superuser's engagement_score refuses another role's view (42501: its code would run as the caller)" \
    '[[ "$err" == *"its code would run as you"* ]]'
q -c "CREATE VIEW crm.invoker_view WITH (security_invoker = true) AS SELECT * FROM crm.sms_events_mapped" \
  -c "ALTER VIEW crm.invoker_view OWNER TO es_crm_admin" -c "GRANT SELECT ON crm.sms_events_mapped TO es_crm_admin"
q -c "SET ROLE es_crm_admin" -c "SELECT engagement.define_event_source('crm.invoker_view')" \
  -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('invoker', 'crm.invoker_view')" >/dev/null 2>&1
n=$(q -c "SELECT engagement.refresh_scores('invoker')" 2>&1)
q -c "REVOKE SELECT ON crm.sms_events_mapped FROM es_crm_admin"
err=$(q -c "SELECT engagement.refresh_scores('invoker', true)" 2>&1)
check "a superuser's refresh reads a security_invoker view as the role that set it: all it may read ($n contacts), then nothing once revoked (42501)" \
    '[ "$n" = 300 ] && [[ "$err" == *"permission denied for view sms_events_mapped"* ]]'
# A postgres_fdw foreign table whose user mappings differ: a superuser's refresh reads it through
# the mapping of the role that set it (a remote role that may not read the table), not its own.
q -c "CREATE EXTENSION postgres_fdw" -c "CREATE ROLE es_remote_nobody LOGIN" -c "CREATE SCHEMA remote" \
  -c "CREATE TABLE remote.events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz, conversion_value numeric)" \
  -c "INSERT INTO remote.events VALUES (1, 'converted', '2026-05-01', 777777.77)" -c "GRANT USAGE ON SCHEMA remote TO es_remote_nobody" \
  -c "CREATE SERVER es_loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '$PGHOST', port '$PGPORT', dbname 'es_crm')" \
  -c "CREATE USER MAPPING FOR CURRENT_USER SERVER es_loopback OPTIONS (user '$(q -c "SELECT current_user")')" \
  -c "CREATE USER MAPPING FOR es_crm_admin SERVER es_loopback OPTIONS (user 'es_remote_nobody', password_required 'false')" \
  -c "CREATE FOREIGN TABLE crm.remote_events (contact_id bigint, event_type engagement.event_type, occurred_at timestamptz,
                                             conversion_value numeric)
      SERVER es_loopback OPTIONS (schema_name 'remote', table_name 'events')" \
  -c "GRANT SELECT ON crm.remote_events TO es_crm_admin" >/dev/null
mine=$(q -c "SET ROLE es_crm_admin" -c "SELECT count(*) FROM crm.remote_events" 2>&1)
q -c "SET ROLE es_crm_admin" -c "INSERT INTO engagement.scoring_profiles (name, events_relation) VALUES ('remote', 'crm.remote_events')"
err=$(q -c "SELECT engagement.refresh_scores('remote')" 2>&1)
check "a superuser's refresh of a foreign table reads it through the user mapping of the role that set it (refused there too: $(grep -o 'permission denied[^"]*' <<<"$mine" | head -1))" \
    '[[ "$mine" == *"permission denied for table events"* ]] && [[ "$err" == *"permission denied for table events"* ]] &&
     [ "$(q -c "SELECT count(*) FROM engagement.engagement_scores WHERE profile = '"'remote'"'")" = 0 ]'
q -c "DELETE FROM engagement.scoring_profiles WHERE name = 'remote'" -c "DROP FOREIGN TABLE crm.remote_events" \
  -c "DROP SERVER es_loopback CASCADE" -c "DROP SCHEMA remote CASCADE" -c "DROP EXTENSION postgres_fdw" -c "DROP ROLE es_remote_nobody" >/dev/null 2>&1
q -c "DELETE FROM engagement.scoring_profiles WHERE name IN ('admin_view', 'invoker')" \
  -c "DELETE FROM engagement.event_sources WHERE relation IN ('crm.admin_view'::regclass, 'crm.invoker_view'::regclass, 'crm.typed'::regclass)" \
  -c "DROP VIEW crm.admin_view, crm.invoker_view" -c "DROP TABLE crm.typed" -c "DROP TYPE crm.kind" >/dev/null

# 6. DROP EXTENSION after untrack_event_changes (and once the CRM's own view over engagement.event_type
# is gone: that one is the CRM's to drop).
q -c "DROP VIEW crm.raw"
err=$(q -c "DROP EXTENSION engagement_scoring" 2>&1)
check "DROP EXTENSION is refused while the CRM's table is tracked" '[[ "$err" == *"trigger engagement_track_insert on table crm.sms_events depends"* ]]'
q -c "SELECT engagement.untrack_event_changes('crm.sms_events')" >/dev/null
q -c "DROP VIEW crm.sms_events_mapped"
check "after untrack_event_changes, DROP EXTENSION succeeds" 'q -c "DROP EXTENSION engagement_scoring" 2>"$WORK/drop.err"'
[ -s "$WORK/drop.err" ] && sed 's/^/# /' "$WORK/drop.err"

psql -qXAt -d postgres -c "DROP DATABASE es_crm"
PGOPTIONS="-c client_min_messages=warning" psql -qXAt -d postgres -c "DROP ROLE IF EXISTS es_crm_admin"
