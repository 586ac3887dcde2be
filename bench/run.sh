#!/usr/bin/env bash
# bench/run.sh - recd's first benchmark. Makes a 100k-item synthetic bundle,
# starts recd on loopback with one worker thread and drives it with
# recd-loadgen: server CPU per Health/Check call (under load and one call at a
# time), Recommend calls/s (again with two workers, and with two workers but a
# single connection), and the same health load against a Python grpcio server
# for reference. Prints a table. Builds nothing: run it on a build tree.
#
#   bench/run.sh [BUILD_DIR]     (default: build)
#
# Knobs (environment): DURATION_S (5), WARMUP_S (1), CONCURRENCY (32),
# CHANNELS (4), PY_WORKERS (4). Exit status: 0 if every step and every load
# run succeeded, 1 otherwise.
set -euo pipefail

BUILD=${1:-build}
DURATION_S=${DURATION_S:-5}
WARMUP_S=${WARMUP_S:-1}
CONCURRENCY=${CONCURRENCY:-32}
CHANNELS=${CHANNELS:-4}
PY_WORKERS=${PY_WORKERS:-4}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RECD=$BUILD/server/recd
RECCTL=$BUILD/tools/recctl
LOADGEN=$BUILD/bench/recd-loadgen

die() { echo "run.sh: $*" >&2; exit 1; }

for exe in "$RECD" "$RECCTL" "$LOADGEN"; do
  [ -x "$exe" ] || die "$exe not found; build first (cmake --build $BUILD)"
done
"$PY" -c 'import grpc' 2>/dev/null || die "$PY cannot import grpc (apt-get install python3-grpcio)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/recd-bench.XXXXXX")
PIDS=()

alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# Asks a child of ours to stop, waits up to 10 s, then kills it, and forgets
# it so that cleanup never signals a pid the system has since reused.
stop_pid() {
  local pid=$1 p keep=()
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "run.sh: pid $pid ignored SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
  local pid
  for pid in "${PIDS[@]}" ${CHILD:+"$CHILD"}; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command in the background and waits for it: bash defers a trap while
# a foreground command runs, but 'wait' returns to it at once.
CHILD=
run_bg() {
  local rc=0
  "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}

# Waits up to $3 seconds for a line matching sed expression $2 in file $1 and
# sets FOUND to what it captures; dies if the process $4 exits first. (Not a
# $(...): a signal would wait for the subshell to end.)
wait_for() {
  local file=$1 expr=$2 secs=$3 pid=$4
  for _ in $(seq $((secs * 10))); do
    FOUND=$(sed -n "$expr" "$file" 2>/dev/null | head -n1)
    [ -n "$FOUND" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "process $pid exited early"; }
    sleep 0.1
  done
  die "gave up after ${secs} s waiting for $expr in $file"
}

# Starts recd with $1 worker threads; sets RECD_PID and RECD_ADDR.
start_recd() {
  local threads=$1 log=$TMP/recd-t$1.log
  "$RECD" --bundle="$TMP/b100k" --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --admin_grpc_listen=127.0.0.1:0 --threads="$threads" --drain_ms=1000 \
    2>"$log" &
  RECD_PID=$!
  PIDS+=("$RECD_PID")
  wait_for "$log" 's/.*msg="serving" port=\([0-9][0-9]*\).*/\1/p' 120 "$RECD_PID"
  RECD_ADDR=127.0.0.1:$FOUND
  run_bg timeout 40 "$RECCTL" health --addr "$RECD_ADDR" --wait 30 >/dev/null ||
    die "recd on $RECD_ADDR never reported SERVING"
  echo "recd: pid $RECD_PID, $RECD_ADDR, threads=$threads"
}

# Runs one load; $1 names the server in the table, the rest go to the loadgen.
# A failed run is recorded and the benchmark goes on.
FAILED=0
RUN=0
LIMIT_S=$(awk -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN { printf "%d", d + w + 40 }')
ROWS=$TMP/rows
load() {
  local label=$1 out=$TMP/run-$((++RUN)).json rc=0
  shift
  run_bg timeout "$LIMIT_S" "$LOADGEN" --json --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" \
    --concurrency "$CONCURRENCY" --channels "$CHANNELS" "$@" >"$out" || rc=$?
  echo "  $label: $(cat "$out")"
  [ "$rc" = 0 ] || { echo "  $label: recd-loadgen exited with $rc" >&2; FAILED=1; }
  "$PY" - "$label" "$out" "$rc" >>"$ROWS" <<'EOF'
import json, sys
label, path, rc = sys.argv[1:]
try:
    d = json.load(open(path))
except ValueError:
    print(f"{label:<14} {'?':<10} no result (exit {rc})")
    sys.exit(0)
cpu = d["server_cpu_us_per_call"]
cpu = "-" if cpu is None else f"{cpu:.1f}"
lat = d["latency_us"]
errs = f"{d['errors']}" + ("" if rc == "0" else f" (exit {rc})")
print(f"{label:<14} {d['method']:<10} {d['channels']:>5} {d['concurrency']:>9} "
      f"{d['calls_per_s']:>9.0f} {cpu:>18} "
      f"{lat['p50']:>8} {lat['p99']:>8} {errs:>10}")
EOF
}

echo "== machine"
echo "arch:  $(uname -m)"
echo "cores: $(nproc)"
echo "cpu:   $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
echo "load:  $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the run)"
echo "python grpcio: $("$PY" -c 'import grpc; print(grpc.__version__)')"

echo "== bundle"
t0=$(date +%s.%N)
run_bg timeout 900 "$RECCTL" synth --out "$TMP/b100k" --items 100000 --users 20000 --dim 64 \
  --categories 50 || die "recctl synth failed"
t1=$(date +%s.%N)
echo "synth (HNSW32, 100000 items, 20000 users, dim 64): $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s wall"

echo "== recd, 1 worker thread"
start_recd 1
load "recd t=1" --addr "$RECD_ADDR" --method health --server-pid "$RECD_PID"
# One call at a time: no batching of frames or wakeups across calls, so this
# is the per-call cost to hold against the bare C core's.
load "recd t=1" --addr "$RECD_ADDR" --method health --server-pid "$RECD_PID" \
  --channels 1 --concurrency 1
load "recd t=1" --addr "$RECD_ADDR" --method recommend --users 20000 --server-pid "$RECD_PID"
stop_pid "$RECD_PID"

echo "== recd, 2 worker threads"
start_recd 2
load "recd t=2" --addr "$RECD_ADDR" --method recommend --users 20000 --server-pid "$RECD_PID"
# A caller with a single connection and few calls in flight: shows whether
# the second worker helps (gRPC binds a connection's calls to one queue first).
load "recd t=2" --addr "$RECD_ADDR" --method recommend --users 20000 \
  --server-pid "$RECD_PID" --channels 1 --concurrency 8
stop_pid "$RECD_PID"

echo "== Python grpcio reference server, $PY_WORKERS workers"
"$PY" "$HERE/py_health_server.py" --port 0 --max-workers "$PY_WORKERS" >"$TMP/py.out" 2>&1 &
PY_PID=$!
PIDS+=("$PY_PID")
wait_for "$TMP/py.out" 's/^port=\([0-9][0-9]*\)$/\1/p' 30 "$PY_PID"
port=$FOUND
run_bg timeout 40 "$RECCTL" health --addr "127.0.0.1:$port" --wait 30 >/dev/null ||
  die "the Python server never answered"
echo "python: pid $PY_PID, 127.0.0.1:$port"
load "python grpcio" --addr "127.0.0.1:$port" --method health --server-pid "$PY_PID"
stop_pid "$PY_PID"

echo "== summary (${DURATION_S} s measured per row; t = recd worker threads)"
printf '%-14s %-10s %5s %9s %9s %18s %8s %8s %10s\n' server method conns "in flight" \
  calls/s "server CPU us/call" "p50 us" "p99 us" errors
cat "$ROWS"
exit "$FAILED"
