#!/usr/bin/env bash
# Compile-time guarantees: std::lock_guard<ProcessLock> must not compile (it would not block),
# and the same with process_lock::Mutex must, so the failure is for the right reason.
#   compile_fail_test.sh CXX SOURCE_DIR
set -euo pipefail
cxx=$1 src=$2
flags=(-std=c++17 -fsyntax-only -I"$src/include" $(pkg-config --cflags hiredis))
"$cxx" "${flags[@]}" "$src/tests/compile_fail/lock_guard_on_mutex.cpp"
echo "lock_guard<Mutex>: compiles, as it should"
if out=$("$cxx" "${flags[@]}" "$src/tests/compile_fail/lock_guard_on_process_lock.cpp" 2>&1); then
  echo "lock_guard<ProcessLock> compiled: a non-blocking guard would slip through"; exit 1
fi
echo "$out" | grep -q "unlock" || { echo "lock_guard<ProcessLock> failed, but not for the missing unlock():"; echo "$out"; exit 1; }
echo "lock_guard<ProcessLock>: does not compile (no unlock()), as it should"
