#!/usr/bin/env bash
# Consumer test: installs bucketmap from BUILD_DIR into a temporary prefix, moves the prefix elsewhere (the
# package must be relocatable), and builds and runs consumer.c three ways, as users would:
#   1. pkg-config, shared library          2. pkg-config --static, static library
#   3. CMake find_package(bucketmap): bucketmap::bucketmap and bucketmap::bucketmap_static
# Usage: run.sh SOURCE_DIR BUILD_DIR [extra compiler/linker flags, e.g. the sanitizer's]
set -euo pipefail
src=$1 build=$2
shift 2
extra=("$@")
here=$src/tests/consumer
cc=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/bm-consumer-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Every public function must be called by the consumer, or this test proves less than it claims.
missing=""
for f in $(grep -oE '\bbm_[a-z_]+\(' "$src/include/bucketmap.h" | tr -d '(' | sort -u); do
  grep -q "\b$f(" "$here/consumer.c" || missing="$missing $f"
done
if [ -n "$missing" ]; then echo "consumer.c does not call:$missing"; exit 1; fi

cmake --install "$build" --prefix "$work/staging" >/dev/null
mv "$work/staging" "$work/moved"
prefix=$work/moved
pcdir=$(dirname "$(find "$prefix" -name bucketmap.pc)")
libdir=$(dirname "$pcdir")
export PKG_CONFIG_PATH=$pcdir
pkg-config --exists bucketmap
echo "installed at $prefix: libdir $(pkg-config --variable=libdir bucketmap)"
[ "$(realpath "$(pkg-config --variable=libdir bucketmap)")" = "$(realpath "$libdir")" ] ||
  { echo "bucketmap.pc does not follow the prefix"; exit 1; }

echo "== 1. pkg-config, shared"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror "${extra[@]}" "$here/consumer.c" -o "$work/c_shared" \
  $(pkg-config --cflags --libs bucketmap) -Wl,-rpath,"$libdir"
readelf -d "$work/c_shared" | grep -q 'NEEDED.*libbucketmap\.so' || { echo "not linked to libbucketmap.so"; exit 1; }
"$work/c_shared"

echo "== 2. pkg-config --static"
# A static-only install (as some packagers ship it): the linker can only take libbucketmap.a, so the
# link works only if the .pc file names every dependency of the static library.
cp -a "$prefix" "$work/static"
rm -f "$work/static/${libdir#"$prefix"/}"/libbucketmap.so*
export PKG_CONFIG_PATH=$work/static/${pcdir#"$prefix"/}
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror "${extra[@]}" "$here/consumer.c" -o "$work/c_static" \
  $(pkg-config --cflags --static --libs bucketmap)
if readelf -d "$work/c_static" | grep -q 'NEEDED.*libbucketmap'; then echo "static link used the .so"; exit 1; fi
"$work/c_static"

echo "== 3. CMake find_package(bucketmap)"
flags="${extra[*]:-}"
cmake -S "$here/project" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror $flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
"$work/cmake-build/consumer_cmake_shared"
"$work/cmake-build/consumer_cmake_static"
echo "consumer test: all three ways build and run"
