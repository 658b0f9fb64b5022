#!/usr/bin/env bash
# Checkpoints with real processes (ctest runs each mode):
#   checkpoint_test.sh BIN layouts   saved under each example layout over 1, 2 or 4 processes,
#                                    restored under every other layout over another count; the
#                                    same layout resumes bit for bit
#   checkpoint_test.sh BIN resume    a 2-process job killed with kill -9 mid-run, resumed from its
#                                    latest checkpoint: the uninterrupted run's parameters and
#                                    exactly its samples, none twice and none skipped
#   checkpoint_test.sh BIN crash     the writer killed at random moments, over and over (saving
#                                    every step): the latest checkpoint is always complete and
#                                    verified, and each run resumes from it
# BIN is the build folder. Every wait is bounded; processes started here are killed on exit.
set -uo pipefail
bin=$1 mode=$2
launch=$bin/apps/launch/tessel-launch
example=$bin/apps/parallel/tessel-example
tool=$bin/apps/checkpoint/tessel-checkpoint
work=$(mktemp -d)
groups=()
cleanup() {
  for group in "${groups[@]}"; do kill -9 -- "-$group" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done; exit 1; }

# run N LOG ARGS...: the example over N processes (N = 1: one process, 4 devices in it).
run() {
  local n=$1 log=$2
  shift 2
  if [ "$n" = 1 ]; then
    timeout 120 "$example" "$@" > "$log" 2>&1 || fail "the example exited $? ($*)"
    grep -q "the same numbers" "$log" || fail "the run did not equal one device ($*)"
  else
    timeout 120 "$launch" --nproc-per-node "$n" -- "$example" "$@" > "$log" 2>&1 || fail "the job exited $? ($*)"
    [ "$(grep -c 'the same numbers' "$log")" = "$n" ] || fail "not every one of $n ranks equalled one device ($*)"
  fi
}

case $mode in
layouts)
  layouts=(data-parallel tensor-parallel pipeline hybrid)
  sources=("data-parallel 2" "tensor-parallel 1" "pipeline 4" "hybrid 2")
  counts=(1 2 4)
  i=0
  for source in "${sources[@]}"; do
    set -- $source
    name=$1 n=$2 dir=$work/$1-$2
    run "$n" "$work/save.log" "$name" --steps 6 --checkpoint-dir "$dir" --checkpoint-every 3
    "$tool" verify "$dir" > "$work/verify.log" 2>&1 || fail "tessel-checkpoint verify failed on $dir"
    grep -q "step-000000000006: intact" "$work/verify.log" || fail "no intact checkpoint of step 6 from $name over $n"
    for target in "${layouts[@]}"; do
      [ "$target" = "$name" ] && continue
      m=${counts[$((i % 3))]}; i=$((i + 1))
      # Resumed at step 6 and trained to 10: every rank equals the uninterrupted one-device run.
      run "$m" "$work/restore.log" "$target" --steps 10 --checkpoint-dir "$dir" --resume
      grep -q "resumed from $dir/step-000000000006 at step 6" "$work/restore.log" || fail "$target did not resume at step 6"
      echo "ok: $name over $n processes -> $target over $m"
    done
  done
  # The same layout, bit for bit: an uninterrupted run and a resumed one write identical shards.
  run 2 "$work/straight.log" hybrid --steps 8 --checkpoint-dir "$work/straight" --checkpoint-every 8
  run 2 "$work/first.log" hybrid --steps 4 --checkpoint-dir "$work/resumed" --checkpoint-every 4
  run 2 "$work/second.log" hybrid --steps 8 --checkpoint-dir "$work/resumed" --checkpoint-every 4 --resume
  for file in "$work"/straight/step-000000000008/rank-*.bin; do
    cmp "$file" "$work/resumed/step-000000000008/$(basename "$file")" || fail "$(basename "$file") differs after resuming"
  done
  echo "PASS: every layout's checkpoint loads onto every other over 1, 2 and 4 processes; the same layout is bit for bit"
  ;;
