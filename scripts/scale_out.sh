#!/usr/bin/env bash
# scripts/scale_out.sh: events hash-partitioned by contact_id across PostgreSQL servers, with
# PostgreSQL's own sharding (declarative partitioning, postgres_fdw foreign partitions).
#
#   scripts/scale_out.sh [--table crm.events] [--profile NAME]... COORDINATOR SHARD [SHARD...]
#
# COORDINATOR and each SHARD are libpq connection strings ("host=10.0.0.2 port=5432 dbname=crm
# user=postgres").  On every shard: the extension, and the table's shard (the same columns, an
# index on (contact_id, occurred_at)).  On the coordinator: the extension, postgres_fdw, one
# foreign server per shard (extensions 'engagement_scoring', so score_events is computed inside
# the shards; async_capable, so the shards work at the same time), a user mapping for the
# current user, the partitioned table with one foreign partition per shard, change tracking for
# incremental refreshes, and events_relation = the table for each --profile.  docs/scale-out.md
# explains it.  Run it as a superuser of every server (CREATE EXTENSION, CREATE SERVER); it
# stops at the first error.  Passwords: put them in ~/.pgpass (the script passes none).
set -euo pipefail

TABLE=crm.events
PROFILES=()
while [ $# -gt 0 ]; do
    case $1 in
        --table) TABLE=$2; shift 2 ;;
        --profile) PROFILES+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "usage: $0 [--table schema.table] [--profile NAME]... COORDINATOR SHARD [SHARD...]" >&2
    exit 2
fi
case $TABLE in
    *.*) SCHEMA=${TABLE%%.*}; NAME=${TABLE#*.} ;;
    *) echo "--table must be schema-qualified (schema.table)" >&2; exit 2 ;;
esac
# Plain names and key=value connection strings only: they are spliced into SQL below.
[[ $TABLE =~ ^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$ ]] || { echo "--table: lower-case schema.table, letters, digits and _" >&2; exit 2; }
for c in "$@"; do
    [[ $c =~ ^[a-z_]+=[^[:space:]\'\"\\]+([[:space:]]+[a-z_]+=[^[:space:]\'\"\\]+)*$ ]] \
        || { echo "not a key=value connection string (no quotes, no URIs): $c" >&2; exit 2; }
done
COORDINATOR=$1; shift
SHARDS=("$@")
MODULUS=${#SHARDS[@]}

psql_on() { psql -X -q -v ON_ERROR_STOP=1 -d "$1" "${@:2}"; }
# conninfo_value CONNINFO KEY: one key's value of a "key=value ..." connection string.
conninfo_value() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | tail -1; }

# The shard's table: the columns the extension reads plus what a CRM keeps with an event.
SHARD_TABLE="
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS engagement_scoring;
CREATE SCHEMA IF NOT EXISTS \"$SCHEMA\";
CREATE TABLE IF NOT EXISTS \"$SCHEMA\".\"$NAME\" (
    id               bigint NOT NULL,
    contact_id       bigint NOT NULL,
    campaign_id      bigint,
    event_type       engagement.event_type NOT NULL,
    occurred_at      timestamptz NOT NULL CHECK (isfinite(occurred_at)),
    conversion_value numeric(14,2) CHECK (conversion_value >= 0),
    channel          text NOT NULL DEFAULT 'sms',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS \"${NAME}_contact_time_idx\" ON \"$SCHEMA\".\"$NAME\" (contact_id, occurred_at);"

for i in "${!SHARDS[@]}"; do
    echo "shard $((i + 1)) of $MODULUS: extension and table $TABLE"
    psql_on "${SHARDS[$i]}" -c "$SHARD_TABLE"
done

echo "coordinator: postgres_fdw, $MODULUS foreign servers, $TABLE partitioned by hash(contact_id)"
{
    echo "BEGIN;"
    echo "SET client_min_messages = warning;"
    echo "CREATE EXTENSION IF NOT EXISTS engagement_scoring;"
    echo "CREATE EXTENSION IF NOT EXISTS postgres_fdw;"
    echo "CREATE SCHEMA IF NOT EXISTS \"$SCHEMA\";"
    echo "CREATE SEQUENCE IF NOT EXISTS \"$SCHEMA\".\"${NAME}_id_seq\";"
    echo "CREATE TABLE \"$SCHEMA\".\"$NAME\" (
    id               bigint NOT NULL DEFAULT nextval('\"$SCHEMA\".\"${NAME}_id_seq\"'),
    contact_id       bigint NOT NULL,
    campaign_id      bigint,
    event_type       engagement.event_type NOT NULL,
    occurred_at      timestamptz NOT NULL,
    conversion_value numeric(14,2),
    channel          text NOT NULL DEFAULT 'sms',
    created_at       timestamptz NOT NULL DEFAULT now()
) PARTITION BY HASH (contact_id);"
    for i in "${!SHARDS[@]}"; do
        n=$((i + 1))
        options=""
        for key in host hostaddr port dbname; do
            v=$(conninfo_value "${SHARDS[$i]}" "$key")
            [ -n "$v" ] && options+="$key '$v', "
        done
        user=$(conninfo_value "${SHARDS[$i]}" user)
        echo "CREATE SERVER \"${SCHEMA}_${NAME}_shard_$n\" FOREIGN DATA WRAPPER postgres_fdw
    OPTIONS (${options}extensions 'engagement_scoring', async_capable 'true', fetch_size '10000');"
        echo "CREATE USER MAPPING FOR CURRENT_USER SERVER \"${SCHEMA}_${NAME}_shard_$n\"${user:+ OPTIONS (user '$user')};"
        echo "CREATE FOREIGN TABLE \"$SCHEMA\".\"${NAME}_shard_$n\" PARTITION OF \"$SCHEMA\".\"$NAME\"
    FOR VALUES WITH (MODULUS $MODULUS, REMAINDER $i)
    SERVER \"${SCHEMA}_${NAME}_shard_$n\" OPTIONS (schema_name '$SCHEMA', table_name '$NAME');"
    done
    echo "DO \$\$ BEGIN PERFORM engagement.track_event_changes('\"$SCHEMA\".\"$NAME\"'); END \$\$;"
    for p in "${PROFILES[@]}"; do
        echo "UPDATE engagement.scoring_profiles SET events_relation = '\"$SCHEMA\".\"$NAME\"' WHERE name = '${p//\'/\'\'}';"
    done
    echo "COMMIT;"
} | psql_on "$COORDINATOR" -f -
echo "done: insert events into $TABLE on the coordinator; refresh_scores of a profile whose events_relation is $TABLE scores them in the shards"
