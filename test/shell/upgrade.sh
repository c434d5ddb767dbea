#!/usr/bin/env bash
# Upgrades: every shipped version updates to the current one.  For each older version: install it,
# load data, ALTER EXTENSION UPDATE, then compare every extension object (definitions, columns,
# constraints, indexes, triggers, dump registrations) and the scores with a fresh install holding
# the same data.  Runs against the cluster of test/run_all.sh.  Prints TAP-style lines.
set -uo pipefail
export PGOPTIONS="-c client_min_messages=warning"
q() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }
. "$(dirname "$0")/../tap.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CURRENT=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO/engagement_scoring.control")
WORK=${ES_WORK:-/tmp}/upgrade
mkdir -p "$WORK"

# A canonical, OID-free description of everything the extension owns.
DESCRIBE=$(cat <<'SQL'
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'engagement_scoring'),
members AS (SELECT d.classid, d.objid FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass
              AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_get_functiondef(p.oid)
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid WHERE p.prokind <> 'a'
UNION ALL
SELECT 'function acl ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, '')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || d.description
  FROM members m JOIN pg_description d ON d.classoid = m.classid AND d.objoid = m.objid
UNION ALL
SELECT 'aggregate ' || a.aggfnoid::regprocedure || ' ' || concat_ws(' ', a.aggtransfn::regproc, a.aggfinalfn::regproc,
       a.aggcombinefn::regproc, a.aggserialfn::regproc, a.aggdeserialfn::regproc, a.aggtranstype::regtype, a.aggfinalmodify)
  FROM members m JOIN pg_aggregate a ON m.classid = 'pg_proc'::regclass AND a.aggfnoid = m.objid
UNION ALL
SELECT 'column ' || c.oid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || ' storage ' || a.attstorage::text || coalesce(' identity ' || nullif(a.attidentity::text, ''), '')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM members m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid AND NOT t.tgisinternal
UNION ALL
SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid) || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid AND c.relkind = 'v'
UNION ALL
SELECT 'acl ' || c.oid::regclass || ' ' || coalesce(c.relacl::text, '') || ' options ' || coalesce(c.reloptions::text, '')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'dumped ' || x.cfg::regclass || ' ' || x.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(cfg, cond) WHERE e.extname = 'engagement_scoring'
ORDER BY 1
SQL
)

LOAD=$(cat <<'SQL'
INSERT INTO engagement.engagement_events (contact_id, campaign_id, event_type, occurred_at, conversion_value)
SELECT c % 300, c % 9, (ARRAY['delivered','opened','clicked','responded','converted','opted_out','bounced'])[1 + (c * 7919) % 7]::engagement.event_type,
       timestamptz '2026-06-01 00:00+00' - c * interval '97 minutes', CASE WHEN (c * 7919) % 7 = 4 THEN (c % 500) + 0.5 END
  FROM generate_series(1, 6000) c;
UPDATE engagement.scoring_profiles SET half_life_days = 10, description = 'tuned' WHERE name = 'default';
INSERT INTO engagement.scoring_profiles (name, recency_tau_days) VALUES ('vip', 12);
SQL
)

# The upgrade script to the current version is written from src/sql/ (make update-script): the
# committed one must be what the sources make of it.
out=$(make -s -C "$REPO" check-update-script 2>&1)
check "the committed upgrade script to $CURRENT is what make update-script writes${out:+ ($out)}" '[ -z "$out" ]'

# Every released version (an install script or the end of an update script), not the current one.
OLD_VERSIONS=$(ls "$REPO"/extension/engagement_scoring--*.sql | sed -n 's|.*/engagement_scoring--\([0-9.]*--\)\{0,1\}\([0-9.]*\)\.sql$|\2|p' \
               | sort -uV | grep -vx "$CURRENT" || true)
paths=$(q -d postgres -c "SELECT count(*) FROM pg_available_extension_versions v, pg_extension_update_paths('engagement_scoring') p
                       WHERE v.name = 'engagement_scoring' AND p.source = v.version AND p.target = '$CURRENT' AND p.path IS NOT NULL")
check "an update path to $CURRENT from each of the $(echo $OLD_VERSIONS | wc -w) older versions" \
    '[ -n "$OLD_VERSIONS" ] && [ "$paths" = "$(echo $OLD_VERSIONS | wc -w)" ]'

q -d postgres -c "DROP DATABASE IF EXISTS es_fresh" -c "CREATE DATABASE es_fresh"
q -d es_fresh -c "CREATE EXTENSION engagement_scoring" -c "$LOAD"
q -d es_fresh -c "$DESCRIBE" >"$WORK/fresh.txt"
check "a fresh install describes $(wc -l <"$WORK/fresh.txt") objects" '[ "$(wc -l <"$WORK/fresh.txt")" -gt 100 ]'
# Rows without their insertion timestamps, in a stable order; profiles without frequency_min_days,
# whose default changed in 1.6 (the update keeps the value a profile has: checked below).
rows() { q -d "$1" -c "SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (SELECT (to_jsonb(t) - 'created_at' - 'updated_at'
                                                                                  - 'frequency_min_days')::text AS x
                                                                     FROM engagement.$2 t) s"; }
