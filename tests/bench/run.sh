#!/usr/bin/env bash
# Runs process-lock's benchmarks and writes a results table (Markdown) and a chart (SVG).
#
#   bash tests/bench/run.sh            # full run, about 3 minutes: docs/bench/ and README's table
#   bash tests/bench/run.sh --quick    # about 1 minute, fewer samples: build-bench/bench-quick/
#   options: --out DIR (where results.md, chart.svg and log.txt go), --no-readme
#   environment: BUILD_DIR (default build-bench), JOBS (parallel compile jobs, default nproc),
#                BENCH_PNG=FILE (also draw the chart as a PNG there)
#
# It builds lock_bench, handoff_bench, quorum_bench and the process-lock command (Release) in BUILD_DIR, starts a private redis-server on
# a free loopback port (never 6379; stopped on exit), runs them, and writes:
#   results.md  one table: the library against raw hiredis, contention, hand-off; the machine;
#               the load average before and after each stage
#   chart.svg   the same, drawn by gnuplot (tests/bench/chart.gp)
#   log.txt     the benchmarks' own output, every round
# A full run into docs/bench also replaces the table in README.md's "Benchmarks" section.
#
# Prerequisites (Debian/Ubuntu):
#   apt-get install cmake g++ pkg-config libhiredis-dev redis-server libgtest-dev libbenchmark-dev gnuplot-nox
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
quick=0
out=
readme=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --no-readme) readme=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done

build=${BUILD_DIR:-$root/build-bench}
jobs=${JOBS:-$(nproc)}
if [ $quick = 1 ]; then
  mode="quick"
  floor_args=(--rounds 6 --min-time 0.1)
  contention_seconds=3
  handoff_rounds=60
  deploy_rounds=10
  quorum_args=(--cycles 300 --rounds 2)
  tls_args=(--rounds 3 --cycles 500)
  out=${out:-$build/bench-quick}
else
  mode="full"
  floor_args=(--rounds 30 --min-time 0.3)
  contention_seconds=10
  handoff_rounds=300
  deploy_rounds=40
  quorum_args=(--cycles 2000 --rounds 3)
  tls_args=(--rounds 10 --cycles 2000)
  out=${out:-$root/docs/bench}
fi
work_us=50
[ "$out" = "$root/docs/bench" ] && [ $quick = 0 ] || readme=0

missing=()
for cmd in cmake c++ pkg-config redis-server redis-cli gnuplot; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing ${missing[*]}; on Debian/Ubuntu:" >&2
  echo "  apt-get install cmake g++ pkg-config libhiredis-dev redis-server libgtest-dev libbenchmark-dev gnuplot-nox" >&2
  exit 69
fi

started=$(date +%s)
echo "== building lock_bench, handoff_bench, quorum_bench, tls_bench and process-lock (Release) in $build"
# The process-lock command too: the deploy hand-over runs it (handoff_bench --cli).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPROCESS_LOCK_BUILD_BENCHMARKS=ON \
  -DPROCESS_LOCK_BUILD_EXAMPLES=ON -DPROCESS_LOCK_INSTALL=OFF >/dev/null
if ! grep -q '^benchmark_DIR:PATH=/' "$build/CMakeCache.txt"; then
  echo "run.sh: CMake did not find Google Benchmark; apt-get install libbenchmark-dev" >&2
  exit 69
fi
cmake --build "$build" --target lock_bench handoff_bench quorum_bench process-lock -j "$jobs" >/dev/null
if grep -q '^OPENSSL_INCLUDE_DIR:PATH=/' "$build/CMakeCache.txt"; then
  cmake --build "$build" --target tls_bench -j "$jobs" >/dev/null
fi

