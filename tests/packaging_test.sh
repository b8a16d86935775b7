#!/usr/bin/env bash
# Installs the library from the build tree into a scratch prefix, then builds the consumer
# project four ways: find_package, add_subdirectory, pkg-config, and a plain -I include.
#   packaging_test.sh SOURCE_DIR BUILD_DIR [TLS]   (TLS: ON if the build has TLS)
set -euo pipefail
src=$1 build=$2 tls=${3:-OFF}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
# Built with TLS (OpenSSL found): the packaged ways carry it to the consumer, which then also
# makes a rediss:// call; the plain include, without the define, answers rediss:// unsupported.
consume() {
  "$1"
  if [ "$tls" = ON ]; then "$1" tls; fi
}

echo "== install"
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/process_lock.hpp"
# Every part the umbrella header includes is installed beside it.
for part in $(sed -n 's|^#include "\(process_lock/.*\)"$|\1|p' "$src/include/process_lock.hpp"); do
  test -f "$prefix/include/$part" || { echo "packaging: $part is not installed"; exit 1; }
done
test -f "$prefix/share/cmake/process_lock/process_lockConfig.cmake"

echo "== find_package(process_lock)"
cmake -S "$src/tests/consumer" -B "$work/find" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/find" >/dev/null
consume "$work/find/consumer"

echo "== add_subdirectory"
cmake -S "$src/tests/consumer" -B "$work/subdir" -DPROCESS_LOCK_SOURCE_DIR="$src" >/dev/null
cmake --build "$work/subdir" >/dev/null
consume "$work/subdir/consumer"
# The library's own tests and examples must stay out of a user's build.
if [ -e "$work/subdir/process_lock/tests" ] || [ -e "$work/subdir/process_lock/examples" ]; then
  echo "add_subdirectory built the library's tests or examples"; exit 1
fi

echo "== pkg-config"
flags=$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --cflags --libs process_lock)
c++ -std=c++17 "$src/tests/consumer/main.cpp" $flags -o "$work/pc-consumer"
consume "$work/pc-consumer"

echo "== plain #include (include/ copied into the consumer's tree)"
cp -R "$src/include" "$work/vendored"
c++ -std=c++17 -I"$work/vendored" "$src/tests/consumer/main.cpp" -lhiredis -pthread -o "$work/plain-consumer"
"$work/plain-consumer"
"$work/plain-consumer" no-tls
echo "packaging: all four ways work"
