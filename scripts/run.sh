#!/usr/bin/env bash
# Sets up a fresh machine, builds Tessel and trains the digits model (the main job).
#   scripts/run.sh [--epochs 40 --threads 2 ...]   tessel-digits with these flags
#   scripts/run.sh EXAMPLE [--steps N ...]         a parallel example over 4 CPU devices:
#                                                  data-parallel, tensor-parallel, pipeline, hybrid
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
case "${1:-}" in
  data-parallel | tensor-parallel | pipeline | hybrid) exec build/apps/parallel/tessel-example "$@" ;;
  *) exec build/apps/digits/tessel-digits "$@" ;;
esac
