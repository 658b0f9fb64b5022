#!/usr/bin/env bash
# Installs Tessel into a temporary prefix and uses it as a user would, from outside the tree:
#   1. the installed headers are exactly what <tessel/tessel.h> reaches, and each one resolves;
#   2. examples/user-project, copied out of the tree, configures with find_package(Tessel) and
#      builds with no path into the source or build tree;
#   3. it runs alone and under the installed tessel-launch over 2 processes, each rank matching
#      one device;
#   4. the prefix moved elsewhere still works: the installed programs find libtessel, and
#      `pkg-config --cflags --libs tessel` builds the same train.cc.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
source=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/tessel-install-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
include="$work/prefix/include/tessel"
[ -f "$include/tessel.h" ] || fail "no include/tessel/tessel.h in the prefix"

# 1. The closure of tessel.h's quoted includes, resolved in the installed tree only.
reached=("tessel.h")
todo=("tessel.h")
while [ ${#todo[@]} -gt 0 ]; do
  header=${todo[0]}; todo=("${todo[@]:1}")
  while read -r included; do
    # A quoted include resolves beside the including file first (the .pb.h files), then at
    # the root of include/tessel (-iquote).
    beside="$(dirname "$header")/$included"; beside=${beside#./}
    if [ -f "$include/$beside" ]; then found=$beside
    elif [ -f "$include/$included" ]; then found=$included
    else fail "$header includes \"$included\", which is not installed"; fi
    if [[ ! " ${reached[*]} " == *" $found "* ]]; then reached+=("$found"); todo+=("$found"); fi
  done < <(sed -n 's/^#include "\(.*\)"$/\1/p' "$include/$header")
done
installed=$(cd "$include" && find . -name '*.h' | sed 's|^\./||' | grep -v '^proto/.*\.pb\.h$' | sort)
expected=$(printf '%s\n' "${reached[@]}" | sort)
if [ "$installed" != "$expected" ]; then
  diff <(echo "$expected") <(echo "$installed") || true
  fail "the installed headers (right) are not what tessel.h reaches (left)"
fi
echo "ok: ${#reached[@]} headers installed, exactly those <tessel/tessel.h> reaches"
for proto in graph plan checkpoint; do [ -f "$include/proto/$proto.pb.h" ] || fail "no proto/$proto.pb.h"; done

# 2. The user project, out of the tree.
cp -r "$source/examples/user-project" "$work/project"
cmake -S "$work/project" -B "$work/project/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON > "$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
cmake --build "$work/project/build" > "$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }
for tree in "$source" "$build"; do
  if grep -rl --include=CMakeCache.txt --include=compile_commands.json --include=build.ninja \
      "$tree" "$work/project/build" > /dev/null; then
    fail "the user project's build names $tree"
  fi
done
echo "ok: examples/user-project built against the prefix, naming no path of Tessel's tree"

# 3. Alone, and as a 2-process job.
"$work/project/build/train" > "$work/alone.log" 2>&1 || { cat "$work/alone.log"; fail "train alone"; }
grep "largest difference" "$work/alone.log"
"$work/prefix/bin/tessel-launch" --nproc-per-node 2 -- "$work/project/build/train" > "$work/job.log" 2>&1 ||
  { cat "$work/job.log"; fail "tessel-launch --nproc-per-node 2 -- train"; }
for rank in 0 1; do
  grep -q "^\[rank $rank\] rank $rank of 2 (2 devices): largest difference" "$work/job.log" || { cat "$work/job.log"; fail "rank $rank's line"; }
done
grep "largest difference\|all 2 ranks" "$work/job.log"

# 4. A moved prefix, and pkg-config.
mv "$work/prefix" "$work/moved"
"$work/moved/bin/tessel-plan" --help > /dev/null || fail "the moved prefix's tessel-plan does not start"
libdir=$(dirname "$(find "$work/moved" -name tessel.pc)")/..
flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs tessel) || fail "pkg-config tessel"
echo "pkg-config --cflags --libs tessel: $flags"
# shellcheck disable=SC2086
g++ -O1 "$work/project/train.cc" -o "$work/train-pc" $flags -Wl,-rpath,"$libdir" || fail "g++ with pkg-config's flags"
"$work/train-pc" > "$work/pc.log" 2>&1 || { cat "$work/pc.log"; fail "the pkg-config build's train"; }
grep "largest difference" "$work/pc.log"
echo "PASS"
