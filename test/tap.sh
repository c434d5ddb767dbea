# test/tap.sh: what the TAP-style test scripts (test/shell/, test/package/) share; sourced.
# check DESCRIPTION CONDITION: prints "ok - DESCRIPTION" when the shell CONDITION holds, else
# "not ok - DESCRIPTION" and returns 1 (so that "check ... || show what went wrong" can follow).
check() { if eval "$2"; then echo "ok - $1"; else echo "not ok - $1"; return 1; fi; }
# wait_until TRIES SECONDS CONDITION: evaluates the shell CONDITION (which may set variables, as
# 'n=$(q ...) && [ "$n" -gt 0 ]') until it holds, at most TRIES times, SECONDS apart; returns 1 if
# it never did.  For a state another session reaches: the bound is generous, the test's outcome
# never depends on the machine's speed.
wait_until() { local i; for ((i = 0; i < $1; i++)); do eval "$3" && return 0; sleep "$2"; done; return 1; }
