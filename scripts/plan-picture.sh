#!/usr/bin/env bash
# Draws the README's picture: the tensor-parallel example's forward plan over 4 devices
# (tessel-plan --example tensor-parallel --evaluation --svg), into docs/tensor-parallel-plan.svg.
# `scripts/plan-picture.sh --training` draws the training plan (backward and update too) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh > /dev/null
mode=--evaluation out=docs/tensor-parallel-plan.svg
[ "${1:-}" = --training ] && { mode=""; out=docs/tensor-parallel-training-plan.svg; }
# shellcheck disable=SC2086
build/apps/plan/tessel-plan --example tensor-parallel $mode --svg "$out" > /dev/null
echo "drew $out"
