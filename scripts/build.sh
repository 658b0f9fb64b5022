#!/usr/bin/env bash
# Configures and builds Tessel into build/ with CMake, Ninja and ccache.
set -euo pipefail
cd "$(dirname "$0")/.."
build_type=${TESSEL_BUILD_TYPE:-RelWithDebInfo}
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type"
fi
ninja -C build
