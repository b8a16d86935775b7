#!/usr/bin/env bash
# Builds and runs the test suite against hiredis 1.x: Debian 13's libhiredis-dev, unpacked into a
# scratch directory with the system's own apt sources (nothing is installed), so the header stays
# compatible with both 0.14 and 1.x.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The mirror this machine already uses, with the next Debian release as suite.
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$uri" ] || { echo "hiredis1_compat: no Debian apt source configured on this machine"; exit 1; }
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb $uri trixie main" > "$work/sources.list"
apt_opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Get::List-Cleanup=0
          -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" download -qq libhiredis-dev libhiredis1.1.0)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
hiredis=$work/root/usr
lib=$hiredis/lib/$(gcc -print-multiarch)
grep -q '#define HIREDIS_MAJOR 1' "$hiredis/include/hiredis/hiredis.h" || { echo "hiredis1_compat: not a 1.x hiredis"; exit 1; }
echo "== building the tests against hiredis $(sed -n 's/^Version: //p' "$lib/pkgconfig/hiredis.pc")"

# The library's own suites (the command-line tool's suite runs the tool binary, not the header),
# TLS included: the library's TLS is its own over OpenSSL, whatever hiredis it is built with.
sources=$(ls "$src"/tests/*_test.cpp | grep -v '/cli_test.cpp$')
# Two compilers at a time, one object per suite, then one link.
mkdir -p "$work/obj"
printf '%s\n' $sources | xargs -P2 -I{} sh -c \
  'c++ -std=c++17 -O1 -Wall -Wextra -Wpedantic -Werror -DPROCESS_LOCK_WITH_TLS=1 -isystem "$1/include" -I"$2/include" -c "$3" -o "$4/obj/$(basename "$3" .cpp).o"' \
  _ "$hiredis" "$src" {} "$work"
c++ "$work"/obj/*.o -o "$work/tests" -L"$lib" -Wl,-rpath,"$lib" -lhiredis -lssl -lcrypto -lgtest -lgtest_main -pthread
ldd "$work/tests" | grep -q "$lib/libhiredis.so.1" || { echo "hiredis1_compat: not linked against hiredis 1.x"; exit 1; }
bash "$src/tests/sharded.sh" "$work/tests" 2
