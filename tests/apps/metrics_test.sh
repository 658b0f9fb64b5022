#!/usr/bin/env bash
# --metrics FILE: a short GPT run writes one JSON line per step (step, loss, tokens/s, lr, time)
# and one per validation (step, val_loss, time); the parallel example under tessel-launch over 2
# ranks writes one file, from the rank that holds the loss; scripts/plot.sh draws a PNG from each.
# Usage: metrics_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
bin=$(cd "$1" && pwd) source=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/tessel-metrics-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin/apps/gpt/tessel-gpt" --steps 6 --eval-every 3 --eval-batches 1 --width 32 --heads 2 --layers 1 --context 16 \
  --batch 4 --sample 0 --metrics "$work/gpt.jsonl" > "$work/gpt.log" 2>&1 || { cat "$work/gpt.log"; fail "tessel-gpt"; }
[ "$(jq -s '[.[] | select(.loss != null)] | length' "$work/gpt.jsonl")" = 6 ] || fail "expected 6 loss lines"
[ "$(jq -s '[.[] | select(.val_loss != null)] | map(.step) | join(",")' "$work/gpt.jsonl")" = '"3,6"' ] ||
  fail "expected validation at steps 3 and 6"
jq -e -s 'map(select(.loss != null)) | all(has("step") and has("tokens_per_s") and has("lr") and has("time"))' \
  "$work/gpt.jsonl" > /dev/null || fail "a loss line lacks step, tokens_per_s, lr or time"
jq -e -s 'map(select(.loss != null)) | map(.step) == [1,2,3,4,5,6]' "$work/gpt.jsonl" > /dev/null || fail "steps"
"$source/scripts/plot.sh" "$work/gpt.jsonl" "$work/gpt.png"
[ "$(head -c 4 "$work/gpt.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "gpt.png is not a PNG"

(cd "$work" && "$bin/apps/launch/tessel-launch" --nproc-per-node 2 -- "$bin/apps/parallel/tessel-example" tensor-parallel \
  --steps 5 --metrics "$work/example.jsonl") > "$work/example.log" 2>&1 || { cat "$work/example.log"; fail "the job"; }
[ "$(wc -l < "$work/example.jsonl")" = 5 ] || { cat "$work/example.jsonl"; fail "expected one line per step from one rank"; }
jq -e -s 'all(.loss == .loss_one_device or ((.loss - .loss_one_device) | fabs) < 1e-5)' "$work/example.jsonl" > /dev/null ||
  fail "the loss differs from one device's"
"$source/scripts/plot.sh" "$work/example.jsonl" > /dev/null
[ -s "$work/example.png" ] || fail "no example.png"
echo "PASS"
