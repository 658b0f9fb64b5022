#!/usr/bin/env bash
# Builds CAF's core and io libraries with sanitizer flags into PREFIX, from the Debian source of
# the CAF version installed here (libcaf-dev), for scripts/sanitize.sh thread:
#   scripts/sanitizers/build-caf.sh PREFIX FLAGS
# The source comes from Debian's archive through apt (a deb-src list of its own, in a temporary
# folder; the machine's apt configuration is left as it is).
set -euo pipefail
prefix=$1 flags=$2
version=$(dpkg-query -W -f='${Version}' libcaf-dev 2>/dev/null) ||
  { echo "build-caf.sh: libcaf-dev is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
upstream=${version%%-*}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
. /etc/os-release
cat > "$work/sources" <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME:-bookworm}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
apt_options=(-q -o Dir::Etc::SourceList="$work/sources" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/lists" -o Debug::NoLocking=1)
apt-get "${apt_options[@]}" update > "$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
# Only the upstream tarball is needed (Tessel builds CAF as upstream ships it); apt stops at the
# first file it cannot fetch, so its status is judged by the tarball.
(cd "$work" && apt-get "${apt_options[@]}" source --download-only "actor-framework=$version" > apt-source.log 2>&1) || true
tarball=$work/actor-framework_$upstream.orig.tar.gz
[ -f "$tarball" ] || { echo "build-caf.sh: could not fetch CAF $upstream's source from Debian:" >&2; cat "$work/apt-source.log" >&2; exit 1; }
tar -xzf "$tarball" -C "$work"
# GCC 12's headers no longer bring in <limits> by the way (Debian's package patches this too).
sed -i 's|^#include <cstddef>$|#include <cstddef>\n#include <limits>|' \
  "$work/actor-framework-$upstream/libcaf_io/caf/io/network/receive_buffer.hpp"
echo "build-caf.sh: building CAF $upstream with '$flags' into $prefix"
cmake -S "$work/actor-framework-$upstream" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_OPENCL=yes -DCAF_NO_OPENSSL=yes -DCAF_NO_PYTHON=yes \
  -DCAF_NO_TOOLS=yes -DCAF_NO_SUMMARY=yes > "$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build"
cmake --install "$work/build" > /dev/null
