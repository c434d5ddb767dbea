#!/usr/bin/env bash
# scripts/pg_env.sh VERSION [COMMAND...]: a Debian root with PostgreSQL VERSION (17 or 18) from
# Debian's own packages, and COMMAND run in it as root (default: an interactive shell).
#
#   17   Debian 13 (trixie), the current stable: postgresql-17
#   18   Debian's development suite (sid): postgresql-18
#
# The root holds that version's postgresql-NN, postgresql-server-dev-NN, postgresql-NN-pgtap,
# postgresql-NN-cron, pg_prove, a compiler, make and what builds Citus and the Debian package.  It
# is made once with mmdebstrap (installed on the host when missing), from the Debian archive the
# host's apt already uses (read from its sources), and reused by every later run on the machine:
# ES_PG_ENV_DIR/pgNN (default /var/tmp/engagement_pg_env).  The repository is copied into the root
# at /build/engagement_scoring (a fresh copy each run: the build there is that version's), and
# ../shared/vendor, when beside the repository, is bound beside it (read-only).  /proc and a /dev/shm are
# mounted for the command and unmounted when it ends.  Servers the command starts run as the root's
# postgres user on loopback and must be stopped by it.  Needs root.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${1:?usage: scripts/pg_env.sh 17|18 [command...]}
shift
case $VERSION in
    17) SUITE=trixie; APTOPTS=() ;;
    # (the development suite's Release file carries a Valid-Until that a frozen mirror lets pass)
    18) SUITE=sid; APTOPTS=(--aptopt='Acquire::Check-Valid-Until "false"') ;;
    *) echo "pg_env.sh: PostgreSQL $VERSION has no environment here (17 or 18; 15 is the host's own)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "pg_env.sh: run it as root (mmdebstrap, chroot, mounts)" >&2; exit 1; }
ROOT=${ES_PG_ENV_DIR:-/var/tmp/engagement_pg_env}/pg$VERSION
PACKAGES=(postgresql-$VERSION postgresql-server-dev-$VERSION postgresql-$VERSION-pgtap postgresql-$VERSION-cron
          libtap-parser-sourcehandler-pgtap-perl g++ make git ca-certificates
          build-essential dpkg-dev debhelper postgresql-server-dev-all
          libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libicu-dev autoconf flex bison)

# The URI the host's apt reads Debian from: the first source (one-line or deb822 form) of the
# host's own suite, e.g. bookworm.
debian_mirror() {
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    {
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v s="$codename" '$1 == "deb" && $0 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == s) { u = ($2 ~ /^\[/) ? $3 : $2; print u } }'
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            awk -v s="$codename" 'BEGIN { RS = ""; FS = "\n" }
                { uris = ""; suites = ""
                  for (i = 1; i <= NF; i++) { if ($i ~ /^URIs:/) uris = $i; if ($i ~ /^Suites:/) suites = $i }
                  n = split(suites, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == s) { split(uris, u, /[ \t]+/); print u[2] } }' "$f"
        done
    } | head -1
}

if [ ! -x "$ROOT/usr/lib/postgresql/$VERSION/bin/postgres" ]; then
    MIRROR=$(debian_mirror)
    [ -n "$MIRROR" ] || { echo "pg_env.sh: found no Debian archive in the host's apt sources" >&2; exit 1; }
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        echo "pg_env.sh: installing mmdebstrap" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
    fi
    echo "pg_env.sh: making $ROOT (Debian $SUITE with PostgreSQL $VERSION, from $MIRROR); minutes, once" >&2
    rm -rf "$ROOT.new"
    mkdir -p "$(dirname "$ROOT")"
    started=$SECONDS
    mmdebstrap --quiet --variant=apt "${APTOPTS[@]}" --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        "$SUITE" "$ROOT.new" "$MIRROR" >&2
    rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT"
    echo "pg_env.sh: made $ROOT in $((SECONDS - started)) s" >&2
fi

# The repository, copied fresh (its committed and uncommitted files, no build products).
rm -rf "$ROOT/build/engagement_scoring"
mkdir -p "$ROOT/build/engagement_scoring"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - --no-recursion) \
    | tar -C "$ROOT/build/engagement_scoring" -xf -

MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc")
mkdir -p "$ROOT/dev/shm" && mount -t tmpfs -o size=4g tmpfs "$ROOT/dev/shm" && MOUNTED+=("$ROOT/dev/shm")
# (where the repository's scripts look for it: ../shared/vendor beside the copy)
if [ -d "$REPO/../shared/vendor" ]; then
    mkdir -p "$ROOT/build/shared/vendor" && mount --bind -o ro "$REPO/../shared/vendor" "$ROOT/build/shared/vendor" \
        && MOUNTED+=("$ROOT/build/shared/vendor")
fi
[ $# -gt 0 ] || set -- bash
# (a clean environment but for the suite's settings, ES_*)
mapfile -t SETTINGS < <(env | grep -E '^ES_[A-Z0-9_]*=' || true)
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" "${SETTINGS[@]}" "$@"
