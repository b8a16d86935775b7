#!/usr/bin/env bash
# Shows two workers sharing one lock: only one works at a time; the other takes over when the
# first releases the lock, and again when a holder is killed and its lock expires.
# Uses $REDIS_URL if set; otherwise starts a private redis-server on a unix socket.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

for tool in cmake c++ pkg-config; do
  command -v "$tool" >/dev/null || { echo "demo: '$tool' is missing (Debian: apt-get install cmake g++ pkg-config libhiredis-dev redis-server libgtest-dev)"; exit 1; }
done
pkg-config --exists hiredis || { echo "demo: hiredis is missing (Debian: apt-get install libhiredis-dev)"; exit 1; }

echo "== building the examples in $build"
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j2 --target worker >/dev/null
worker=$build/examples/worker

cleanup() { :; }
trap 'cleanup' EXIT
if [ -z "${REDIS_URL:-}" ]; then
  command -v redis-server >/dev/null || { echo "demo: redis-server is missing (apt-get install redis-server) and REDIS_URL is unset"; exit 1; }
  dir=$(mktemp -d)
  # No TCP port at all: a socket in a private directory cannot clash with anything.
  redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save "" --appendonly no \
    --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  cleanup() { kill "$(cat "$dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"; }
  for _ in $(seq 50); do [ -S "$dir/redis.sock" ] && break; sleep 0.1; done
  export REDIS_URL="unix://$dir/redis.sock"
  echo "== started a private redis-server at $REDIS_URL"
else
  echo "== using REDIS_URL from the environment"
fi
name="process-lock-demo-$$"

echo
echo "== 1. two workers start together; the second waits until the first releases the lock"
"$worker" "$name" alpha 2 3 & a=$!
"$worker" "$name" beta 2 3 & b=$!
wait "$a" "$b"

echo
echo "== 2. two workers again; the holder is killed (SIGKILL) after 1.5 s and never releases;"
echo "==    the other takes over once the 2 s lock expires"
"$worker" "$name" gamma 2 4 & g=$!
sleep 0.3
"$worker" "$name" delta 2 2 & d=$!
sleep 1.2
kill -9 "$g" && echo "$(date +%H:%M:%S.%3N) --- killed gamma (pid $g) while it held the lock"
{ wait "$g"; } 2>/dev/null || true
wait "$d" || true
echo
echo "== done: at every moment at most one worker was working"
