#!/usr/bin/env bash
# Runs the main test suite of an existing build against Valkey, which several distributions now
# ship in place of Redis: Valkey 8.0 from bookworm-backports, unpacked into BUILD_DIR/valkey with
# the machine's own mirror and put first on PATH under the names the tests run (redis-server,
# also started with --sentinel, redis-sentinel, redis-cli). Nothing is built or installed: the
# packages would start services where an init system runs, and need bookworm-backports added to
# the machine's apt sources. The suite is ctest's, less the C++17 copy (as the release stage).
#   tests/valkey.sh BUILD_DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: tests/valkey.sh BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
[ -f "$build/CTestTestfile.cmake" ] || { echo "valkey: $build is not a configured build directory" >&2; exit 1; }
work=$build/valkey
root=$work/root
suite=bookworm-backports
multiarch=$(gcc -print-multiarch)

# Once per build directory: valkey-tools holds the program (valkey-check-rdb); valkey-server and
# valkey-sentinel only name it (they run as whichever their name says).
if [ ! -x "$root/usr/bin/valkey-check-rdb" ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "valkey: no Debian apt source configured on this machine" >&2; exit 1; }
  rm -rf "$work"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  echo "deb $uri $suite main" >"$work/sources.list"
  apt_opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Get::List-Cleanup=0
            -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq
  packages=(valkey-tools valkey-server valkey-sentinel)
  # Its libraries are the ones Debian's redis-server needs, installed with it; any that are
  # missing here are unpacked beside it (from the release itself, so its lists are fetched too).
  missing=()
  for dep in $(apt-cache "${apt_opts[@]}" show valkey-tools | sed -n 's/^Depends: //p' | head -1 | tr ',' '\n' |
               sed 's/^ *//; s/[ (].*//' | grep -v '^adduser$'); do
    dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q "install ok installed" || missing+=("$dep")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== unpacking beside Valkey what this machine lacks: ${missing[*]}"
    echo "deb $uri ${suite%-backports} main" >>"$work/sources.list"
    apt-get "${apt_opts[@]}" update -qq
    packages+=("${missing[@]}")
  fi
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download -qq "${packages[@]}")
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
fi
echo "== Valkey from $suite: valkey-tools $(dpkg-deb -f "$work"/debs/valkey-tools_*.deb Version)"

# The names the tests run, each a one-line script running Valkey's program under its own name.
libs=$root/usr/lib/$multiarch:$root/lib/$multiarch
shims=$work/bin
mkdir -p "$shims"
for pair in redis-server:valkey-server redis-sentinel:valkey-sentinel redis-cli:valkey-cli; do
  # shellcheck disable=SC2016  # ${LD_LIBRARY_PATH...} and "$@" are the shim's, expanded when it runs
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$libs" "$root/usr/bin/${pair#*:}" >"$shims/${pair%%:*}"
  chmod +x "$shims/${pair%%:*}"
done
if LD_LIBRARY_PATH=$libs ldd "$root/usr/bin/valkey-check-rdb" | grep 'not found'; then
  echo "valkey: Valkey's program lacks the libraries above" >&2
  exit 1
fi
export PATH=$shims:$PATH
version=$(redis-server --version)
echo "== redis-server on PATH ($(command -v redis-server)): $version"
echo "== redis-cli on PATH: $(redis-cli --version)"
case "$version" in
  *[Vv]alkey*) ;;
  *) echo "valkey: redis-server on PATH is not Valkey" >&2; exit 1 ;;
esac

ctest --test-dir "$build" -j2 --output-on-failure -E '^cxx17[.]'
