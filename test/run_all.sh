#!/usr/bin/env bash
# test/run_all.sh: every test, on every PostgreSQL the extension supports.
#
# On the host's PostgreSQL 15 (Debian bookworm): installs the packages the tests need when they
# are missing (scripts/ensure_deps.sh test), builds, installs and tests the Debian package
# (test/package/debian_package.sh), builds and installs the extension from source, then runs the
# GoogleTest kernel tests, the pg_regress suite (sql/, expected/), the isolation tests, the pgTAP
# checks (test/pgtap/) and the shell tests (test/shell/: dump/restore, upgrades, pg_cron, Citus,
# PGXN metadata, the demo's report in a browser and the like) against throwaway clusters.
# Then, for PostgreSQL 17 and 18 (ES_PG_VERSIONS, default "17 18"; empty: none), in a Debian root
# with that version from Debian's packages (scripts/pg_env.sh, made once per machine), the
# version's part of the suite (test/run_version.sh): its Debian package, the build, pg_regress, the
# isolation tests, pgTAP, the upgrades, pg_cron, dump/restore and Citus.
# Last lines: what passed per PostgreSQL version, then "N passed, N failed" for them all.  A failed
# set-up (packages, build, server start) stops it at once with a message and "0 passed, 1 failed"
# (or the counts so far).
# Needs root (apt-get, make install into PostgreSQL's directories, the roots; servers run as postgres).
set -uo pipefail
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "run_all.sh: run it as root (it installs packages and the extension)"; echo "0 passed, 1 failed"; exit 1; }
    exec sudo -E bash "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. test/suite.sh

section "set-up: packages (scripts/ensure_deps.sh test)"
bash scripts/ensure_deps.sh test 2>&1 || setup_failed "the packages the tests need are not all in place (above)"

. scripts/cluster.sh
PORT=${ES_TEST_PORT:-55432}
scratch_dir tests

# Before the build from source: the package and `make install` write the same files (with
# ES_PACKAGE_INSTALL=apt, as in CI, the package is installed into the system's PostgreSQL and purged).
section "Debian package (test/package/debian_package.sh, ES_PACKAGE_INSTALL=${ES_PACKAGE_INSTALL:-extract})"
run_tap test/package/debian_package.sh

build_and_install

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
start_test_cluster "$WORK/pg" "$PORT" || setup_failed "could not start PostgreSQL (above)"

section "pg_regress (sql/, expected/) and isolation tests (test/isolation/)"
run_regress

section "pgTAP (test/pgtap/)"
run_pgtap

section "shell tests (test/shell/)"
for t in test/shell/*.sh; do
    [ -e "$t" ] || continue
    run_tap "$t"
done
cluster_stop_all
PG_MAJOR=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
VERSION_LINES=("PostgreSQL $PG_MAJOR (this machine's): $PASSED passed, $FAILED failed")
HOST_TIME=$SECONDS

# The other versions, each in its Debian root: test/run_version.sh prints its counts last.
for v in ${ES_PG_VERSIONS-17 18}; do
    section "PostgreSQL $v (scripts/pg_env.sh $v: test/run_version.sh)"
    started=$SECONDS
    bash scripts/pg_env.sh "$v" bash /build/engagement_scoring/test/run_version.sh 2>&1 | tee "$WORK/pg$v.log"
    last=$(tail -n 1 "$WORK/pg$v.log")
    if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        count "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
        VERSION_LINES+=("PostgreSQL $v: $last, in $((SECONDS - started)) s")
    else
        count 0 1
        VERSION_LINES+=("PostgreSQL $v: FAILED before it could count (its log is above), in $((SECONDS - started)) s")
    fi
done

echo
echo "time: the whole run $SECONDS s, of which PostgreSQL $PG_MAJOR $HOST_TIME s; the Citus test there (test/shell/citus.sh) $(grep -o '^# citus: .*' "$WORK/citus_time.log" 2>/dev/null | sed 's/^# citus: //' || true)"
echo "time per script: $(IFS=,; echo "${TIMES[*]}" | sed 's/,/, /g')"
printf '%s\n' "${VERSION_LINES[@]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
