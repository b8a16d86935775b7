#!/usr/bin/env bash
# The fault-injection torture run (README, "Torture run"): builds tests/torture/torture.cpp and
# runs it: worker processes contend for one lock and write to a fenced resource while faults are
# injected; exits non-zero on any violation.
#
# usage: bash tests/torture/run.sh [--duration SECONDS] [--seed N] [--workers N] [--header DIR]
#                                  [--build-dir DIR]
#   --duration SECONDS  how long faults are injected (default 180); the whole run takes ~15 s more
#   --seed N            repeat a run's random choices (printed at its start)
#   --workers N         contending worker processes (default 5)
#   --header DIR        build against DIR/process_lock.hpp (and its parts in DIR/process_lock/)
#                       instead of include/ (e.g. a modified copy of include/, to see the run
#                       catch a broken lock); built in its own build dir
#   --build-dir DIR     where to build (default build-torture, or build-torture-header with --header)
# It installs nothing: it says what is missing. Without libfaketime (Debian: faketime) the
# wall-clock jump fault is skipped, except under CI=true, where that is an error.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

duration=180
header=""
build=""
run_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?--duration needs a number of seconds}; shift 2 ;;
    --seed|--workers) run_args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --header) header=${2:?--header needs a directory}; shift 2 ;;
    --build-dir) build=${2:?--build-dir needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "torture: unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
case "$duration" in ''|*[!0-9]*) echo "torture: --duration must be a whole number of seconds" >&2; exit 64 ;; esac

missing=()
for tool in cmake c++ make pkg-config redis-server timeout; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
pkg-config --exists hiredis 2>/dev/null || missing+=("hiredis (libhiredis-dev)")
[ -e /usr/include/gtest/gtest.h ] || [ -e /usr/local/include/gtest/gtest.h ] || missing+=("GoogleTest (libgtest-dev)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "torture: missing: ${missing[*]}" >&2
  echo "torture: on Debian or Ubuntu: apt-get install cmake g++ make pkg-config libhiredis-dev redis-server libgtest-dev faketime" >&2
  exit 69
fi

faketime_lib=""
for candidate in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 /usr/local/lib/faketime/libfaketime.so.1; do
  if [ -e "$candidate" ]; then faketime_lib=$candidate; break; fi
done
if [ -z "$faketime_lib" ]; then
  echo "torture: libfaketime is missing (apt-get install faketime): the wall-clock jump fault will be SKIPPED" >&2
  if [ "${CI:-}" = "true" ]; then
    echo "torture: CI must run every fault; install faketime" >&2
    exit 69
  fi
else
  run_args+=(--faketime-lib "$faketime_lib")
fi

cmake_args=(-DPROCESS_LOCK_BUILD_EXAMPLES=OFF -DPROCESS_LOCK_INSTALL=OFF)
if [ -n "$header" ]; then
  header=$(cd "$header" && pwd)
  if [ ! -e "$header/process_lock.hpp" ]; then
    echo "torture: $header/process_lock.hpp does not exist" >&2
    exit 64
  fi
  cmake_args+=("-DPROCESS_LOCK_TORTURE_INCLUDE_DIR=$header")
  build=${build:-$root/build-torture-header}
  echo "== torture: building against $header/process_lock.hpp"
else
  cmake_args+=("-DPROCESS_LOCK_TORTURE_INCLUDE_DIR=")
  build=${build:-$root/build-torture}
fi
mkdir -p "$build"
cmake -S "$root" -B "$build" "${cmake_args[@]}" >"$build/torture-configure.log" 2>&1 || {
  cat "$build/torture-configure.log" >&2
  echo "torture: cmake configure failed" >&2
  exit 70
}
cmake --build "$build" --target process_lock_torture -j1 >/dev/null || { echo "torture: build failed" >&2; exit 70; }
bin="$build/tests/torture/torture"

# Bounded: the run stops itself after --duration plus the workers' 10 s to exit; `timeout` is the
# backstop for a run that hangs (the program's servers and workers die with it: PR_SET_PDEATHSIG).
limit=$((duration + 120))
timeout --kill-after=15 "$limit" "$bin" run --duration "$duration" "${run_args[@]}" &
pid=$!
# Ctrl-C or SIGTERM: the run stops its workers and servers, reports what it saw, and exits 130.
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM HUP
rc=0
while :; do
  if wait "$pid"; then rc=0; else rc=$?; fi
  kill -0 "$pid" 2>/dev/null || break  # a signal interrupted the wait: wait for the run again
done
trap - INT TERM HUP
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "torture: HANG: the run did not finish within $limit s" >&2
fi
exit "$rc"
