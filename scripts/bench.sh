#!/usr/bin/env bash
# Installs what the benchmarks need (python3-torch for the PyTorch comparison), builds, and
# runs every benchmark program. Figures are printed; nothing is asserted about time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
scripts/build.sh
build/bench/tessel-bench-runtime
build/bench/tessel-bench-boxing
build/bench/tessel-bench-kernels --benchmark_min_time=1
build/bench/tessel-bench-matmul
build/bench/tessel-bench-matmul --threads 2
build/bench/tessel-bench-allreduce
build/bench/tessel-bench-compile
build/bench/tessel-bench-checkpoint
/usr/bin/python3 bench/gpt_bench.py
/usr/bin/python3 bench/gpt_torch_check.py --steps 50 --clip 0.5
