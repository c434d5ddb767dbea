#!/usr/bin/env bash
# scripts/ensure_deps.sh [--list] demo|test: makes sure this Debian (bookworm) machine has the packages the
# demo or the tests need, and installs only the missing ones.  demo/run_demo.sh and test/run_all.sh
# call it before they build anything, so the README's two commands do the whole set-up.
#
#   demo   make, g++, PostgreSQL 15 and its server headers (postgresql-server-dev-15), pg_cron
#          (postgresql-15-cron: the demo schedules refreshes with it) and matplotlib
#          (python3-matplotlib: the charts of the demo's HTML report)
#   test   the same, plus pgTAP (postgresql-15-pgtap), pg_prove (libtap-parser-sourcehandler-pgtap-perl),
#          GoogleTest (libgtest-dev), headless Chromium (chromium: opens the demo's report), and what
#          builds the Debian package (build-essential and dpkg-dev, which dpkg-buildpackage checks for,
#          debhelper, postgresql-server-dev-all: pg_buildext's), and what builds Citus 12.1.12 from
#          ../shared/vendor (scripts/install_citus.sh: the curl, lz4, zstd, Kerberos, OpenSSL and ICU
#          headers, autoconf, flex, bison), and mmdebstrap (scripts/pg_env.sh: the Debian roots with
#          PostgreSQL 17 and 18 the suite also runs on)
#
# Each package is checked with dpkg-query.  When all are installed nothing else happens; otherwise,
# as root, "apt-get update" then "apt-get install -y --no-install-recommends" of exactly the missing
# ones, quietly (the output goes to a log that is printed if apt-get fails).  Then the pg_config that
# is first on PATH (the PostgreSQL the build will use, which need not be the system one) must be
# PostgreSQL 15 with its server headers.
#
# Environment:
#   ES_SKIP_DEPS=1          check no package (a PostgreSQL not installed from Debian packages);
#                           the pg_config check still runs
#   ES_DEPS_EXTRA="p ..."   require these packages too (e.g. a made-up name, to try the install branch)
#   ES_DEPS_DRY_RUN=1       print the apt-get commands instead of running them
# Exit status 0 when everything is in place (in a dry run: when only the printed commands are left).
set -euo pipefail

say() { printf 'set-up: %s\n' "$*"; }
die() { printf 'set-up FAILED: %s\n' "$*" >&2; exit 1; }

LIST_ONLY=0
if [ "${1:-}" = --list ]; then LIST_ONLY=1; shift; fi   # print the packages and stop (.ci/run)
WHAT=${1:-}
case $WHAT in
    demo) PACKAGES=(make g++ postgresql-15 postgresql-server-dev-15 postgresql-15-cron python3-matplotlib) ;;
    test) PACKAGES=(make g++ postgresql-15 postgresql-server-dev-15 postgresql-15-cron python3-matplotlib
                    postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libgtest-dev chromium
                    build-essential dpkg-dev debhelper postgresql-server-dev-all
                    libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libicu-dev autoconf flex bison
                    mmdebstrap) ;;
    *) echo "usage: $0 [--list] demo|test" >&2; exit 2 ;;
esac
case $WHAT in demo) FOR="the demo" ;; test) FOR="the tests" ;; esac
# shellcheck disable=SC2206  # a space-separated list on purpose
PACKAGES+=(${ES_DEPS_EXTRA:-})
if [ "$LIST_ONLY" = 1 ]; then echo "${PACKAGES[*]}"; exit 0; fi

if [ "${ES_SKIP_DEPS:-0}" = 1 ]; then
    say "ES_SKIP_DEPS=1: not checking packages"
else
    command -v dpkg-query >/dev/null 2>&1 \
        || die "no dpkg-query: this set-up is for Debian bookworm. Install the equivalents of
    ${PACKAGES[*]}
  yourself, then run again with ES_SKIP_DEPS=1."

    MISSING=()
    for p in "${PACKAGES[@]}"; do
        # "install ok installed" (or "hold ok installed"); anything else, or an unknown name, is missing.
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case $status in *" ok installed") ;; *) MISSING+=("$p") ;; esac
    done

    if [ ${#MISSING[@]} -eq 0 ]; then
        say "needed by $FOR, all installed: ${PACKAGES[*]}"
    else
        say "missing for $FOR: ${MISSING[*]}"
        if [ "${ES_DEPS_DRY_RUN:-0}" = 1 ]; then
            say "dry run (ES_DEPS_DRY_RUN=1); would run:"
            echo "    apt-get update"
            echo "    apt-get install -y --no-install-recommends ${MISSING[*]}"
            exit 0
        fi
        [ "$(id -u)" -eq 0 ] || die "installing packages needs root: sudo bash $0 $WHAT (or apt-get install ${MISSING[*]})"
        command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${MISSING[*]} yourself"
        export DEBIAN_FRONTEND=noninteractive
        LOG=$(mktemp /tmp/engagement_apt.XXXXXX.log)
        say "installing them: apt-get update, then apt-get install (quiet; log $LOG) ..."
        if ! apt-get update -qq >"$LOG" 2>&1; then
            tail -n 30 "$LOG" >&2
            die "apt-get update failed (above; full log $LOG)"
        fi
        if ! apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >>"$LOG" 2>&1; then
            tail -n 30 "$LOG" >&2
            die "apt-get install ${MISSING[*]} failed (above; full log $LOG)"
        fi
        rm -f "$LOG"
        say "installed ${MISSING[*]}"
    fi
fi

# The PostgreSQL the build uses is the pg_config first on PATH (PGXS): it must be 15, with headers.
command -v pg_config >/dev/null 2>&1 \
    || die "no pg_config on PATH: put PostgreSQL 15's bin directory on PATH (Debian: /usr/lib/postgresql/15/bin)"
version=$(pg_config --version 2>/dev/null || true)
case $version in
    "PostgreSQL 15."*) ;;
    *) die "$(command -v pg_config) is \"$version\", not PostgreSQL 15: put PostgreSQL 15's bin directory first on PATH" ;;
esac
server_include=$(pg_config --includedir-server)
[ -f "$server_include/postgres.h" ] \
    || die "$(command -v pg_config) has no server headers ($server_include/postgres.h is missing): install postgresql-server-dev-15 for that PostgreSQL"
say "building against $(command -v pg_config) ($version)"
