#!/usr/bin/env bash
# Builds the Debian package of Tessel with CPack, lists its files, checks what it holds and
# depends on, and unpacks it into a private root to start its programs from there.
# Usage: package_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/tessel-package-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") > "$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack -G DEB"; }
deb=$(find "$work/out" -maxdepth 1 -name 'tessel_*.deb')
[ -n "$deb" ] || { cat "$work/cpack.log"; fail "cpack wrote no tessel_*.deb"; }
echo "package: $(basename "$deb")"
dpkg-deb -c "$deb" | awk '{print $6}' | tee "$work/files"
for path in ./usr/bin/tessel-launch ./usr/bin/tessel-plan ./usr/bin/tessel-checkpoint \
            ./usr/include/tessel/tessel.h ./usr/include/tessel/proto/plan.pb.h \
            ./usr/lib/cmake/Tessel/TesselConfig.cmake ./usr/lib/pkgconfig/tessel.pc; do
  grep -q "^$path\$" "$work/files" || fail "the package has no $path"
done
grep -q '^./usr/lib/libtessel.so.0.1.0$' "$work/files" || fail "the package has no libtessel.so.0.1.0"
if grep -q 'tests/\|/apps/\|_test$' "$work/files"; then fail "the package holds the tests' or apps' files"; fi

depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for library in libcaf libucx libprotobuf libgoogle-glog libc6; do
  [[ "$depends" == *"$library"* ]] || fail "Depends names no $library (dpkg-shlibdeps)"
done
[ "$(dpkg-deb -f "$deb" Package)" = tessel ] || fail "the package is not named tessel"

dpkg-deb -x "$deb" "$work/root"
"$work/root/usr/bin/tessel-plan" --help > /dev/null || fail "the unpacked tessel-plan does not start"
"$work/root/usr/bin/tessel-launch" --help > /dev/null || fail "the unpacked tessel-launch does not start"
echo "PASS"
