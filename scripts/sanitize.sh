#!/usr/bin/env bash
# The suite under sanitizers:
#   scripts/sanitize.sh address [CTEST_ARGS...]   AddressSanitizer with UndefinedBehaviorSanitizer (build-asan/)
#   scripts/sanitize.sh thread [CTEST_ARGS...]    ThreadSanitizer (build-tsan/)
# For example `scripts/sanitize.sh address -R Session` runs the Session tests only. CUDA is off.
# UCX's memory hooks are off (they patch malloc and mmap, as the sanitizers do). What CAF and UCX
# allocate for the life of the process is no leak of Tessel's: scripts/sanitizers/*.supp leaves
# those out, by library, and nothing of Tessel's.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-address}
[ $# -gt 0 ] && shift
case $kind in
address) dir=build-asan flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" ;;
thread) dir=build-tsan flags="-fsanitize=thread" ;;
*) echo "usage: scripts/sanitize.sh address|thread [CTEST_ARGS...]" >&2; exit 2 ;;
esac
here=$(pwd)
cmake -S . -B "$dir" -G Ninja -DTESSEL_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" > /dev/null
cmake --build "$dir"
export UCX_MEM_MALLOC_HOOKS=no UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_EVENTS=no
# A huge allocation throws std::bad_alloc, as it does unsanitized (a test checks its message).
export ASAN_OPTIONS="detect_odr_violation=0:allocator_may_return_null=1:exitcode=99"
export LSAN_OPTIONS="suppressions=$here/scripts/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=99"
export TSAN_OPTIONS="suppressions=$here/scripts/sanitizers/tsan.supp:halt_on_error=1:exitcode=99"
ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" "$@"
