#!/usr/bin/env bash
# Sets up a fresh machine for the tests (scripts/setup.sh --test), builds Tessel with its tests
# and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
TESSEL_BUILD_TESTS=ON scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