# The fields every version's score has (1.1 added expected_engagements_30d).
SCORES_1_0="SELECT ROW(s.as_of, s.profile, s.composite, s.recency, s.frequency, s.monetary, s.time_decay, s.diversity,
                      s.engagement_probability, s.conversion_probability, s.churn_risk, s.segment, s.opted_out,
                      s.event_count, s.engaging_count, s.conversion_total, s.first_event_at, s.last_engaged_at)::text
              FROM generate_series(0, 299) c, LATERAL engagement.engagement_score(c, '2026-06-01', 'vip') s ORDER BY c"
for old in $OLD_VERSIONS; do
    db="es_from_${old//./_}"
    q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    q -d "$db" -c "CREATE EXTENSION engagement_scoring VERSION '$old'" -c "$LOAD"
    # This library computes model version 2 with the Gamma-Gamma parameters of 1.4's profiles:
    # until the update, scoring asks for it (55000) instead of failing on a missing column.
    if [ "$(printf '%s\n' "$old" 1.4 | sort -V | head -1)" != 1.4 ]; then
        err=$(q -d "$db" -c "$SCORES_1_0" 2>&1)
        check "$old: before the update, scoring asks for it" 'grep -q "needs the extension update to 1.4" <<<"$err"'
    fi
    # This library replaced time_decay's and the fits' internal states: until the update, the old
    # definitions get a clear error (55000), never a misread state.
    if [ "$(printf '%s\n' "$old" 1.2 | sort -V | head -1)" != 1.2 ]; then
        err=$(q -d "$db" -c "SELECT engagement.time_decay(1, now(), now(), 14)" 2>&1)
        check "$old: before the update, time_decay asks for it instead of misreading a state" \
            'grep -q "needs the extension update to 1.2" <<<"$err"'
    fi
    q -d "$db" -c "ALTER EXTENSION engagement_scoring UPDATE" 2>"$WORK/$db.err"
    check "$old: ALTER EXTENSION UPDATE succeeds" '[ $? -eq 0 ] && [ ! -s "$WORK/$db.err" ]'
    check "$old: updated to $CURRENT" '[ "$(q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = '"'engagement_scoring'"'")" = "$CURRENT" ]'
    q -d "$db" -c "$DESCRIBE" >"$WORK/$db.txt"
    check "$old: every object equals a fresh install's" 'diff -u "$WORK/fresh.txt" "$WORK/$db.txt" >"$WORK/$db.diff"'
    [ -s "$WORK/$db.diff" ] && head -40 "$WORK/$db.diff" | sed 's/^/# /'
    for t in engagement_events scoring_profiles score_distributions; do
        check "$old: $t rows equal a fresh install's" '[ "$(rows "$db" $t)" = "$(rows es_fresh $t)" ]'
    done
    kept=$(q -d "$db" -c "SELECT string_agg(DISTINCT frequency_min_days::text, ' ') FROM engagement.scoring_profiles")
    fresh=$(q -d es_fresh -c "SELECT string_agg(DISTINCT frequency_min_days::text, ' ') FROM engagement.scoring_profiles")
    check "$old: the profiles keep the frequency_min_days they had ($kept), a fresh install's have the new default ($fresh)" \
        '[ "$kept" = 7 ] && [ "$fresh" = 30 ]'
    q -d "$db" -c "$SCORES_1_0" >"$WORK/$db.after"
    check "$old: after the update, live scores equal a fresh install's" \
        '[ -s "$WORK/$db.after" ] && cmp -s "$WORK/$db.after" <(q -d es_fresh -c "$SCORES_1_0")'
    a=$(q -d "$db" -c "SELECT engagement.refresh_scores('vip')")
    check "$old: refresh_scores works after the update ($a contacts)" '[ "$a" = 300 ]'
    q -d postgres -c "DROP DATABASE $db"
done
q -d postgres -c "DROP DATABASE es_fresh"

# 1.5 rebuilds the contact-time index with included columns: what a user set on the old index stays.
q -d postgres -c "DROP DATABASE IF EXISTS es_index" -c "CREATE DATABASE es_index"
q -d es_index -c "CREATE EXTENSION engagement_scoring VERSION '1.4'" -c "$LOAD" \
  -c "ALTER INDEX engagement.engagement_events_contact_time_idx SET (fillfactor = 80)" \
  -c "CLUSTER engagement.engagement_events USING engagement_events_contact_time_idx" \
  -c "ALTER EXTENSION engagement_scoring UPDATE TO '1.5'"
got=$(q -d es_index -c "SELECT i.indnkeyatts || ' ' || i.indnatts || ' ' || i.indisclustered || ' ' || c.reloptions::text
                         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                        WHERE i.indexrelid = 'engagement.engagement_events_contact_time_idx'::regclass")
check "1.4 -> 1.5: the contact-time index includes 2 columns and keeps its fillfactor and CLUSTER mark ($got)" \
    '[ "$got" = "2 4 true {fillfactor=80}" ]'
q -d postgres -c "DROP DATABASE es_index"
