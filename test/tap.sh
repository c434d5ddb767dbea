# test/tap.sh: what the TAP-style test scripts (test/shell/, test/package/) share; sourced.
# check DESCRIPTION CONDITION: prints "ok - DESCRIPTION" when the shell CONDITION holds, else
# "not ok - DESCRIPTION" and returns 1 (so that "check ... || show what went wrong" can follow).
check() { if eval "$2"; then echo "ok - $1"; else echo "not ok - $1"; return 1; fi; }
