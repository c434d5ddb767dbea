#!/usr/bin/env bash
# test/repeat.sh [N]: runs the pg_regress suite and the isolation tests N times (20 by default)
# against a throwaway cluster while two CPU-bound busy processes run beside them the whole time,
# and prints, per test, "<test>: N passed, N failed".  A test whose outcome depends on how fast or
# loaded the machine is shows up here.  Not part of test/run_all.sh (time: about 1.5 minutes a
# round on 2 cores); run it before a change that touches concurrency lands.
#
# Needs root, like run_all.sh (the server runs as postgres), and the extension built and installed
# (make install; run_all.sh does it).  ES_REPEAT_PORT chooses the cluster's port (55436); failed
# rounds' diffs are kept under ES_REPEAT_KEEP (default /tmp/engagement_repeat_diffs).
set -uo pipefail
ROUNDS=${1:-20}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
KEEP=${ES_REPEAT_KEEP:-/tmp/engagement_repeat_diffs}
. scripts/cluster.sh
scratch_dir repeat
PORT=${ES_REPEAT_PORT:-55436}

# Two busy processes for the whole run, stopped with everything else at exit.
BUSY=()
for _ in 1 2; do
    (while :; do :; done) &
    BUSY+=($!)
done
trap 'kill "${BUSY[@]}" 2>/dev/null; cluster_stop_all; rm -rf "$WORK"' EXIT

cluster_start "$WORK/pg" "$PORT" "max_parallel_workers_per_gather = 2" || { echo "could not start PostgreSQL"; exit 1; }
export PGHOST="$WORK/pg" PGPORT="$PORT" PGUSER=postgres
mkdir -p "$KEEP"

declare -A PASS FAIL
ORDER=()
for round in $(seq 1 "$ROUNDS"); do
    rm -rf results test/isolation/results regression.diffs test/isolation/regression.diffs
    make -s installcheck >"$WORK/round.log" 2>&1
    # pg_regress prints "test NAME ... ok" or "ok N - NAME" (PostgreSQL 16 on) per test
    while read -r name outcome; do
        [ -n "${PASS[$name]+x}" ] || { ORDER+=("$name"); PASS[$name]=0; FAIL[$name]=0; }
        if [ "$outcome" = ok ]; then PASS[$name]=$((PASS[$name] + 1)); else FAIL[$name]=$((FAIL[$name] + 1)); fi
    done < <(sed -nE 's/^(test|     ) *([a-z_0-9]+) +\.\.\. (ok|FAILED).*/\2 \3/p;
                      s/^(not ok|ok) +[0-9]+ +[-+] ([a-z_0-9]+) .*/\2 \1/p' "$WORK/round.log" | sed 's/ not ok$/ FAILED/')
    failed_now=$(grep -cE 'FAILED|^not ok' "$WORK/round.log")
    echo "round $round of $ROUNDS: $failed_now failed"
    if [ "$failed_now" -gt 0 ]; then
        for d in regression.diffs test/isolation/regression.diffs; do
            [ -f "$d" ] && cp "$d" "$KEEP/round$round.$(basename "$(dirname "$d")").diffs"
        done
    fi
done

echo
failed_tests=0
for name in "${ORDER[@]}"; do
    echo "$name: ${PASS[$name]} passed, ${FAIL[$name]} failed"
    [ "${FAIL[$name]}" -gt 0 ] && failed_tests=$((failed_tests + 1))
done
where=""
[ "$failed_tests" -gt 0 ] && where=" (their diffs in $KEEP)"
echo "$ROUNDS rounds under load: $(( ${#ORDER[@]} - failed_tests )) tests passed every time, $failed_tests failed at least once$where"
[ "$failed_tests" -eq 0 ]
