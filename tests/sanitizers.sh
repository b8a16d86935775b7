#!/usr/bin/env bash
# Builds the C++17 test suite with AddressSanitizer + UndefinedBehaviorSanitizer and with
# ThreadSanitizer, and runs each; any report fails the run.
#   sanitizers.sh [BUILD_ROOT=build-sanitizers]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-$src/build-sanitizers}

run() {
  local name=$1 flags=$2
  echo "== $name"
  # -O1 -g1: what the sanitizers' own documentation suggests, and much quicker to build than -O2 -g.
  cmake -S "$src" -B "$root/$name" -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -g1 $flags" \
    -DPROCESS_LOCK_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$root/$name" -j2 --target process_lock_tests_cxx17
  bash "$src/tests/sharded.sh" "$root/$name/tests/process_lock_tests_cxx17" 2
}

# Sanitizer instrumentation makes GCC's -Wmaybe-uninitialized report false positives inside the
# standard library (GCC's manual warns of this), so that one warning is off in these builds only.
quiet="-Wno-maybe-uninitialized"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run asan-ubsan "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer $quiet"
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
run tsan "-fsanitize=thread $quiet"
