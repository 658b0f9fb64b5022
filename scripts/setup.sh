#!/usr/bin/env bash
# Installs every Debian package Tessel needs to build, test and run its examples.
# Idempotent and non-interactive; run as root (or with sudo) on Debian 12.
#   scripts/setup.sh           what building, testing and the examples need
#   scripts/setup.sh --bench   also python3-torch, the reference the benchmarks compare against
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libcaf-dev libucx-dev
  libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev zlib1g-dev libxxhash-dev libssl-dev
  python3-sklearn fortunes
  iproute2 procps bc
  munge slurmctld slurmd slurm-client
)
for argument in "$@"; do
  case "$argument" in
    --bench) packages+=(python3-torch) ;;
    *) echo "setup: unknown argument '$argument' (expected --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
