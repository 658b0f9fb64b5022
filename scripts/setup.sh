#!/usr/bin/env bash
# Installs the Debian packages Tessel needs, by what the machine is for. Idempotent and
# non-interactive; run as root (or with sudo) on Debian 12.
#   scripts/setup.sh           to build Tessel and run its programs (what scripts/run.sh calls)
#   scripts/setup.sh --test    also what the tests need: GoogleTest, Google Benchmark, network
#                              namespaces' tools, Slurm and munge for the Slurm test, and clang 16
#                              with libFuzzer for scripts/fuzz.sh, and python3-torch for the GPT's
#                              check against PyTorch (scripts/test.sh calls this)
#   scripts/setup.sh --bench   also python3-torch and Google Benchmark, the benchmarks' needs
#   scripts/setup.sh --digits  also python3-sklearn, whose handwritten digits tessel-digits reads
# Daemons that come with a package (munge, slurmctld, slurmd) are installed stopped and
# disabled: nothing starts at the install, and nothing starts at boot that was not enabled before.
set -euo pipefail

runtime=(
  build-essential cmake ninja-build ccache pkg-config git
  libcaf-dev libucx-dev
  libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev libopenblas-dev zlib1g-dev libxxhash-dev libssl-dev
  libcli11-dev nlohmann-json3-dev libdnnl-dev
  fortunes graphviz gnuplot-nox jq
)
digits=(python3-sklearn)
test_only=(
  libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 procps bc
  munge slurmctld slurmd slurm-client
  clang-16 libclang-rt-16-dev
  python3-torch
)
bench_only=(python3-torch libbenchmark-dev iproute2 procps bc)
daemons=(munge slurmctld slurmd)

packages=("${runtime[@]}")
for argument in "$@"; do
  case "$argument" in
    --test) packages+=("${test_only[@]}" "${digits[@]}") ;;
    --bench) packages+=("${bench_only[@]}" "${digits[@]}") ;;
    --digits) packages+=("${digits[@]}") ;;
    *) echo "setup: unknown argument '$argument' (expected --test, --bench or --digits)" >&2; exit 2 ;;
  esac
done

missing=()
for package in $(printf '%s\n' "${packages[@]}" | sort -u); do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all $(printf '%s\n' "${packages[@]}" | sort -u | wc -l) packages already installed"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# invoke-rc.d asks /usr/sbin/policy-rc.d whether a package may start its service; 101 says no.
# One is put in place for the install only, unless the machine already has its own.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  own_policy=1
  printf '#!/bin/sh\n# scripts/setup.sh: no service starts while Tessel installs packages\nexit 101\n' |
    $sudo tee "$policy" > /dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
[ $own_policy = 1 ] && $sudo rm -f "$policy"

# The package scripts enable the units for boot even when policy-rc.d holds them back: disable
# those of the daemons this run installed (ones installed before keep the machine's own choice).
for daemon in "${daemons[@]}"; do
  [[ " ${missing[*]} " == *" $daemon "* ]] || continue
  # systemctl disable edits the unit links whether or not systemd runs (containers, chroots).
  if command -v systemctl > /dev/null; then $sudo systemctl disable "$daemon" > /dev/null 2>&1 || true; fi
  if command -v update-rc.d > /dev/null; then $sudo update-rc.d "$daemon" disable > /dev/null 2>&1 || true; fi
  echo "setup: $daemon is installed, not started and not enabled"
done
