#!/usr/bin/env bash
# The Debian package: builds it from a copy of the tree with `dpkg-buildpackage -us -uc -b` (debian/,
# pg_buildext), checks what it holds, installs it into a clean PostgreSQL (the major version of the
# pg_config first on PATH: 15 here, 17 or 18 in scripts/pg_env.sh's roots), runs CREATE EXTENSION
# and the regression suite (`make installcheck`: pg_regress and the isolation tests) against that
# installation alone, then removes it.  Prints TAP-style lines.  Run by test/run_all.sh before it
# builds and installs from source (an installed package and `make install` write the same files).
#
# ES_PACKAGE_INSTALL chooses how the package is installed:
#   apt      (CI: .ci/run sets it) `apt-get install -y ./postgresql-NN-engagement-scoring_*.deb` into
#            the system's PostgreSQL NN, then `apt-get purge`, checking every file is gone.  Files of
#            an earlier `make install` are removed first, so the server sees the package's alone.
#   extract  (the default, for a machine whose PostgreSQL others use) `dpkg-deb -x` into a private
#            copy of the system's PostgreSQL NN (bin, lib, share) from which every engagement_scoring
#            file was removed first; the server runs from that copy.  apt-get is not run.
# ES_PACKAGE_PORT: the throwaway cluster's port (default 55440).  ES_WORK: scratch directory.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
MODE=${ES_PACKAGE_INSTALL:-extract}
PORT=${ES_PACKAGE_PORT:-55440}
PG_MAJOR=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
PKG=postgresql-$PG_MAJOR-engagement-scoring
SYSPG=/usr/lib/postgresql/$PG_MAJOR
SYSSHARE=/usr/share/postgresql/$PG_MAJOR
. "$(dirname "$0")/../tap.sh"
fail_rest() { echo "not ok - $1"; exit 1; }   # nothing after this step can run

