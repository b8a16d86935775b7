#!/usr/bin/env bash
# Runs a GoogleTest binary as SHARDS processes at once (GoogleTest's own sharding: each test in
# exactly one shard), since most tests wait on servers and timeouts rather than use a core.
# Each shard's output is printed when it ends; fails if any shard failed.
# usage: tests/sharded.sh BINARY [SHARDS]   (SHARDS defaults to 2)
set -euo pipefail
binary=$1
shards=${2:-2}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
for ((i = 0; i < shards; ++i)); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$binary" --gtest_brief=1 >"$logs/$i" 2>&1 &
  pids+=($!)
done
failed=0
for ((i = 0; i < shards; ++i)); do
  status=0
  wait "${pids[$i]}" || status=$?
  echo "-- shard $((i + 1)) of $shards: exit $status"
  cat "$logs/$i"
  [ "$status" -eq 0 ] || failed=1
done
exit $failed
