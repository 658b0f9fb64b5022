#!/usr/bin/env bash
# The suite under sanitizers:
#   scripts/sanitize.sh address [CTEST_ARGS...]   AddressSanitizer with UndefinedBehaviorSanitizer (build-asan/)
#   scripts/sanitize.sh thread [CTEST_ARGS...]    ThreadSanitizer (build-tsan/)
# For example `scripts/sanitize.sh address -R Session` runs the Session tests only. CUDA is off.
# The thread build links a CAF built with TSan too (scripts/sanitizers/build-caf.sh, once).
# UCX's memory hooks are off (they patch malloc and mmap, as the sanitizers do). What CAF and UCX
# allocate for the life of the process is no leak of Tessel's: scripts/sanitizers/*.supp leaves
# those out, by library, and nothing of Tessel's.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-address}
[ $# -gt 0 ] && shift
case $kind in
address) dir=build-asan flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" ;;
# Debian's libprotobuf is not built with TSan, and protobuf's map_field.h adds two members to
# MapFieldBase when __SANITIZE_THREAD__ is defined: generated code built with it reads the
# library's maps at the wrong offsets (a SIGSEGV in MapField::SyncRepeatedFieldWithMap), so the
# macro is undefined again to keep one layout.
thread) dir=build-tsan flags="-fsanitize=thread -U__SANITIZE_THREAD__" ;;
*) echo "usage: scripts/sanitize.sh address|thread [CTEST_ARGS...]" >&2; exit 2 ;;
esac
here=$(pwd)
caf_options=()
if [ "$kind" = thread ]; then
  # ThreadSanitizer sees the happens-before edges only of code it instrumented, and every actor
  # message crosses CAF's mailboxes: with Debian's uninstrumented CAF, every hand-over from one
  # actor to the next reads as a race. So CAF is built here with TSan, once, from the Debian
  # source of the version installed (scripts/sanitizers/build-caf.sh), and Tessel links that.
  caf=$here/$dir/caf
  [ -f "$caf/lib/libcaf_core.so" ] || scripts/sanitizers/build-caf.sh "$caf" "$flags"
  caf_options=(-DCAF_INCLUDE_DIR="$caf/include" -DCAF_CORE_LIBRARY="$caf/lib/libcaf_core.so"
    -DCAF_IO_LIBRARY="$caf/lib/libcaf_io.so")
fi
cmake -S . -B "$dir" -G Ninja -DTESSEL_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" "${caf_options[@]}" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" > /dev/null
cmake --build "$dir"
export UCX_MEM_MALLOC_HOOKS=no UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_EVENTS=no
# A huge allocation throws std::bad_alloc, as it does unsanitized (a test checks its message).
export ASAN_OPTIONS="detect_odr_violation=0:allocator_may_return_null=1:exitcode=99"
export LSAN_OPTIONS="suppressions=$here/scripts/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=99"
export TSAN_OPTIONS="suppressions=$here/scripts/sanitizers/tsan.supp:halt_on_error=1:exitcode=99:allocator_may_return_null=1"
ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" "$@"
