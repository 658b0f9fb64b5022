#!/usr/bin/env bash
# tessel-plan --svg and --png draw the tensor-parallel example's plan through Graphviz: the SVG
# names every device's cluster and the boxing cluster, its edges carry SBP and bytes, and the PNG
# is a PNG. Without Graphviz's dot on PATH the error says what to install.
# Usage: plan_picture_test.sh TESSEL_PLAN
set -euo pipefail
plan=$1
work=$(mktemp -d /tmp/tessel-plan-picture.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$plan" --example tensor-parallel --svg "$work/plan.svg" --png "$work/plan.png" > "$work/out.log" || fail "tessel-plan"
head -c 400 "$work/plan.svg" | grep -q "<svg" || fail "plan.svg is not an SVG"
for device in 0 1 2 3; do
  grep -q "rank 0 cpu:$device" "$work/plan.svg" || fail "the SVG does not name cpu:$device"
done
grep -q "boxing and collectives" "$work/plan.svg" || fail "no boxing cluster in the SVG"
grep -q "all_reduce" "$work/plan.svg" || fail "no all_reduce actor in the SVG"
grep -q "S(1), [0-9.]* KiB" "$work/plan.svg" || fail "no edge labelled with an SBP and bytes"
[ "$(head -c 4 "$work/plan.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "plan.png is not a PNG"
echo "ok: the SVG names cpu:0..3, the boxing cluster and SBP with bytes; the PNG is a PNG"
if env PATH=/nonexistent "$plan" --example tensor-parallel --svg "$work/x.svg" > "$work/nodot.log" 2>&1; then
  fail "tessel-plan --svg succeeded without dot"
fi
grep -q "needs Graphviz's \`dot\` program.*apt-get install graphviz" "$work/nodot.log" || { cat "$work/nodot.log"; fail "the error without dot"; }
echo "PASS"
