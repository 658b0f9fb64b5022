#!/usr/bin/env bash
# Sets up a fresh machine, builds Tessel and trains the digits model (the main job).
# Extra arguments go to tessel-digits (e.g. --epochs 40 --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/apps/digits/tessel-digits "$@"
