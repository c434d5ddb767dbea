#!/usr/bin/env bash
# test/run_version.sh: a PostgreSQL version's part of the suite, run by test/run_all.sh in that
# version's Debian root (scripts/pg_env.sh 17|18 bash /build/engagement_scoring/test/run_version.sh),
# as root: the Debian package (built with -Wall -Wextra -Werror, installed with apt-get, put
# through pg_regress and the isolation tests, purged), the build and installation from source, then
# against it pgTAP, the upgrades from every released version, a real pg_cron job, dump/restore, and
# Citus (the release for this version, built from ../shared/vendor).  (pg_regress runs once, on the
# package: the same code as the source build.)  The ports are the host suite's plus 100 per version above 15, so
# both can run at once.  Last line: "N passed, N failed".
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. test/suite.sh
. scripts/cluster.sh
PG_MAJOR=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
OFFSET=$(( (PG_MAJOR - 15) * 100 ))
export ES_PACKAGE_PORT=$(( ${ES_PACKAGE_PORT:-55440} + OFFSET )) ES_CITUS_PORT=$(( ${ES_CITUS_PORT:-55470} + OFFSET ))
PORT=$(( ${ES_TEST_PORT:-55432} + OFFSET ))
# (the root is this suite's own: the package is installed with apt-get and purged)
export ES_PACKAGE_INSTALL=apt
scratch_dir "pg$PG_MAJOR"
echo "PostgreSQL $(pg_config --version | sed 's/^PostgreSQL //'), $(. /etc/os-release && echo "$PRETTY_NAME"), $(gcc --version | head -1)"

section "Debian package (test/package/debian_package.sh)"
run_tap test/package/debian_package.sh

build_and_install

section "starting a throwaway cluster on port $PORT"
start_test_cluster "$WORK/pg" "$PORT" || setup_failed "could not start PostgreSQL (above)"

section "pgTAP (test/pgtap/)"
run_pgtap

section "shell tests: upgrades, pg_cron, dump/restore, Citus"
for t in upgrade pg_cron dump_restore citus; do
    run_tap "test/shell/$t.sh"
done

echo "time per script: $(IFS=,; echo "${TIMES[*]}" | sed 's/,/, /g'); in all $SECONDS s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
