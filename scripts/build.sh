#!/usr/bin/env bash
# Configures and builds Tessel into build/ with CMake, Ninja and ccache.
#   TESSEL_BUILD_TYPE   CMake's build type (RelWithDebInfo)
#   TESSEL_BUILD_TESTS  ON, OFF or AUTO: the tests, AUTO when GoogleTest is installed (the
#                       default; scripts/test.sh sets ON, so a missing GoogleTest is an error)
set -euo pipefail
cd "$(dirname "$0")/.."
build_type=${TESSEL_BUILD_TYPE:-RelWithDebInfo}
if [ ! -f build/build.ninja ] || [ -n "${TESSEL_BUILD_TESTS:-}" ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" \
    ${TESSEL_BUILD_TESTS:+-DTESSEL_BUILD_TESTS=$TESSEL_BUILD_TESTS}
fi
ninja -C build
