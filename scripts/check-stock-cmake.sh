#!/usr/bin/env bash
# Configures a clean tree against Debian's unmodified CMake modules, as a user's stock Debian 12
# has them: this machine's image may carry a patched FindCUDAToolkit.cmake, which would hide a
# configure that fails elsewhere. Debian's own file comes from the cmake-data package and is
# bind-mounted over the installed one in a private mount namespace (nothing outside it changes).
# Prints PASS or FAIL; prints SKIP where mount namespaces or the package are unavailable.
set -uo pipefail
cd "$(dirname "$0")/.."
source_dir=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

module=$(cmake --system-information 2>/dev/null | sed -n 's/^CMAKE_ROOT "\(.*\)"$/\1/p')/Modules/FindCUDAToolkit.cmake
[ -f "$module" ] || { echo "SKIP: no FindCUDAToolkit.cmake at '$module'"; exit 0; }
version=$(dpkg-query -W -f='${Version}' cmake-data 2>/dev/null) || { echo "SKIP: cmake-data is not a Debian package here"; exit 0; }
( cd "$work" && apt-get download "cmake-data=$version" > download.log 2>&1 ) ||
  { echo "SKIP: apt-get download cmake-data=$version failed: $(tail -1 "$work/download.log")"; exit 0; }
dpkg-deb -x "$work"/cmake-data_*.deb "$work/stock"
stock="$work/stock${module}"
[ -f "$stock" ] || { echo "FAIL: the cmake-data package has no $module"; exit 1; }
if cmp -s "$stock" "$module"; then
  echo "note: the installed FindCUDAToolkit.cmake is Debian's own"
else
  echo "note: the installed FindCUDAToolkit.cmake differs from Debian's; configuring with Debian's"
fi
unshare -m true 2>/dev/null || { echo "SKIP: this machine does not allow mount namespaces (unshare -m)"; exit 0; }
unshare -m bash -c "mount --bind '$stock' '$module' && cmake -S '$source_dir' -B '$work/build' -G Ninja" \
  > "$work/configure.log" 2>&1
status=$?
if [ $status -ne 0 ] || grep -q "CMake Error" "$work/configure.log"; then
  cat "$work/configure.log"
  echo "FAIL: a clean tree does not configure with Debian's stock CMake modules"
  exit 1
fi
grep -E "Tessel: (CUDA|nvcc)" "$work/configure.log"
echo "PASS: a clean tree configures with Debian's stock FindCUDAToolkit.cmake"
# A machine set up with the runtime set only (scripts/setup.sh, no --test): no GoogleTest and no
# Google Benchmark. It configures, without the tests and the kernel bench.
unshare -m bash -c "mount --bind '$stock' '$module' && cmake -S '$source_dir' -B '$work/runtime' -G Ninja \
    -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON" > "$work/runtime.log" 2>&1 ||
  { cat "$work/runtime.log"; echo "FAIL: the runtime set's configure"; exit 1; }
if grep -q "CMake Error" "$work/runtime.log" || grep -q "tests/\|tessel-bench-kernels" "$work/runtime/build.ninja"; then
  cat "$work/runtime.log"
  echo "FAIL: without GoogleTest and Google Benchmark the configure fails or still builds the tests"
  exit 1
fi
echo "PASS: without GoogleTest and Google Benchmark (scripts/setup.sh's runtime set) it configures, without the tests"
