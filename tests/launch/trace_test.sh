#!/usr/bin/env bash
# tessel-launch --trace over 2 processes: each rank writes FILE.rankR, the launcher merges them
# into FILE with the ranks as its processes, and the merged file (read by trace_check, with
# nlohmann-json) holds, per rank, one span per actor of its share of the plan per step, its
# device tracks, its steps, and the pipeline's sends and receives.
# Usage: trace_test.sh BUILD_DIR TRACE_CHECK
set -euo pipefail
bin=$1 check=$2
work=$(mktemp -d /tmp/tessel-trace-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
steps=6
"$bin/apps/launch/tessel-launch" --trace "$work/job.json" --nproc-per-node 2 -- \
  "$bin/apps/parallel/tessel-example" pipeline --steps $steps --every 3 > "$work/job.log" 2>&1 ||
  { cat "$work/job.log"; fail "the job"; }
grep -q "the trace of 2 ranks is in $work/job.json" "$work/job.log" || { cat "$work/job.log"; fail "no merge"; }
[ ! -e "$work/job.json.rank0" ] && [ ! -e "$work/job.json.rank1" ] || fail "the ranks' parts were left behind"
"$check" "$work/job.json" | tee "$work/check.log"
for rank in 0 1; do
  actors=$(sed -n "s/^\[rank $rank\] plan: rank $rank of 2 runs .*: \([0-9]*\) actors,.*/\1/p" "$work/job.log")
  [ -n "$actors" ] || { cat "$work/job.log"; fail "no plan line for rank $rank"; }
  line=$(grep "^pid $rank " "$work/check.log") || fail "no process for rank $rank"
  [[ "$line" == *"name 'rank $rank'"* ]] || fail "rank $rank's process is not named 'rank $rank'"
  [[ "$line" == *" spans $((actors * steps)) "* ]] || fail "rank $rank: expected $actors actors x $steps steps spans: $line"
  [[ "$line" == *" steps $steps "* ]] || fail "rank $rank: expected $steps steps: $line"
  [[ "$line" == *"send="* || "$line" == *"recv="* ]] || fail "rank $rank: no send or receive span in a pipeline: $line"
done
grep -q "^pid 0 .*tracks cpu:0 cpu:1 steps" "$work/check.log" || fail "rank 0's tracks are not cpu:0, cpu:1 and steps"
grep -q "^pid 1 .*tracks cpu:2 cpu:3 steps" "$work/check.log" || fail "rank 1's tracks are not cpu:2, cpu:3 and steps"
echo "PASS"
