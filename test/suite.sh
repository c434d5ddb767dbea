# test/suite.sh: what test/run_all.sh (the whole suite, on the host's PostgreSQL 15) and
# test/run_version.sh (a version's part of it, in scripts/pg_env.sh's roots) share: the counts, the
# sections, and how each kind of test is run and counted.  Sourced (bash); the caller sets WORK
# (scripts/cluster.sh's scratch_dir) before running anything.
PASSED=0
FAILED=0
TIMES=()   # each TAP script's time, for the summary
count() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }
section() { printf '\n== %s\n' "$*"; }
# setup_failed MESSAGE: a set-up step failed; nothing after it can run.
setup_failed() {
    echo "${0##*/}: FAILED: $*; stopping"
    count 0 1
    echo "$PASSED passed, $FAILED failed"
    exit 1
}

# build_and_install: the extension built and installed into the PostgreSQL of pg_config (a failure
# stops the run, before any cluster starts).
build_and_install() {
    section "build and install"
    if ! { make -s -j2 && make -s install; } >"$WORK/build.log" 2>&1; then
        cat "$WORK/build.log"
        setup_failed "the build did not succeed (its log is above); no cluster was started"
    fi
    echo "built and installed engagement_scoring ($(pg_config --version))"
}

# run_tap TEST: runs a script printing TAP-style "ok - ..." / "not ok - ..." lines and counts them
# (a script that fails without a "not ok" line counts as one failure).
run_tap() {
    echo "-- $1"
    local started=$SECONDS log=$WORK/tap_script.log p f rc
    ES_WORK="$WORK" bash "$1" >"$log" 2>&1
    rc=$?
    TIMES+=("$(basename "$1" .sh) $((SECONDS - started)) s")
    cat "$log"
    [ "$(basename "$1")" = citus.sh ] && cp "$log" "$WORK/citus_time.log"
    p=$(grep -cE '^ok ' "$log" || true)
    f=$(grep -cE '^not ok ' "$log" || true)
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    count "$p" "$f"
}

# run_regress: the pg_regress suite (sql/, expected/) and the isolation tests, against the cluster
# of PGHOST/PGPORT; each test is one pass or failure.
run_regress() {
    local log=$WORK/regress.log p f d
    make -s installcheck >"$log" 2>&1
    cat "$log"
    # PostgreSQL 15: "test NAME ... ok"; 16 and later: "ok N - NAME ..."
    p=$(grep -cE '\.\.\. ok|^ok +[0-9]+ +[-+] ' "$log" || true)
    f=$(grep -cE 'FAILED|failed \(ignored\)|^not ok +[0-9]+ ' "$log" || true)
    [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && f=1   # (nothing ran)
    count "$p" "$f"
    if [ "$f" -gt 0 ]; then
        for d in regression.diffs test/isolation/regression.diffs; do [ -f "$d" ] && head -200 "$d"; done
    fi
}

# run_pgtap: the pgTAP checks (test/pgtap/) in a new database tap of the cluster of PGHOST/PGPORT.
run_pgtap() {
    local log=$WORK/tap.log p f
    psql -qX -d postgres -c "CREATE DATABASE tap" >/dev/null
    psql -qX -d tap -c "CREATE EXTENSION pgtap; CREATE EXTENSION engagement_scoring;" >/dev/null
    pg_prove -v -d tap test/pgtap/*.sql >"$log" 2>&1
    cat "$log"
    p=$(grep -cE '^[[:space:]]*ok [0-9]+' "$log" || true)
    f=$(grep -cE '^[[:space:]]*not ok [0-9]+' "$log" || true)
    grep -q '^Result: PASS' "$log" || [ "$f" -gt 0 ] || f=1
    count "$p" "$f"
}

# start_test_cluster DIR PORT: the cluster the tests run against, pg_cron preloaded (its jobs run
# in background workers in database es_cron, which test/shell/pg_cron.sh uses); exports PGHOST,
# PGPORT and PGUSER for it.
start_test_cluster() {
    cluster_start "$1" "$2" "max_parallel_workers_per_gather = 2" \
        "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'es_cron'" "cron.use_background_workers = on" \
        || return 1
    export PGHOST="$1" PGPORT="$2" PGUSER=postgres
    psql -qX -d postgres -c "CREATE DATABASE es_cron"
}
