#!/usr/bin/env bash
# The recovery sweep, larger than CI's: RUNS runs (50 by default: 100 kill points), each a 4-rank
# job that loses two random members (member 0 too) at random steps and delays into the step
# (tests/launch/recovery_test.sh, mode random), over the four example layouts in turn. Prints each
# run's kill points and recovery line, then the count of runs that passed, hung or failed.
#
#   bench/recovery_sweep.sh [BUILD_DIR] [RUNS] [FIRST_SEED]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build} runs=${2:-50} first=${3:-100}
layouts=(data-parallel tensor-parallel pipeline hybrid)
passed=0 failed=0 hung=0
for ((i = 0; i < runs; i++)); do
  seed=$((first + i)) layout=${layouts[$((i % 4))]}
  output=$(RECOVERY_SEED=$seed timeout 200 bash "$here/../tests/launch/recovery_test.sh" "$bin" random "$layout" 2>&1)
  status=$?
  echo "$output" | grep -E "^seed|^recovered:" | sed "s/^/[$layout] /" | cut -c1-400
  if [ $status = 124 ]; then
    hung=$((hung + 1)); echo "[$layout] seed $seed: HUNG"
  elif echo "$output" | grep -q "^PASS:"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "$output" | grep "^FAIL" | sed "s/^/[$layout] seed $seed: /"
  fi
done
echo "recovery sweep: $runs runs, $((2 * runs)) kill points: $passed passed, $failed failed, $hung hung"
[ $passed = "$runs" ]
