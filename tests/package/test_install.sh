#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a separate consumer project
# in C and C++ against it: CMake package (shared and static), pkg-config (shared and static), and
# the installed CLI after the whole prefix has been moved. Usage: test_install.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > "$work/install.log"
echo "== install tree"
(cd "$prefix" && find . -type f -o -type l | sort | grep -v "models/demo-code/")
echo "./share/dsv4/models/demo-code/: $(ls "$prefix/share/dsv4/models/demo-code" | tr '\n' ' ')"
demo=$prefix/share/dsv4/models/demo-code
test -f "$demo/config.json"
test -f "$prefix/lib/cmake/dsv4/dsv4Config.cmake"
test -f "$prefix/lib/pkgconfig/dsv4.pc"
so=$(readlink -f "$prefix/lib/libdsv4.so")
echo "== libdsv4.so: $(stat -c %s "$so") bytes, soname $(readelf -d "$so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p'), $(nm -D --defined-only "$so" | wc -l) exported symbols"
echo "== libdsv4.a: $(stat -c %s "$prefix/lib/libdsv4.a") bytes"
# Only the public API is exported.
# (Outputs go through variables: with pipefail, `producer | grep -q` fails when grep exits first.)
exported=$(nm -D --defined-only -C "$so" | awk '{ $1=""; $2=""; print }')
extra=$(grep -v '^ *dsv4_' <<< "$exported" | grep -v 'dsv4::' || true)
if [ -n "$extra" ]; then
  echo "FAIL: libdsv4.so exports symbols outside the dsv4 API:"; nm -D --defined-only -C "$so" | grep -v ' dsv4_\|dsv4::' | head; exit 1
fi

for kind in shared static; do
  flag=OFF; [ "$kind" = static ] && flag=ON
  cmake -S "$here/consumer" -B "$work/consumer-$kind" -DCMAKE_PREFIX_PATH="$prefix" -DDSV4_USE_STATIC=$flag -DCMAKE_BUILD_TYPE=Release > "$work/consumer-$kind.log"
  cmake --build "$work/consumer-$kind" -j2 >> "$work/consumer-$kind.log"
  for app in consumer_c consumer_cpp; do
    out=$("$work/consumer-$kind/$app" "$demo")
    echo "cmake $kind $app: $out"
    case "$out" in *"tokens="*"vocab="*) ;; *) echo "FAIL: $app printed '$out'"; exit 1 ;; esac
  done
  if [ $kind = shared ]; then
    deps=$(ldd "$work/consumer-$kind/consumer_c")
    grep -q 'libdsv4.so' <<< "$deps" || { echo "FAIL: consumer_c does not use libdsv4.so"; exit 1; }
  else
    deps=$(ldd "$work/consumer-$kind/consumer_c")
    ! grep -q 'libdsv4.so' <<< "$deps" || { echo "FAIL: static consumer uses libdsv4.so"; exit 1; }
  fi
done

# pkg-config, by hand as a Makefile would: plain cc, shared and --static.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cc -std=c99 -o "$work/pc_shared" "$here/consumer/consumer.c" $(pkg-config --cflags --libs dsv4) -Wl,-rpath,"$prefix/lib"
cc -std=c99 -o "$work/pc_static" "$here/consumer/consumer.c" $(pkg-config --cflags dsv4) "$prefix/lib/libdsv4.a" $(pkg-config --static --libs-only-l dsv4 | sed 's/-ldsv4//')
echo "pkg-config shared: $("$work/pc_shared" "$demo")"
echo "pkg-config static: $("$work/pc_static" "$demo")"

# The installed CLI finds its demo model relative to itself, also after the prefix moves.
mv "$prefix" "$work/moved"
out=$(env -u DSV4_MODEL "$work/moved/bin/dsv4" generate -p "def add(a, b):" -n 4 --greedy 2>/dev/null)
[ -n "$out" ] || { echo "FAIL: moved dsv4 generate printed nothing"; exit 1; }
echo "moved prefix, dsv4 generate: $(printf %s "$out" | head -c 60 | tr '\n' ' ')"
# Used through add_subdirectory(), dsv4 configures only its library (no tests, CLI, Python, install).
src=$(cd "$here/../.." && pwd)
mkdir -p "$work/sub"
printf 'cmake_minimum_required(VERSION 3.25)\nproject(host LANGUAGES C CXX)\nadd_subdirectory(%s dsv4)\nadd_executable(app %s)\ntarget_link_libraries(app PRIVATE dsv4::dsv4)\n' \
  "$src" "$here/consumer/consumer.c" > "$work/sub/CMakeLists.txt"
cmake -S "$work/sub" -B "$work/sub/build" > "$work/sub.log"
targets=$(cmake --build "$work/sub/build" --target help | sed -n 's/^\.\.\. //p' | tr '\n' ' ')
for t in dsv4_cli dsv4_tests _dsv4 install; do
  case " $targets " in *" $t "*) echo "FAIL: add_subdirectory configures $t"; exit 1 ;; esac
done
echo "add_subdirectory targets: $targets"
echo "PASS"