resume)
  # The uninterrupted run, and its samples.
  steps=200 size="--hidden 512"
  run 2 "$work/straight.log" data-parallel $size --steps $steps --sample-log "$work/straight.samples"
  # The same job, checkpointing every 5 steps, killed (the launcher and both ranks) mid-run.
  setsid "$launch" --nproc-per-node 2 -- "$example" data-parallel $size --steps $steps --checkpoint-dir "$work/ck" \
    --checkpoint-every 5 --sample-log "$work/killed.samples" > "$work/killed.log" 2>&1 &
  group=$!; groups+=($group)
  for _ in $(seq 3000); do
    [ -f "$work/killed.samples" ] && [ "$(wc -l < "$work/killed.samples")" -ge 50 ] && break
    sleep 0.01
  done
  kill -9 -- "-$group"
  wait "$group" 2>/dev/null
  trained=$(wc -l < "$work/killed.samples")
  [ "$trained" -ge 50 ] && [ "$trained" -lt $steps ] || fail "the kill came after $trained steps, expected 50 to $((steps - 1))"
  run 2 "$work/resumed.log" data-parallel $size --steps $steps --checkpoint-dir "$work/ck" --resume \
    --sample-log "$work/resumed.samples"
  from=$(sed -n 's/.*resumed from .* at step \([0-9]*\) .*/\1/p' "$work/resumed.log")
  [ -n "$from" ] && [ "$from" -ge 5 ] && [ $((from % 5)) = 0 ] || fail "resumed at step '$from', expected a multiple of 5 (the checkpoints)"
  [ "$from" -le "$trained" ] || fail "resumed at step $from, beyond the $trained steps trained"
  # What the final parameters saw: the killed run's steps before the checkpoint, then the resumed run's.
  { awk -v from="$from" '$2 < from' "$work/killed.samples"; cat "$work/resumed.samples"; } > "$work/combined.samples"
  cmp "$work/straight.samples" "$work/combined.samples" || fail "the samples differ from the uninterrupted run's"
  echo "killed after $trained steps; resumed at step $from ($(head -1 "$work/resumed.samples")); the samples of all $steps steps match the uninterrupted run's, each once"
  grep "parameters after" "$work/resumed.log"
  echo "PASS: a job killed with kill -9 resumes from its latest checkpoint to the uninterrupted run's parameters and samples"
  ;;
crash)
  # Saving every step (19 MB each), killed at random moments; each run resumes from the latest checkpoint.
  dir=$work/ck interrupted=0 size="--hidden 32768"
  # (A model this wide trains unstably at this learning rate, so its runs are not held against the
  # interpreter: the bit-for-bit comparison at the end is the check.)
  run_unchecked() { timeout 120 "$example" hybrid $size --no-check "$@" > "$work/last.log" 2>&1 || fail "the example exited $? ($*)"; }
  run_unchecked --steps 2 --checkpoint-dir "$dir" --checkpoint-every 1
  for trial in $(seq 24); do
    setsid "$example" hybrid $size --steps 100000000 --every 1000 --no-check --checkpoint-dir "$dir" \
      --checkpoint-every 1 --resume > "$work/trial.log" 2>&1 &
    group=$!; groups+=($group)
    # A random moment, once it is training and saving: once a newer checkpoint than the one it
    # resumed from is committed.
    before=$(ls "$dir" | grep '^step-' | tail -1)
    for _ in $(seq 500); do [ "$(ls "$dir" | grep '^step-' | tail -1)" != "$before" ] && break; sleep 0.02; done
    sleep "0.$(printf '%03d' $((RANDOM % 300)))"
    kill -9 -- "-$group"
    wait "$group" 2>/dev/null
    ls -a "$dir" | grep -q '^\.partial-' && interrupted=$((interrupted + 1))
    "$tool" verify "$dir" > "$work/verify.log" 2>&1
    head -1 "$work/verify.log" | grep -q "intact, .* (restoring the latest takes this one)" ||
      fail "after kill $trial the latest checkpoint is not intact: $(head -3 "$work/verify.log")"
    echo "kill $trial: $(head -1 "$work/verify.log" | sed 's/ tensor bytes.*//')"
  done
  echo "$interrupted of 24 kills left a save half written (a .partial directory)"
  [ "$interrupted" -ge 1 ] || fail "no kill landed in the middle of a save"
  # Training on from the latest gives, bit for bit, the uninterrupted run's parameters.
  latest=$("$tool" verify "$dir" | head -1 | sed 's/.*step-0*\([0-9]*\):.*/\1/')
  end=$((latest + 3))
  run_unchecked --steps $end --checkpoint-dir "$dir" --checkpoint-every 1 --resume
  run_unchecked --steps $end --checkpoint-dir "$work/straight" --checkpoint-every $end
  name=$(printf 'step-%012d' $end)
  cmp "$dir/$name/rank-00000.bin" "$work/straight/$name/rank-00000.bin" ||
    fail "resumed after 24 kills, step $end differs from the uninterrupted run"
  echo "resumed from step $latest to $end: the same bytes as an uninterrupted run of $end steps"
  echo "PASS: 24 kills at random moments, the latest checkpoint always complete and verified; training goes on from it"
  ;;
*)
  echo "unknown mode '$mode'"; exit 2 ;;
esac
