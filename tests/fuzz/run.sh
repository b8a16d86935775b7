#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang++ (-fsanitize=fuzzer,address,undefined) and runs each
# for a bounded time, starting from the seed corpus in tests/fuzz/corpus/TARGET. Fails on any
# crash, sanitizer report, broken invariant, leak or timeout; prints one summary line per target.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET=30] [BUILD_DIR=build-fuzz]
# Environment: CXX (default clang++), FUZZ_TARGETS (default "url cli reply"),
#   FUZZ_ARGS (extra libFuzzer flags, e.g. "-seed=1").
# Inputs found to be new are kept in BUILD_DIR/corpus/TARGET (the seeds are never changed); a
# failing input is saved as BUILD_DIR/artifacts/TARGET-crash-* and can be replayed with
#   BUILD_DIR/fuzz_TARGET FILE
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-30}
build=${2:-$src/build-fuzz}
cxx=${CXX:-clang++}
targets=${FUZZ_TARGETS:-url cli reply}
mkdir -p "$build/artifacts"

# shellcheck disable=SC2207
hiredis=($(pkg-config --cflags --libs hiredis))
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Wall -Wextra -Werror -I"$src/include" -I"$src/examples")

# The newest of the library's headers (the umbrella and its parts).
newest_header=$(ls -t "$src/include/process_lock.hpp" "$src"/include/process_lock/*.hpp | head -1)
for t in $targets; do
  if [ "$build/fuzz_$t" -nt "$src/tests/fuzz/fuzz_$t.cpp" ] && [ "$build/fuzz_$t" -nt "$newest_header" ] &&
     [ "$build/fuzz_$t" -nt "$src/examples/process_lock_cli.hpp" ]; then
    continue
  fi
  echo "== building fuzz_$t"
  "$cxx" "${flags[@]}" "$src/tests/fuzz/fuzz_$t.cpp" -o "$build/fuzz_$t" "${hiredis[@]}"
done

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
summary=()
for t in $targets; do
  mkdir -p "$build/corpus/$t"
  log="$build/fuzz_$t.log"
  echo "== fuzzing $t for ${seconds}s (log: $log)"
  status=0
  # shellcheck disable=SC2086
  "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" ${FUZZ_ARGS:-} \
    "$build/corpus/$t" "$src/tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  corpus=$(find "$build/corpus/$t" "$src/tests/fuzz/corpus/$t" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status)"
    failed+=("$t")
    grep -E 'ERROR|SUMMARY|fuzz_[a-z]+:|Test unit written|uncaught|==[0-9]+==' "$log" | head -20 >&2 || true
  fi
  summary+=("$(printf 'fuzz %-6s %-18s execs %-10s %-20s corpus %s files' "$t" "$result" "${execs:-?}" "${cov:-cov: ?}" "$corpus")")
done
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
