#!/usr/bin/env bash
# test/run_all.sh: installs the packages the tests need when they are missing
# (scripts/ensure_deps.sh test), builds, installs and tests the Debian package
# (test/package/debian_package.sh), builds and installs the extension from source, then runs every
# test against throwaway clusters: the GoogleTest kernel tests, the pg_regress suite (sql/,
# expected/), the pgTAP checks (test/pgtap/) and the shell-level tests (test/shell/: dump/restore, Citus,
# PGXN metadata, the demo's report in a browser and the like).
# Last line: "N passed, N failed".  A failed set-up (packages, build, server start) stops it at once
# with a message and "0 passed, 1 failed" (or the counts so far).
# Needs root (apt-get, make install into PostgreSQL's directories; the servers run as postgres).
set -uo pipefail
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "run_all.sh: run it as root (it installs packages and the extension)"; echo "0 passed, 1 failed"; exit 1; }
    exec sudo -E bash "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
PASSED=0
FAILED=0
TIMES=()   # each TAP script's time, for the summary (the Citus test's is the suite's largest)
count() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }
section() { printf '\n== %s\n' "$*"; }
# setup_failed MESSAGE: a set-up step failed; nothing after it can run.
setup_failed() {
    echo "run_all.sh: FAILED: $*; stopping"
    count 0 1
    echo "$PASSED passed, $FAILED failed"
    exit 1
}

# run_tap TEST: runs a script printing TAP-style "ok - ..." / "not ok - ..." lines and counts them
# (a script that fails without a "not ok" line counts as one failure).
run_tap() {
    echo "-- $1"
    local started=$SECONDS
    ES_WORK="$WORK" bash "$1" >"$WORK/tap_script.log" 2>&1
    local rc=$? p f
    TIMES+=("$(basename "$1" .sh) $((SECONDS - started)) s")
    cat "$WORK/tap_script.log"
    [ "$(basename "$1")" = citus.sh ] && cp "$WORK/tap_script.log" "$WORK/citus_time.log"
    p=$(grep -cE '^ok ' "$WORK/tap_script.log" || true)
    f=$(grep -cE '^not ok ' "$WORK/tap_script.log" || true)
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    count "$p" "$f"
}

section "set-up: packages (scripts/ensure_deps.sh test)"
bash scripts/ensure_deps.sh test 2>&1 || setup_failed "the packages the tests need are not all in place (above)"

. scripts/cluster.sh
PORT=${ES_TEST_PORT:-55432}
scratch_dir tests

# Before the build from source: the package and `make install` write the same files (with
# ES_PACKAGE_INSTALL=apt, as in CI, the package is installed into the system's PostgreSQL and purged).
section "Debian package (test/package/debian_package.sh, ES_PACKAGE_INSTALL=${ES_PACKAGE_INSTALL:-extract})"
run_tap test/package/debian_package.sh

section "build and install"
if ! { make -s -j2 && make -s install; } >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log"
    setup_failed "the build did not succeed (its log is above); no cluster was started"
fi
echo "built and installed engagement_scoring"

section "C++ kernel unit tests (GoogleTest)"
if make -s test/unit/kernel_tests >"$WORK/unit_build.log" 2>&1; then
    test/unit/kernel_tests --gtest_brief=1 >"$WORK/unit.log" 2>&1
    rc=$?
    cat "$WORK/unit.log"
    # Brief mode prints no failure count: failed = tests run - passed (and a crash counts as one).
    ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' "$WORK/unit.log")
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\{0,1\}\..*/\1/p' "$WORK/unit.log")
    f=$(( ${ran:-0} - ${p:-0} ))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    count "${p:-0}" "$f"
else
    cat "$WORK/unit_build.log"; count 0 1
fi

section "starting a throwaway cluster on port $PORT"
# pg_cron is preloaded (test/shell/pg_cron.sh); its jobs run in background workers in es_cron.
if ! cluster_start "$WORK/pg" "$PORT" "max_parallel_workers_per_gather = 2" \
        "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'es_cron'" "cron.use_background_workers = on"; then
    setup_failed "could not start PostgreSQL (above)"
fi
export PGHOST="$WORK/pg" PGPORT="$PORT" PGUSER=postgres
psql -qX -d postgres -c "CREATE DATABASE es_cron"

section "pg_regress (sql/, expected/) and isolation tests (test/isolation/)"
make -s installcheck >"$WORK/regress.log" 2>&1
cat "$WORK/regress.log"
p=$(grep -cE '\.\.\. ok|[[:space:]]ok[[:space:]]+[0-9]+ ms' "$WORK/regress.log" || true)
f=$(grep -cE 'FAILED|failed \(ignored\)' "$WORK/regress.log" || true)
count "$p" "$f"
if [ "$f" -gt 0 ]; then
    for d in regression.diffs test/isolation/regression.diffs; do [ -f "$d" ] && head -200 "$d"; done
fi

section "pgTAP (test/pgtap/)"
psql -qX -d postgres -c "CREATE DATABASE tap" >/dev/null
psql -qX -d tap -c "CREATE EXTENSION pgtap; CREATE EXTENSION engagement_scoring;" >/dev/null
pg_prove -v -d tap test/pgtap/*.sql >"$WORK/tap.log" 2>&1
cat "$WORK/tap.log"
p=$(grep -cE '^[[:space:]]*ok [0-9]+' "$WORK/tap.log" || true)
f=$(grep -cE '^[[:space:]]*not ok [0-9]+' "$WORK/tap.log" || true)
grep -q '^Result: PASS' "$WORK/tap.log" || [ "$f" -gt 0 ] || f=1
count "$p" "$f"

section "shell tests (test/shell/)"
for t in test/shell/*.sh; do
    [ -e "$t" ] || continue
    run_tap "$t"
done

echo
echo "time: the whole run $SECONDS s; the Citus test (test/shell/citus.sh) $(grep -o '^# citus: .*' "$WORK/citus_time.log" 2>/dev/null | sed 's/^# citus: //' || true)"
echo "time per script: $(IFS=,; echo "${TIMES[*]}" | sed 's/,/, /g')"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
