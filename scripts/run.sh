#!/usr/bin/env bash
# Sets up a fresh machine, builds Tessel and runs the main job: a multi-process training run.
#   scripts/run.sh [gpt] [--steps N ...]       the main job: the GPT (tessel-gpt) trained on
#                                             Debian's fortunes, data-parallel as a job of
#                                             TESSEL_NPROC (default 2) processes on this machine,
#                                             started by tessel-launch over loopback; it ends by
#                                             sampling text (--layout tensor-parallel, pipeline or
#                                             hybrid lays it out otherwise)
#   scripts/run.sh EXAMPLE [--steps N ...]     the MLP example EXAMPLE (tessel-example) as the same
#                                             job; EXAMPLE is data-parallel, tensor-parallel,
#                                             pipeline or hybrid
#   scripts/run.sh --chaos [EXAMPLE] [...]     the same over 4 processes with recovery on
#                                             (--nnodes 1:1): one rank is killed with kill -9
#                                             mid-run, and the job finishes on the other 3 with the
#                                             one-device numbers
#   scripts/run.sh digits [--epochs 40 ...]    the digits MLP in one process (tessel-digits)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = digits ]; then scripts/setup.sh --digits; else scripts/setup.sh; fi
scripts/build.sh
example=gpt chaos=0
[ "${1:-}" = --chaos ] && { chaos=1; example=data-parallel; shift; }
case "${1:-}" in
  digits) shift; exec build/apps/digits/tessel-digits "$@" ;;
  gpt) example=gpt; shift ;;
  data-parallel | tensor-parallel | pipeline | hybrid) example=$1; shift ;;
esac
if [ $chaos = 1 ] && [ $example = gpt ]; then
  echo "scripts/run.sh --chaos: recovery runs the MLP examples (data-parallel, tensor-parallel, pipeline or hybrid); tessel-gpt does not take part in recovery yet" >&2
  exit 2
fi
if [ $chaos = 0 ] && [ $example = gpt ]; then
  # About 4 minutes on 2 cores: 1500 steps of 32 sequences of 64 characters, then a sample.
  exec build/apps/launch/tessel-launch --nproc-per-node "${TESSEL_NPROC:-2}" -- \
    build/apps/gpt/tessel-gpt --steps 1500 --eval-every 500 --eval-batches 4 --print-every 50 \
    --sample 300 --temperature 0.6 "$@"
fi
if [ $chaos = 0 ]; then
  exec build/apps/launch/tessel-launch --nproc-per-node "${TESSEL_NPROC:-2}" -- \
    build/apps/parallel/tessel-example "$example" "$@"
fi
# Chaos: 4 ranks (8 devices for hybrid, whose mesh keeps 2 columns), and a random one of ranks 1-3,
# or rank 0 with the coordinator, killed once a third of the steps are done.
extra=(--steps 600 --every 50); [ "$example" = hybrid ] && extra+=(--devices 8)
samples=$(mktemp -d)
trap 'rm -rf "$samples"' EXIT
setsid build/apps/launch/tessel-launch --nnodes 1:1 --nproc-per-node 4 -- \
  build/apps/parallel/tessel-example "$example" "${extra[@]}" "$@" --sample-log "$samples/s" &
job=$!
victim=$((RANDOM % 4)) watch=$([ $victim = 0 ] && echo 1 || echo 0)
for _ in $(seq 3000); do
  [ -f "$samples/s.member$watch" ] && [ "$(grep -c '^step' "$samples/s.member$watch")" -ge 200 ] && break
  sleep 0.01
done
for p in $(pgrep -s "$job" -f "apps/parallel/tessel-example"); do
  if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "TESSEL_RANK=$victim"; then
    echo "scripts/run.sh --chaos: kill -9 of rank $victim (pid $p) at step 200"
    kill -9 "$p"
  fi
done
wait $job
