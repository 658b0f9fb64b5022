#!/usr/bin/env bash
# Fuzzes what Tessel reads from files and the network (tests/fuzz) with libFuzzer, under
# AddressSanitizer and UndefinedBehaviorSanitizer:
#   scripts/fuzz.sh [SECONDS]    each target for SECONDS (default 30), two at a time
# It builds libtessel and the targets alone with clang 16 into build-fuzz/ (libstdc++ 12's
# <source_location> needs clang 15 or later; scripts/setup.sh --test installs clang-16 and
# libclang-rt-16-dev), replays the committed corpus, then fuzzes. A crash leaves its input in
# build-fuzz/tests/fuzz/crash-TARGET-*: fix it and commit the input as tests/fuzz/corpus/TARGET/found-*.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
case $seconds in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]: '$seconds' is not a whole number of seconds" >&2; exit 2 ;; esac
compiler=$(command -v clang++-16 || true)
if [ -z "$compiler" ] || [ ! -d /usr/lib/llvm-16/lib/clang/16/lib/linux ]; then
  echo "scripts/fuzz.sh: needs clang++-16 and libFuzzer (scripts/setup.sh --test installs clang-16 and libclang-rt-16-dev)" >&2
  exit 1
fi
flags="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16 \
  -DTESSEL_WITH_CUDA=OFF -DTESSEL_FUZZ=ON -DTESSEL_FUZZ_SECONDS="$seconds" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" > /dev/null
targets=$(sed -n 's/^set(TESSEL_FUZZ_TARGETS \(.*\))$/\1/p' tests/fuzz/CMakeLists.txt)
cmake --build build-fuzz --target $(for t in $targets; do echo "fuzz_$t"; done)
export UCX_MEM_MALLOC_HOOKS=no UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_EVENTS=no
export ASAN_OPTIONS="detect_odr_violation=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$(pwd)/scripts/sanitizers/lsan.supp:print_suppressions=0"
ctest --test-dir build-fuzz --output-on-failure -j "$(nproc)" -R "^fuzz_.*_corpus$"
# The fuzzing itself: each target's runs, coverage and corpus, or what crashed it.
if ! ctest --test-dir build-fuzz -j "$(nproc)" -R "^fuzz_[a-z]+$" -V > build-fuzz/fuzz.log 2>&1; then
  grep -E "fuzz target: |ERROR: |SUMMARY: |Test unit written|Failed|FAILED" build-fuzz/fuzz.log | head -40
  echo "scripts/fuzz.sh: a target failed; the whole log is build-fuzz/fuzz.log" >&2
  exit 1
fi
grep -E "^[0-9]+: (Done [0-9]+ runs|#[0-9]+ +DONE)|tests passed" build-fuzz/fuzz.log
