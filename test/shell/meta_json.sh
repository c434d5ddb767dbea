#!/usr/bin/env bash
# PGXN metadata and licence: META.json (built by the Makefile from META.json.in) has every field the
# PGXN Meta Spec 1.0.0 requires, of the right form (name, abstract, version, maintainer, license,
# provides with file and version, meta-spec), carries the control file's version (the one place it
# is written) as the install script does, and names the PostgreSQL License that LICENSE holds; the
# supported PostgreSQL (15, 17 and 18) is stated alike in META.json, the control file, the README and
# debian/pgversions; the
# Debian changelog packages that same version.  Needs no server.  Prints TAP-style lines.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 1
. "$REPO/test/tap.sh"

out=$(make -s META.json extension/engagement_scoring--"$(sed -n "s/^default_version = '\(.*\)'/\1/p" engagement_scoring.control)".sql 2>&1)
check "make builds META.json and the install script${out:+ ($out)}" '[ -f META.json ]'

# The spec's rules, checked one by one; each failure is printed on its own line.
${ES_PYTHON:-/usr/bin/python3} - <<'PY'
import json, os, re, sys

def line(ok, what):
    print(("ok - " if ok else "not ok - ") + what)

try:
    meta = json.load(open("META.json"))
    line(True, "META.json is valid JSON")
except Exception as e:          # nothing else can be checked
    line(False, "META.json is valid JSON (%s)" % e)
    sys.exit(0)

control = open("engagement_scoring.control").read()
extversion = re.search(r"^default_version = '([^']*)'", control, re.M).group(1)
# PGXN versions are semantic versions; the extension's "1.4" is "1.4.0".
semver_of_ext = extversion + ".0" if re.fullmatch(r"\d+\.\d+", extversion) else extversion
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-.]+)?")
# A PGXN term: at least two characters, no whitespace, slash, backslash or control character.
def term(s): return isinstance(s, str) and len(s) >= 2 and not re.search(r"[\s/\\\x00-\x1f]", s)

required = ["name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"]
missing = [k for k in required if k not in meta]
line(not missing, "META.json has every required field of the PGXN Meta Spec (%s)%s"
     % (", ".join(required), "; missing: " + ", ".join(missing) if missing else ""))
line(term(meta.get("name")) and meta.get("name") == "engagement_scoring", "name is a PGXN term: engagement_scoring")
line(isinstance(meta.get("abstract"), str) and meta["abstract"].strip() != "", "abstract is a non-empty string")
line(isinstance(meta.get("version"), str) and SEMVER.fullmatch(meta["version"]) is not None,
     "version %r is a semantic version" % meta.get("version"))
m = meta.get("maintainer")
line((isinstance(m, str) and m) or (isinstance(m, list) and m and all(isinstance(x, str) and x for x in m)),
     "maintainer is a string or a list of strings")
line(meta.get("license") == "postgresql", "license is \"postgresql\" (the spec's name of the PostgreSQL License)")
spec = meta.get("meta-spec")
line(isinstance(spec, dict) and spec.get("version") == "1.0.0", "meta-spec names version 1.0.0")

prov = meta.get("provides")
ok = isinstance(prov, dict) and len(prov) > 0 and all(
    term(name) and isinstance(p, dict) and isinstance(p.get("file"), str) and isinstance(p.get("version"), str)
    and SEMVER.fullmatch(p["version"]) for name, p in prov.items())
line(ok, "provides: each extension has a file and a semantic version")
ext = (prov or {}).get("engagement_scoring", {})
line(ext.get("file") == "extension/engagement_scoring--%s.sql" % extversion and os.path.isfile(ext.get("file", "")),
     "provides.engagement_scoring.file is the install script CREATE EXTENSION runs (%s), and make built it" % ext.get("file"))
line(meta.get("version") == semver_of_ext and ext.get("version") == semver_of_ext,
     "the distribution and the extension are version %s, the control file's default_version %s"
     % (semver_of_ext, extversion))
line(isinstance(ext.get("docfile"), str) and os.path.isfile(ext["docfile"]), "provides.engagement_scoring.docfile exists")

pg = meta.get("prereqs", {}).get("runtime", {}).get("requires", {}).get("PostgreSQL")
line(pg == ">= 15.0.0, < 19.0.0", "prereqs: PostgreSQL 15 to 18 (%r)" % pg)
PY

check "LICENSE is the PostgreSQL License" 'head -1 LICENSE | grep -qx "PostgreSQL License" && grep -q "Permission to use, copy, modify, and distribute this software" LICENSE'
check "the README names LICENSE and the PostgreSQL License" 'grep -q "\[LICENSE\](LICENSE)" README.md && grep -q "PostgreSQL License" README.md'
# The versions built and tested are debian/pgversions' (the packages, and test/run_all.sh's roots).
versions=$(paste -sd' ' debian/pgversions)
said=$(sed -E 's/ ([0-9]+)$/ and \1/; s/ ([0-9]+) and/, \1 and/' <<<"$versions")   # "15, 17 and 18"
check "debian/pgversions lists the versions built and tested ($versions), as test/run_all.sh runs them" \
    '[ "$versions" = "15 17 18" ] && grep -q "ES_PG_VERSIONS-17 18" test/run_all.sh'
check "the control file says the supported PostgreSQL is $said" 'grep -q "^# Supported PostgreSQL: $said," engagement_scoring.control'
check "the README says the supported PostgreSQL is $said" 'grep -q "Supported PostgreSQL: $said" README.md'
EXTVERSION=$(sed -n "s/^default_version = '\(.*\)'/\1/p" engagement_scoring.control)
deb=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null)
check "debian/changelog packages the control file's version ($deb: upstream ${deb%-*}, control $EXTVERSION)" '[ "${deb%-*}" = "$EXTVERSION" ]'