tmp=$(mktemp -d /tmp/process-lock-bench-XXXXXX)
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port that nothing uses: redis-server exits at once if the port is taken; the check that it
# is serving asks for its own pid, so a server that was there before cannot be mistaken for it.
port=
for attempt in $(seq 1 20); do
  candidate=$((20000 + RANDOM % 40000))  # never 6379
  redis-server --port "$candidate" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --logfile "$tmp/redis.log" --daemonize no &
  redis_pid=$!
  for i in $(seq 1 50); do
    kill -0 "$redis_pid" 2>/dev/null || break
    if redis-cli -p "$candidate" info server 2>/dev/null | grep -q "^process_id:$redis_pid"; then
      port=$candidate
      break
    fi
    sleep 0.1
  done
  [ -n "$port" ] && break
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=
done
if [ -z "$port" ]; then
  echo "run.sh: could not start redis-server on a free port; its log:" >&2
  tail -20 "$tmp/redis.log" >&2 || true
  exit 69
fi
export REDIS_URL="redis://127.0.0.1:$port"
echo "== redis-server $(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^redis_version://p') on $REDIS_URL (pid $redis_pid)"

# The machine.
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
cores=$(nproc)
kernel=$(uname -r)
os=$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}") || true)
redis_version=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^redis_version://p')
hiredis_version=$(pkg-config --modversion hiredis 2>/dev/null || echo "?")
compiler=$(c++ --version | head -1)
gbench_dir=$(sed -n 's/^benchmark_DIR:PATH=//p' "$build/CMakeCache.txt")
gbench_version=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' "$gbench_dir/benchmarkConfigVersion.cmake" 2>/dev/null || echo "?")
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$root" diff --quiet HEAD -- include tests 2>/dev/null || commit="$commit + local changes"
load() { cut -d' ' -f1-3 /proc/loadavg | sed 's/ /, /g'; }

