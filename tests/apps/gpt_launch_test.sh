#!/usr/bin/env bash
# tessel-gpt as a 2-process job under tessel-launch, in each layout (data-parallel,
# tensor-parallel, pipeline, and hybrid over 4 devices), against the same model alone in one
# process: every step's loss and every validation loss within 1e-5 relative (from --metrics),
# and the same sample. Also the progress: plain lines in a log (step / total, loss, val, tok/s,
# elapsed, eta), and one line rewritten in place (carriage returns) on a terminal.
# Usage: gpt_launch_test.sh BUILD_DIR
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/tessel-gpt-launch-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
gpt="$bin/apps/gpt/tessel-gpt"
model=(--steps 8 --eval-every 4 --eval-batches 2 --width 32 --heads 2 --layers 2 --context 16 --batch 8
       --warmup 2 --seed 5)

"$gpt" "${model[@]}" --sample 48 --metrics "$work/single.jsonl" > "$work/single.log" 2>&1 ||
  { cat "$work/single.log"; fail "tessel-gpt alone"; }
# The text between the sample's two ---- lines (the launcher prefixes each line with its rank).
sample_of() { sed -e 's/^\[rank [0-9]*\] //' "$1" | awk '/^----$/ { inside = !inside; next } inside'; }
sample=$(sample_of "$work/single.log")
[ "${#sample}" -ge 48 ] || { cat "$work/single.log"; fail "no sample of 48 characters after the prompt"; }

# Plain progress lines in a log: no carriage return, and each field.
grep -q $'\r' "$work/single.log" && fail "a log (not a terminal) got carriage returns"
grep -Eq '^step 8/8  loss [0-9.]+  val [0-9.]+ \(step 8\)  [0-9]+ tok/s  elapsed [0-9]+:[0-9]{2}  eta [0-9]+:[0-9]{2}$' \
  "$work/single.log" || { cat "$work/single.log"; fail "no plain progress line for step 8/8"; }
[ "$(grep -c '^step [0-9]*/8 ' "$work/single.log")" -ge 2 ] || fail "expected a progress line per print"

# On a terminal (script(1) gives it one), the progress is one line rewritten in place.
script -qec "'$gpt' ${model[*]} --print-every 1 --sample 0" /dev/null > "$work/tty.log" 2>&1 ||
  { cat "$work/tty.log"; fail "tessel-gpt on a terminal"; }
[ "$(tr -cd '\r' < "$work/tty.log" | wc -c)" -ge 8 ] || { od -c "$work/tty.log" | head -20; fail "no in-place progress on a terminal"; }
grep -aq $'\rstep 8/8  loss' "$work/tty.log" || fail "the terminal's last progress line is not step 8/8"

# same_losses ONE JOB TOLERANCE: the same steps, losses and validation losses, within TOLERANCE relative.
same_losses() {
  jq -e -n --slurpfile one "$1" --slurpfile job "$2" --argjson tolerance "$3" '
    def close(a; b): ((a - b) | fabs) <= $tolerance * (b | fabs);
    ($one | length) == ($job | length) and ($one | length) == 10 and
    ([range($one | length)] | all(. as $i | $one[$i] as $a | $job[$i] as $b |
      $a.step == $b.step and
      (if $a.loss != null then close($b.loss; $a.loss) else close($b.val_loss; $a.val_loss) end)))' > /dev/null
}

for layout in data-parallel tensor-parallel pipeline hybrid; do
  extra=()
  [ "$layout" = hybrid ] && extra=(--devices 4)
  (cd "$work" && "$bin/apps/launch/tessel-launch" --nproc-per-node 2 -- "$gpt" "${model[@]}" --sample 48 --layout "$layout" \
    "${extra[@]}" --metrics "$work/$layout.jsonl") > "$work/$layout.log" 2>&1 ||
    { cat "$work/$layout.log"; fail "the $layout job"; }
  grep -q "$layout over [0-9]* devices in 2 processes" "$work/$layout.log" || { cat "$work/$layout.log"; fail "$layout: not 2 processes"; }
  # Step by step: the same steps, losses and validation losses as one process.
  same_losses "$work/single.jsonl" "$work/$layout.jsonl" 1e-5 ||
    { paste "$work/single.jsonl" "$work/$layout.jsonl"; fail "$layout: the losses differ from one process's"; }
  [ "$(sample_of "$work/$layout.log")" = "$sample" ] ||
    { cat "$work/$layout.log"; fail "$layout: the sample differs from one process's"; }
  echo "$layout: 8 steps and 2 validations as one process's, the same sample"
done

# Mixed precision across processes (bf16 partial sums and gathers over UCX), where oneDNN is
# built in: tensor-parallel with bf16 matmuls and activations against one process in the same
# precision, within 1e-4 (bf16 rounding can take another path on a shard).
half=(--matmuls bf16 --activations bf16)
if "$gpt" "${model[@]}" "${half[@]}" --sample 0 --metrics "$work/single-bf16.jsonl" > "$work/single-bf16.log" 2>&1; then
  (cd "$work" && "$bin/apps/launch/tessel-launch" --nproc-per-node 2 -- "$gpt" "${model[@]}" "${half[@]}" --sample 0 \
    --layout tensor-parallel --metrics "$work/tp-bf16.jsonl") > "$work/tp-bf16.log" 2>&1 ||
    { cat "$work/tp-bf16.log"; fail "the bf16 tensor-parallel job"; }
  same_losses "$work/single-bf16.jsonl" "$work/tp-bf16.jsonl" 1e-4 ||
    { paste "$work/single-bf16.jsonl" "$work/tp-bf16.jsonl"; fail "bf16 tensor-parallel: the losses differ"; }
  echo "bf16 tensor-parallel: 8 steps and 2 validations as one process's in bf16"
elif grep -q "need oneDNN" "$work/single-bf16.log"; then
  echo "bf16: skipped, this build has no oneDNN"
else
  cat "$work/single-bf16.log"; fail "tessel-gpt in bf16"
fi
echo "PASS: tessel-gpt in 4 layouts as 2-process jobs gives one process's losses and sample"