case $MODE in apt|extract) ;; *) fail_rest "ES_PACKAGE_INSTALL must be apt or extract, not '$MODE'" ;; esac
W=$(mktemp -d "${ES_WORK:-/tmp}/package.XXXXXX")
chmod 755 "$W"
CLUSTER_PID_DIR=""
cleanup() {
    [ -n "$CLUSTER_PID_DIR" ] && [ -f "$CLUSTER_PID_DIR/data/postmaster.pid" ] \
        && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER_PID_DIR/data" -m fast -w stop >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT

# 1. Build from a copy of the tree (dpkg-buildpackage writes the .deb next to the tree and cleans
#    it with make clean): the committed sources, without build products of the work tree.
EXTVERSION=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO/engagement_scoring.control")
mkdir "$W/src"
tar -C "$REPO" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./results \
    --exclude=./test/isolation/results --exclude=./META.json --exclude="./extension/engagement_scoring--$EXTVERSION.sql" \
    --exclude=./test/unit/kernel_tests --exclude=./demo/out -cf - . | tar -C "$W/src" -xf -
start=$(date +%s)
# (debian/control lists a package per version of debian/pgversions this distribution supports:
# written again for this one, as Debian's own builds do)
(cd "$W/src" && pg_buildext updatecontrol && DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1
rc=$?
DEB=$(ls "$W/${PKG}"_*.deb 2>/dev/null | head -1)
if [ "$rc" -ne 0 ] || [ -z "$DEB" ]; then
    tail -n 40 "$W/build.log" | sed 's/^/# /'
    fail_rest "dpkg-buildpackage -us -uc -b builds $PKG (exit $rc)"
fi
echo "ok - dpkg-buildpackage -us -uc -b builds $(basename "$DEB") in $(( $(date +%s) - start )) s"

# 2. What it holds.
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$' >"$W/files"
check "the package holds the library, the control file and the $EXTVERSION install script" \
    'grep -qx "$SYSPG/lib/engagement_scoring.so" "$W/files" &&
     grep -qx "$SYSSHARE/extension/engagement_scoring.control" "$W/files" &&
     grep -qx "$SYSSHARE/extension/engagement_scoring--$EXTVERSION.sql" "$W/files"'
missing=""
for f in "$REPO"/extension/engagement_scoring--1.0.sql "$REPO"/extension/engagement_scoring--*--*.sql; do
    grep -qx "$SYSSHARE/extension/$(basename "$f")" "$W/files" || missing="$missing $(basename "$f")"
done
check "the package holds every older install and upgrade script (ALTER EXTENSION UPDATE)${missing:+; missing:$missing}" '[ -z "$missing" ]'
check "the package holds the documentation and the licence" \
    'grep -q "/usr/share/doc/$PKG/README.md" "$W/files" && grep -qx "/usr/share/doc/$PKG/copyright" "$W/files"'
check "nothing outside PostgreSQL $PG_MAJOR's directories and the package's documentation" \
    '! grep -vE "^($SYSPG/lib/|$SYSSHARE/extension/|/usr/share/doc/$PKG/)" "$W/files" | grep -q .'
deps=$(dpkg-deb -f "$DEB" Depends)
check "it depends on postgresql-$PG_MAJOR ($deps)" 'grep -qE "(^|, )postgresql-$PG_MAJOR(,|$| )" <<<"$deps"'
check "its version is the extension's ($(dpkg-deb -f "$DEB" Version))" '[ "$(dpkg-deb -f "$DEB" Version | sed "s/-[^-]*$//")" = "$EXTVERSION" ]'

# 3. Install it into a PostgreSQL $PG_MAJOR without any other engagement_scoring files.
if [ "$MODE" = apt ]; then
    PGBIN=$SYSPG/bin
    if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "ok installed"; then
        apt-get purge -y -qq "$PKG" >/dev/null 2>&1
    fi
    rm -f "$SYSPG"/lib/engagement_scoring.so $SYSSHARE/extension/engagement_scoring[.-]*
    rm -rf "$SYSPG"/lib/bitcode/engagement_scoring "$SYSPG"/lib/bitcode/engagement_scoring.index.bc
    (cd "$W" && DEBIAN_FRONTEND=noninteractive apt-get install -y "./$(basename "$DEB")") >"$W/install.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || { tail -n 20 "$W/install.log" | sed 's/^/# /'; fail_rest "apt-get install -y ./$(basename "$DEB") (exit $rc)"; }
    check "apt-get install -y ./$(basename "$DEB") installs it" \
        'dpkg-query -W -f="\${Status}" "$PKG" | grep -q "ok installed"'
else
    echo "# ES_PACKAGE_INSTALL=extract: dpkg-deb -x into a private copy of $SYSPG (apt-get install and purge are CI's, ES_PACKAGE_INSTALL=apt)"
    ROOT=$W/root
    mkdir -p "$ROOT/usr/lib/postgresql" "$ROOT/usr/share/postgresql"
    cp -a "$SYSPG" "$ROOT/usr/lib/postgresql/" && cp -a "$SYSSHARE" "$ROOT/usr/share/postgresql/" \
        || fail_rest "copying $SYSPG and $SYSSHARE"
    rm -f "$ROOT$SYSPG"/lib/engagement_scoring.so "$ROOT"$SYSSHARE/extension/engagement_scoring[.-]*
    rm -rf "$ROOT$SYSPG"/lib/bitcode/engagement_scoring "$ROOT$SYSPG"/lib/bitcode/engagement_scoring.index.bc
    dpkg-deb -x "$DEB" "$ROOT" || fail_rest "dpkg-deb -x $(basename "$DEB")"
    PGBIN=$ROOT$SYSPG/bin
    missing=$(while read -r f; do [ -e "$ROOT$f" ] || echo "$f"; done <"$W/files")
    check "dpkg-deb -x puts every file of the package in place" '[ -z "$missing" ]'
fi
PGCONFIG=$PGBIN/pg_config
check "the server's extension directory holds the package's files alone ($("$PGCONFIG" --sharedir)/extension)" \
    '[ "$(ls "$("$PGCONFIG" --sharedir)"/extension/engagement_scoring* | wc -l)" = "$(grep -c "/extension/" "$W/files")" ]'

# 4. A clean throwaway cluster from that PostgreSQL: CREATE EXTENSION, then the regression suite.
mkdir -p "$W/pg" && chown postgres "$W/pg" && chmod 700 "$W/pg"
CLUSTER_PID_DIR=$W/pg
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg/data" -A trust -U postgres --no-sync >"$W/initdb.log" 2>&1 \
    || { sed 's/^/# /' "$W/initdb.log"; fail_rest "initdb"; }
printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\nfsync = off\nmax_worker_processes = 16\n" \
    "$PORT" "$W/pg" >>"$W/pg/data/postgresql.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w -t 60 start >/dev/null \
    || { sed 's/^/# /' "$W/pg/server.log"; fail_rest "a cluster of the installed PostgreSQL starts on port $PORT"; }
export PGHOST=$W/pg PGPORT=$PORT PGUSER=postgres
q() { "$PGBIN/psql" -qXAt -v ON_ERROR_STOP=1 "$@"; }
q -d postgres -c "CREATE DATABASE pkg_test"
v=$(q -d pkg_test -c "CREATE EXTENSION engagement_scoring" -c "SELECT extversion FROM pg_extension WHERE extname = 'engagement_scoring'" 2>&1)
check "CREATE EXTENSION engagement_scoring installs $EXTVERSION from the package ($v)" '[ "$v" = "$EXTVERSION" ]'
s=$(q -d pkg_test -c "INSERT INTO engagement.engagement_events (contact_id, event_type, occurred_at)
                       VALUES (1, 'delivered', now() - interval '2 days'), (1, 'opened', now() - interval '1 day')" \
      -c "SELECT segment FROM engagement.readable_score(engagement.engagement_score(1))" 2>&1)
check "the package's library scores a contact ($s)" '[ -n "$s" ] && ! grep -q ERROR <<<"$s"'

# The tree's copy holds the tests and the CDNOW data they read (test/data/cdnow).
start=$(date +%s)
(cd "$W/src" && make -s installcheck PG_CONFIG="$PGCONFIG") >"$W/regress.log" 2>&1
rc=$?
# (PostgreSQL 15: "test NAME ... ok"; 16 and later: "ok N - NAME")
passed=$(grep -cE '\.\.\. ok|^ok +[0-9]+ +[-+] ' "$W/regress.log")
failed=$(grep -cE 'FAILED|failed \(ignored\)|^not ok +[0-9]+ ' "$W/regress.log")
check "make installcheck against the installed package: $passed tests passed, $failed failed, in $(( $(date +%s) - start )) s" \
    '[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 10 ]'
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    grep -E 'FAILED|failed' "$W/regress.log" | sed 's/^/# /'
    for d in "$W/src/regression.diffs" "$W/src/test/isolation/regression.diffs"; do
        [ -f "$d" ] && head -60 "$d" | sed 's/^/# /'
    done
fi
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1

# 5. Remove it: every file it installed goes.
if [ "$MODE" = apt ]; then
    (DEBIAN_FRONTEND=noninteractive apt-get purge -y "$PKG") >"$W/purge.log" 2>&1
    rc=$?
    left=$(while read -r f; do [ -e "$f" ] && echo "$f"; done <"$W/files")
    check "apt-get purge $PKG removes it and every file it installed${left:+ (left: $left)}" \
        '[ "$rc" -eq 0 ] && [ -z "$left" ] && ! dpkg-query -W -f="\${Status}" "$PKG" 2>/dev/null | grep -q "ok installed"'
else
    echo "# ES_PACKAGE_INSTALL=extract: no apt-get purge here (the private copy is deleted)"
fi
