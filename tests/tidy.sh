#!/usr/bin/env bash
# Runs clang-tidy (the checks in .clang-tidy) over the project's own sources, every warning an
# error. By default it analyses a representative subset of translation units that together
# include every project header (include/process_lock.hpp and its parts, examples/process_lock_cli.hpp,
# tests/support.hpp, tests/contention.hpp; not the benchmarks' tests/bench/bench_common.hpp) and
# the command-line tool; --all analyses every TU, benchmarks included (about 10 minutes).
#   tests/tidy.sh [--all] [BUILD_DIR=build-tidy]
# Environment: CLANG_TIDY (default clang-tidy), JOBS (default 2).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
all=false
if [ "${1:-}" = --all ]; then all=true; shift; fi
build=${1:-$src/build-tidy}
tidy=${CLANG_TIDY:-clang-tidy}
jobs=${JOBS:-2}

# compile_commands.json from a clang configuration (nothing is built), so that the flags are
# the ones clang-tidy's own front end understands.
cmake -S "$src" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
# The examples (the command included) are also compiled by clang, with the project's -Werror:
# clang warns where GCC does not (-Wformat-security on a format without arguments).
echo "== clang++ build of the examples"
cmake --build "$build" -j"$jobs" --target process-lock basic keeper worker >"$build/examples-build.log" 2>&1 ||
  { cat "$build/examples-build.log"; exit 1; }

if $all; then
  mapfile -t files < <(cd "$src" && git ls-files 'examples/*.cpp' 'tests/*.cpp' | grep -v -e '^tests/compile_fail/' -e '^tests/consumer/' -e '^tests/fuzz/')
else
  # The slowest first, so that two jobs finish together. (Each GoogleTest TU takes 1-3 minutes
  # of analysis; one is enough to cover tests/support.hpp.)
  files=(
    examples/process-lock.cpp  # the command: process_lock.hpp + process_lock_cli.hpp
    tests/cli_test.cpp         # tests/support.hpp + process_lock_cli.hpp, GoogleTest
    tests/contention_test.cpp  # tests/contention.hpp
    examples/keeper.cpp        # Guard, keep(), fencing
    examples/basic.cpp         # the callback API
  )
fi

echo "== clang-tidy ($($tidy --version | grep -o 'version [0-9.]*')) on ${#files[@]} files, $jobs at a time"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
start=$(date +%s)
status=0
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} sh -c \
  'f=$1; log=$2/$(echo "$f" | tr / _).log; t0=$(date +%s);
   if "$3" -p "$4" --quiet --warnings-as-errors="*" "$5/$f" >"$log" 2>&1; then r=ok; else r=FAILED; fi;
   echo "$r $f ($(( $(date +%s) - t0 )) s)" >>"$2/results"' _ {} "$logs" "$tidy" "$build" "$src" || true
sort -k2 "$logs/results"
for f in "${files[@]}"; do
  log=$logs/$(echo "$f" | tr / _).log
  if ! grep -q "^ok $f " "$logs/results"; then
    status=1
    # Only the findings, not the "N warnings generated" noise of suppressed ones.
    grep -v -e '^[0-9]* warnings\? generated\.$' -e '^Suppressed [0-9]* warnings' -e '^Use -header-filter' \
      -e '^[0-9]* warnings\? treated as errors$' "$log" || true
  fi
done
findings=$(cat "$logs"/*.log | grep -c 'error: .*\[' || true)
echo "clang-tidy: ${#files[@]} files, $findings findings, $(( $(date +%s) - start )) s"
exit $status
