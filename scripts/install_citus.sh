#!/usr/bin/env bash
# scripts/install_citus.sh [vendor dir]: makes sure the PostgreSQL whose pg_config is first on PATH
# has Citus.  A Citus already installed there (from a package, or an earlier run) is used as it
# is; otherwise the Citus release for that PostgreSQL is built from the vendored source
# (../shared/vendor beside the repository, checked against its sha256): 12.1.12 for PostgreSQL 15,
# 14.0.1 for 17 and 18 (13.2.2, for 16, no Debian package to test with).  Debian does not package
# Citus.  Needs root (make install writes PostgreSQL's directories) and the build packages of
# scripts/ensure_deps.sh test.  About 3 minutes on 2 cores.  Prints what it did on its last line.
# Exit status: 0 Citus is installed; 3 it is not, and there is no source to build it from; 1 the
# build failed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENDOR=${1:-$REPO/../shared/vendor}
PG_MAJOR=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
case $PG_MAJOR in
    15) CITUS=12.1.12; SHA256=c66b8c6544a6f7e55fbbcca55258c6f9ad91d3486bb7404bb883b689f39ecc86 ;;
    16) CITUS=13.2.2;  SHA256=c8fc76dc8294636a52b1a0dd75a20d8b4a36937df6443e30ca84d8d0464a6bb9 ;;
    17|18) CITUS=14.0.1; SHA256=26ddb8ec9de07c5fa8426e435d10936e5cd6bed01a5ad94aab92e818081e5ec9 ;;
    *) echo "install_citus.sh: no Citus release here for PostgreSQL $PG_MAJOR" >&2; exit 1 ;;
esac
TARBALL=$VENDOR/citus-$CITUS.tar.gz
LIBDIR=$(pg_config --pkglibdir)
SHAREDIR=$(pg_config --sharedir)

if [ -f "$LIBDIR/citus.so" ] && [ -f "$SHAREDIR/extension/citus.control" ]; then
    echo "Citus $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$SHAREDIR/extension/citus.control") is already installed in $LIBDIR"
    exit 0
fi
if [ ! -f "$TARBALL" ]; then
    echo "no Citus in $LIBDIR, and no source to build it from ($TARBALL is missing)"
    exit 3
fi
echo "$SHA256  $TARBALL" | sha256sum -c --quiet - || { echo "install_citus.sh: $TARBALL does not match its sha256" >&2; exit 1; }
BUILD=$(mktemp -d /tmp/citus-build.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT
started=$(date +%s)
tar -xzf "$TARBALL" -C "$BUILD"
cd "$BUILD/citus-$CITUS"
./configure PG_CONFIG="$(command -v pg_config)" >"$BUILD/configure.log" 2>&1 || { tail -30 "$BUILD/configure.log"; exit 1; }
make -j"$(nproc)" >"$BUILD/make.log" 2>&1 || { tail -30 "$BUILD/make.log"; exit 1; }
make install >"$BUILD/install.log" 2>&1 || { tail -30 "$BUILD/install.log"; exit 1; }
echo "built and installed Citus $CITUS into $LIBDIR in $(( $(date +%s) - started )) s"
