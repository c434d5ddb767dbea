# scripts/cluster.sh: throwaway PostgreSQL 15 clusters for the tests and the demo (sourced, bash).
# Servers run as the postgres user (PostgreSQL refuses root) in a private directory, on a private
# port, with the socket in that directory; cluster_stop_all stops every one this shell started.
PG_BIN=${PG_BIN:-$(pg_config --bindir)}
ES_CLUSTERS=()

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# cluster_start DIR PORT [postgresql.conf lines...]: initdb + start, trust auth on the socket only.
cluster_start() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir" && chown postgres "$dir" && chmod 700 "$dir"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    {
        echo "listen_addresses = ''"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "fsync = off"
        echo "max_worker_processes = 16"
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log"; return 1; }
    ES_CLUSTERS+=("$dir")
}

# scratch_dir NAME: sets WORK to a new directory that is removed, with every cluster this shell
# started stopped, when the script exits (also on failure).
scratch_dir() {
    WORK=$(mktemp -d "/tmp/engagement_$1.XXXXXX")
    chmod 755 "$WORK"
    trap 'cluster_stop_all; rm -rf "$WORK"' EXIT
}

cluster_stop_all() {
    local dir
    for dir in "${ES_CLUSTERS[@]}"; do
        [ -f "$dir/data/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
    done
    ES_CLUSTERS=()
}