log=$tmp/log.txt
: >"$log"
# What else ran during a stage: the machine's busy CPU time (all but idle and I/O wait) less what
# redis-server and the benchmark (with its forked children) used, as a share of all cores.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
own_ticks() {  # redis-server's own time + this shell's reaped children's (fields 14-17 after the name)
  local r s
  r=$(sed 's/^.*) //' "/proc/$redis_pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')
  s=$(sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }')
  echo $((${r:-0} + s))
}
ticks_per_s=$(getconf CLK_TCK)
stage() {  # stage NAME COMMAND...: runs it, keeps its output, notes the load and others' CPU use
  local name=$1
  shift
  local before rc=0 busy0 own0 t0 busy1 own1 t1 other
  before=$(load)
  echo "== $name (load average $before)"
  echo "== $name: $*" >>"$log"
  busy0=$(busy_ticks); own0=$(own_ticks); t0=$(date +%s%N)
  "$@" >"$tmp/stage.out" 2>&1 || rc=$?
  busy1=$(busy_ticks); own1=$(own_ticks); t1=$(date +%s%N)
  cat "$tmp/stage.out" >>"$log"
  kill -0 "$redis_pid" 2>/dev/null || { rc=${rc/#0/1}; echo "run.sh: the redis-server stopped during $name" >&2; }
  if [ $rc != 0 ]; then
    tail -30 "$tmp/stage.out" >&2
    echo "run.sh: $name failed (exit status $rc)" >&2
    exit 1
  fi
  grep -E '^(op |lock_clear|try_clear|update|state| +rawsys| +to the| +0\.1\.0|\||contention/|quorum|tls_bench|lib-tls /)' "$tmp/stage.out" || true
  other=$(awk -v b=$((busy1 - busy0)) -v o=$((own1 - own0)) -v ns=$((t1 - t0)) -v hz="$ticks_per_s" -v c="$cores" \
    'BEGIN { x = (b - o) / (ns / 1e9 * hz * c) * 100; if (x < 0) x = 0; printf "%.0f%%", x }')
  others+=("${other%\%}")
  loads+=("| $name | $before | $(load) | $other |")
}
others=()
loads=()
bin=$build/tests/bench
stage "library against raw hiredis" "$bin/lock_bench" "${floor_args[@]}" --tsv "$tmp" --benchmark_filter='^floor/'
stage "contention" "$bin/lock_bench" --contention-seconds "$contention_seconds" --work-us "$work_us" --tsv "$tmp" \
  --benchmark_filter='^contention/'
stage "hand-off" "$bin/handoff_bench" "$handoff_rounds" --tsv "$tmp/handoff.tsv" \
  --cli "$build/examples/process-lock" --deploy-rounds "$deploy_rounds" --deploy-tsv "$tmp/deploy.tsv"
stage "quorum" "$bin/quorum_bench" "${quorum_args[@]}" --delay-ms 5 --tsv "$tmp"
if [ -x "$bin/tls_bench" ]; then  # built where OpenSSL was found
  stage "tls" "$bin/tls_bench" "${tls_args[@]}" --tsv "$tmp/tls.tsv"
fi
elapsed=$(($(date +%s) - started))

# The table.
mkdir -p "$out"
cp "$log" "$out/log.txt"
table=$tmp/table.md
awk -F'\t' -v work="$work_us" -v floor="$tmp/floor.tsv" -v cont="$tmp/contention.tsv" -v hand="$tmp/handoff.tsv" -v deploy="$tmp/deploy.tsv" -v quorum="$tmp/quorum.tsv" -v tls="$tmp/tls.tsv" '
function us(x) { return sprintf("%.1f µs", x) }
function msec(x) { return x == "nan" || x == "-nan" ? "-" : sprintf("%.2f ms", x) }
BEGIN {
  label["lock_clear"] = "`lock()` + `clear()`"; label["try_clear"] = "`try_lock_for()` (free lock) + `clear()`"
  label["update"] = "`update()`"; label["state"] = "`state()`"
  raw["lock_clear"] = "EVALSHA lock + EVALSHA clear"; raw["try_clear"] = raw["lock_clear"]
  raw["update"] = "EVALSHA update"; raw["state"] = "GET"
  print "| benchmark | case | rate | median | p99 | notes |"
  print "|---|---|---:|---:|---:|---|"
  while ((getline line < floor) > 0) {
    split(line, f, "\t"); if (f[1] == "op") continue
    has_min = f[14] != "" && f[14] !~ /nan/
    if (has_min)
      print "| " label[f[1]] " | minimal lock, raw hiredis | " f[14] " /s | " us(f[18]) " | " us(f[19]) " | SET NX PX + EVALSHA compare-and-delete: no fencing, holder record or release notices |"
    if (f[20] != "" && f[20] !~ /nan/)
      printf "| %s | 0.1.0'"'"'s scripts, raw hiredis | %s /s | | | wire version 1; ratio to the minimal lock %.3f (rounds: %.3f to %.3f) |\n", label[f[1]], f[20], f[21], f[22], f[23]
    print "| " label[f[1]] " | the library'"'"'s scripts, raw hiredis | " f[2] " /s | " us(f[9]) " | " us(f[10]) " | " raw[f[1]] " |"
    verdict = f[4] >= 0.95 ? "meets the 0.95 goal" : "**below the 0.95 goal**"
    notes = sprintf("to its own scripts on raw hiredis: ratio %.3f (rounds: %.3f to %.3f; median-latency ratio %.3f; library − raw: %+.1f µs each), %s", \
      f[4], f[5], f[6], f[7], f[8], verdict)
    if (has_min) {
      min_verdict = f[15] >= 0.85 ? "meets the 0.85 goal" : "**below the 0.85 goal**"
      notes = sprintf("**to the minimal lock: ratio %.3f** (rounds: %.3f to %.3f), %s; %s", f[15], f[16], f[17], min_verdict, notes)
    }
    printf "| %s | process-lock | %s /s | %s | %s | %s |\n", label[f[1]], f[3], us(f[11]), us(f[12]), notes
  }
  while ((getline line < cont) > 0) {
    split(line, c, "\t")
    printf "| contention: `try_lock_for`, %d µs work, `clear()` | %d process%s | %.0f critical sections/s | | | per process min %d, max %d, CV %.3f, Jain %.3f; waits that timed out: %d; overlaps: %d |\n", \
      work, c[1], c[1] == 1 ? "" : "es", c[2], c[5], c[6], c[7], c[8], c[9], c[10]
  }
  while ((getline line < hand) > 0) {
    split(line, h, "\t"); if (h[1] == "waiters") continue
    printf "| hand-off after `clear()` | %d waiter%s | | %s | %s | %d hand-offs |\n", h[1], h[1] == 1 ? "" : "s", msec(h[2]), msec(h[3]), h[6]
  }
  close(hand)
  while ((getline line < hand) > 0) {
    split(line, h, "\t"); if (h[1] == "waiters") continue
    printf "| hand-off at a dead holder'"'"'s expiry | %d waiter%s | | %s | %s | %d hand-offs; includes the deliberate jitter |\n", h[1], h[1] == 1 ? "" : "s", msec(h[4]), msec(h[5]), h[7]
  }
  while ((getline line < deploy) > 0) {
    split(line, d, "\t"); if (d[1] == "median_ms") continue
    printf "| deploy hand-over: SIGTERM to the active `process-lock run` until the standby'"'"'s command runs | 1 standby | | %s | %s | %d hand-overs; the active one'"'"'s command ends, it releases, the waiting standby takes the lock and starts its command |\n", msec(d[1]), msec(d[2]), d[3]
  }
  # Quorum: each delayed case against the undelayed one of this run (goal 1.5x); each undelayed
  # one against one master (goal 1.1x: no fence raise happens in this loop). Beside each, the
  # minimal quorum lock on the same masters in the same rounds: what the machine allows.
  while ((getline line < quorum) > 0) {
    split(line, q, "\t"); if (q[1] == "case") continue
    floor_note = sprintf("minimal quorum lock on these masters: median %s, p99 %s; the library'"'"'s scripts on the same raw parallel client: median %s, p99 %s; the library %.2fx the minimal lock, %.2fx its scripts", us(q[7]), us(q[8]), us(q[9]), us(q[10]), q[4] / q[7], q[4] / q[9])
    if (q[2] == 1) { one = q[4]; min_one = q[7]; note = "the same cycle on one master; " floor_note }
    else if (q[3] == 0) {
      base[q[2]] = q[4]; min_base[q[2]] = q[7]; x = q[4] / one
      note = sprintf("%.2fx one master'"'"'s median, %s; %s; the minimal lock itself %.2fx its one-master median, so the library'"'"'s ratio is %.2fx the floor'"'"'s", x, x <= 1.1 ? "meets the 1.1x goal" : "**above the 1.1x goal**", floor_note, q[7] / min_one, x / (q[7] / min_one))
    } else {
      x = q[4] / base[q[2]]
      note = sprintf("one master %d ms away each way: %.2fx the undelayed median, %s; %s; the minimal lock itself %.2fx its undelayed median", q[3], x, x <= 1.5 ? "meets the 1.5x goal" : "**above the 1.5x goal**", floor_note, q[7] / min_base[q[2]])
    }
    printf "| quorum: `lock()` + `clear()` | %s | | %s | %s | %s; %d cycles |\n", q[1], us(q[4]), us(q[5]), note, q[6]
  }
  while ((getline line < tls) > 0) {
    split(line, t, "\t"); if (t[1] == "lib_tls_ops_s") continue
    printf "| TLS: `lock()` + `clear()` over `rediss://` | minimal lock, raw TLS client | %s /s | %s | %s | SET NX PX + EVALSHA compare-and-delete; OpenSSL on a blocking socket, hiredis'"'"'s reader |\n", t[2], us(t[12]), us(t[13])
    printf "| TLS: `lock()` + `clear()` over `rediss://` | process-lock | %s /s | %s | %s | **to the minimal lock over TLS: ratio %.3f** (rounds: %.3f to %.3f); the same pair over TCP in this run: %.3f; TLS costs the library %.0f%% of its TCP rate |\n", t[1], us(t[10]), us(t[11]), t[5], t[6], t[7], t[8], (1 - t[9]) * 100
  }
}' >"$table"

floor_rounds=$(awk -F'\t' 'NR == 2 { print $13 }' "$tmp/floor.tsv")
floor_min_time=${floor_args[3]}
cmdline="bash tests/bench/run.sh"
[ $quick = 1 ] && cmdline="$cmdline --quick"
busiest=$(printf '%s\n' "${others[@]}" | sort -n | tail -1)
noisy=
if [ "$busiest" -ge 10 ]; then
  noisy="**Other work shared the machine during this run**: other processes used up to $busiest% of its CPU time during a stage. The numbers are noisy; the ratios' ranges over the rounds show how much. Rerun on a quiet machine for firm numbers."
fi
machine="$cpu, $cores cores, Linux $kernel${os:+ ($os)}; Redis $redis_version, hiredis $hiredis_version, $compiler, Google Benchmark $gbench_version"
when=$(date -u '+%Y-%m-%d %H:%M UTC')
{
  echo "# process-lock benchmarks"
  echo
  echo "$mode run of \`$cmdline\`, $when, commit $commit, in $elapsed s (build included)."
  echo
  echo "Machine: $machine. Redis is a private redis-server on TCP loopback (\`127.0.0.1\`), no persistence; client and server share the machine's cores."
  echo
  [ -z "$noisy" ] || { echo "$noisy (See the last table.)"; echo; }
  cat "$table"
  echo
  echo "![benchmark chart](chart.svg)"
  echo
  echo "How to read it:"
  echo
  echo "- **Library against raw hiredis and against the minimal lock**: each call is timed on its own (median, p99 over every call of every round). The raw client sends the very same commands (the library's Lua scripts by EVALSHA, with the same keys and arguments, or GET) on a hiredis connection with the same settings (TCP loopback, 2 s connect and command timeouts). For taking and releasing a free lock, a third side is the **minimal lock**: the least a correct lock sends, \`SET key token NX PX ttl\` and then an EVALSHA that deletes the key only if it still holds the token (no fencing, no holder record, no release notices); and \`lock()\` + \`clear()\` also runs 0.1.0's scripts (wire version 1) on raw hiredis, to show what wire version 2 saves. $floor_rounds rounds; each runs every side of an operation back to back (at least $floor_min_time s each), each side going first in turn. A **ratio** = median over the rounds of (library calls/s ÷ the other side's calls/s in the same round), so that drift on a shared machine affects both sides of each ratio alike; its range over the rounds shows the noise. The ratio to the minimal lock is the honest headline (what fencing, the holder record and release notices cost inside Redis, goal 0.85); the ratio to the library's own scripts shows what the client adds (goal 0.95). The median-latency ratio (raw median ÷ library median, per round, median over rounds) is less moved by bursts from other processes. The rates shown are the medians over rounds."
  echo "- **Contention**: P forked processes, each with its own \`ProcessLock\` on one name, loop for $contention_seconds s: \`try_lock_for\` (the waiting call users would use; up to 5 s), $work_us µs of busy work while holding, \`clear()\`, and at once again. Rate = critical sections completed ÷ time. Fairness is over the per-process counts: CV = standard deviation ÷ mean, Jain's index = (Σx)² ÷ (P·Σx²), 1 when all got the same, 1/P when one got all. A shared-memory flag checks that no two were ever inside at once (overlaps)."
  echo "- **Hand-off** (\`handoff_bench\`, $handoff_rounds rounds): the time the lock sits free between holders: from just before a holder's \`clear()\` until a waiter's \`try_lock_for\` returns with it, and from a dead holder's expiry (a key set with a 50 ms TTL) until a waiter has it. The **deploy hand-over** ($deploy_rounds rounds): an active \`process-lock run\` gets SIGTERM; the time until a standby \`process-lock run\`, already waiting, has started its command (the command writes to a FIFO that the benchmark reads): the active command's end, the release, the standby's acquisition and its fork and exec."
  [ ! -s "$tmp/tls.tsv" ] || echo "- **TLS** (\`tls_bench ${tls_args[*]}\`): \`lock()\` + \`clear()\` over \`rediss://\` against the minimal lock sent by a raw TLS client (a blocking socket, OpenSSL's \`SSL_write\`/\`SSL_read\`, hiredis's reader: what hiredis_ssl does, which needs hiredis 1.x and cannot be linked beside the 0.14 used here), and the same two over plain TCP, all four against one redis-server of its own (its TLS and its plain port, a certificate it makes), each going first in turn. Ratios are medians over rounds of the same round's rates."
  echo "- **Quorum** (\`quorum_bench ${quorum_args[*]}\`): \`lock()\` + \`clear()\` timed together, on one master, on 3 and on 5 independent local masters (redis-servers of its own), and with the first of them behind a proxy that holds every byte 5 ms each way. Each round runs every case in turn after a warm-up (the three sides of a case taking turns to go first), and beside each the minimal correct quorum lock on the same masters (raw sockets and hiredis's reader: \`SET NX PX\` to every master at once, done at a majority of OK, then compare-and-delete likewise), the floor any client stands on here; median and p99 are over every timed cycle. Goals: with the delay, at most 1.5x the undelayed median of the same run; without it, at most 1.1x one master's median (no fencing counter lags in this loop, so no raise happens)."
  echo
  echo "What else ran: the load average (1, 5, 15 min) before and after each stage (the build and the previous stage count in it), and the share of the machine's CPU time (all cores; everything but idle and I/O wait, including time the hypervisor gave to other guests) that processes other than the benchmark and its redis-server used during the stage:"
  echo
  echo "| stage | load average before | after | CPU used by others |"
  echo "|---|---|---|---:|"
  printf '%s\n' "${loads[@]}"
  echo
  echo "Every round's numbers are in [log.txt](log.txt)."
} >"$out/results.md"

# The chart.
awk -F'\t' 'NR > 1 { n = $1 == "lock_clear" ? "lock+clear" : $1 == "try_clear" ? "try+clear" : $1; print n "\t" $9 "\t" $10 "\t" $11 "\t" $12 "\t" $4 }' "$tmp/floor.tsv" >"$tmp/floor.dat"
cpu_short=$(echo "$cpu" | sed 's/([^)]*)//g; s/  */ /g')
chart_title="process-lock benchmarks ($mode run, $when): $cpu_short, $cores cores, Redis $redis_version, hiredis $hiredis_version"
gnuplot -e "dir='$tmp'; out='$out/chart.svg'; title='$chart_title'" "$root/tests/bench/chart.gp"
[ -z "${BENCH_PNG:-}" ] || gnuplot -e "png=1; dir='$tmp'; out='$BENCH_PNG'; title='$chart_title'" "$root/tests/bench/chart.gp"

# README: the table between the markers of its Benchmarks section.
if [ $readme = 1 ] && grep -q '<!-- bench:begin -->' "$root/README.md"; then
  {
    sed -n '1,/<!-- bench:begin -->/p' "$root/README.md"
    echo "Measured $when on $machine. CPU time used by other processes during the stages (library, contention, hand-off, quorum$([ -x "$bin/tls_bench" ] && echo ', TLS')): $(printf '%s%%\n' "${others[@]}" | paste -sd',' | sed 's/,/, /g') of the machine ([details](docs/bench/results.md))."
    echo
    [ -z "$noisy" ] || { echo "$noisy"; echo; }
    cat "$table"
    echo
    sed -n '/<!-- bench:end -->/,$p' "$root/README.md"
  } >"$tmp/README.md"
  cp "$tmp/README.md" "$root/README.md"
  echo "== README.md: Benchmarks table updated"
fi

echo "== done in $elapsed s: $out/results.md, $out/chart.svg, $out/log.txt"
cat "$table"
