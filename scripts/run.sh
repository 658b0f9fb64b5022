#!/usr/bin/env bash
# Sets up a fresh machine, builds Tessel and runs the main job: a multi-process training run.
#   scripts/run.sh [EXAMPLE] [--steps N ...]   EXAMPLE (default data-parallel) as a job of
#                                             TESSEL_NPROC (default 2) processes on this machine,
#                                             started by tessel-launch over loopback; EXAMPLE is
#                                             data-parallel, tensor-parallel, pipeline or hybrid
#   scripts/run.sh digits [--epochs 40 ...]    the digits MLP in one process (tessel-digits)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
example=data-parallel
case "${1:-}" in
  digits) shift; exec build/apps/digits/tessel-digits "$@" ;;
  data-parallel | tensor-parallel | pipeline | hybrid) example=$1; shift ;;
esac
exec build/apps/launch/tessel-launch --nproc-per-node "${TESSEL_NPROC:-2}" -- \
  build/apps/parallel/tessel-example "$example" "$@"
