#!/usr/bin/env bash
# bench/run.sh - recd's benchmark in one command. For each bundle (synthetic
# catalogs of 100k and 1M items: clustered embeddings, Zipf-skewed
# popularity; and the real MovieLens and Superstore data built by recctl
# build) it starts recd and the Python server (bench/pyserver/recd_py.py) on
# loopback and, in this order:
#   1. checks both return the same slates (compare_slates.py) -- a bundle
#      whose slates differ is not timed at all, and marked FAILED;
#   2. saturation, closed loop: recd and Python interleaved, REPS times each
#      (calls/s, server CPU per call over every process of the server);
#   3. latency one call at a time, then open loop (Poisson arrivals) at
#      fractions of each server's own median saturation rate:
#      p50/p99/p99.9/max; the KEY_LOADS repeated REPS times;
#   4. recd-ann-bench: recall@100 against exact search and CPU per search at
#      several breadths (efSearch, or nprobe for an inverted file), and at
#      the bundle's own breadth; recall at Recommend's candidate depth (200);
#   5. recd-pipeline-bench: the in-process cost of a Recommend (no RPC), its
#      stages, and the serving tax against recd's server CPU per call under
#      a closed-loop load of the very same requests.
# Then, on the synthetic bundle of SHARD_ITEMS items, bench/shards.py: the
# bundle split for 1, 2 and 4 retrieval shards (recctl shard), each shard's
# peak resident memory and the recall@100 of the shards' merged answer.
# Then bench/report.py prints the summary and writes bench/results/
# (REPORT.md, results.json, SVG charts). Builds nothing: run it on a build tree.
#
#   bench/run.sh [BUILD_DIR]     (default: build)
#
# Knobs (environment), defaults in brackets:
#   SIZES ["100000 1000000"]  synthetic catalog sizes ("" for none)
#   BUNDLES ["movielens superstore"]  real datasets ("" for none)
#   DURATION_S [5] WARMUP_S [1] seconds measured / warmed up per load run
#   REPS [3]  repetitions of each saturation run and of each KEY_LOADS run
#   CONCURRENCY [32]  closed loop: calls in flight
#   CHANNELS [16]  connections, both loops (with 4, SO_REUSEPORT may hand the
#                  Python server's two processes 3 and 1, or 4 and 0, of them)
#   LOADS ["0.1 0.25 0.5 0.65 0.8 0.9 1.0"]  open-loop sweep, share of saturation
#   KEY_LOADS ["0.5 0.8"]  the sweep points repeated and put in the tables
#   OPEN_CONCURRENCY [256]  open loop: most calls in flight (the rest wait)
#   FILTER_SHARE [0.25]  requests with one category filter (loadgen and check)
#   COMPARE_N [200]  users compared before timing; PY_OPEN [1] open loop on Python too
#   RECD_THREADS [2]  PY_PROCESSES [2] PY_WORKERS [1]  the two servers' shapes
#   ANN_QUERIES [300]  ANN_DEPTH_QUERIES [100]  PIPELINE_CALLS [3000]
#   SHARDS ["1 2 4"]  shard counts for bench/shards.py ("" for none)
#   SHARD_ITEMS [1000000]  the synthetic bundle it splits
#   CACHE [/tmp/recd-bench-cache]  bundles kept between runs (FRESH=1 remakes them)
#   DATA [<repo>/.cache/data]  real datasets (tools/data/fetch.sh)
#   OUT [bench/results]  where the report goes
# Exit status: 0 if every bundle passed its slate check and every step ran,
# 1 otherwise (the report says which), 2 on bad setup.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "run.sh: no build tree ${1:-build}" >&2; exit 2; }
SIZES=${SIZES-100000 1000000}
BUNDLES=${BUNDLES-movielens superstore}
DURATION_S=${DURATION_S:-5}
WARMUP_S=${WARMUP_S:-1}
REPS=${REPS:-3}
CONCURRENCY=${CONCURRENCY:-32}
CHANNELS=${CHANNELS:-16}
LOADS=${LOADS:-0.1 0.25 0.5 0.65 0.8 0.9 1.0}
KEY_LOADS=${KEY_LOADS:-0.5 0.8}
OPEN_CONCURRENCY=${OPEN_CONCURRENCY:-256}
FILTER_SHARE=${FILTER_SHARE:-0.25}
COMPARE_N=${COMPARE_N:-200}
PY_OPEN=${PY_OPEN:-1}
RECD_THREADS=${RECD_THREADS:-2}
PY_PROCESSES=${PY_PROCESSES:-2}
PY_WORKERS=${PY_WORKERS:-1}
ANN_QUERIES=${ANN_QUERIES:-300}
ANN_DEPTH_QUERIES=${ANN_DEPTH_QUERIES:-100}
PIPELINE_CALLS=${PIPELINE_CALLS:-3000}
SHARDS=${SHARDS-1 2 4}
SHARD_ITEMS=${SHARD_ITEMS:-1000000}
CACHE=${CACHE:-/tmp/recd-bench-cache}
DATA=${DATA:-$REPO/.cache/data}
OUT=${OUT:-$HERE/results}
FRESH=${FRESH:-0}
PY=/usr/bin/python3
RECD=$BUILD/server/recd
RECCTL=$BUILD/tools/recctl
LOADGEN=$BUILD/bench/recd-loadgen
ANNB=$BUILD/bench/recd-ann-bench
PIPEB=$BUILD/bench/recd-pipeline-bench
REPORT=$HERE/report.py

die() { echo "run.sh: $*" >&2; exit 2; }
say() { echo "run.sh: $(date +%H:%M:%S) $*"; }

"$PY" -c 'import grpc, grpc_tools, faiss, numpy' 2>/dev/null ||
  die "$PY cannot import grpc, grpc_tools, faiss and numpy (python3-grpcio python3-grpc-tools python3-faiss)"
mkdir -p "$CACHE" "$OUT"
CACHE=$(cd "$CACHE" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/recd-bench.XXXXXX")
RECORDS=$TMP/records.jsonl
: >"$RECORDS"
PIDS=()
CHILD=

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
  for pid in ${CHILD:+"$CHILD"} "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command in the background and waits for it: bash defers a trap while
# a foreground command runs, but 'wait' returns to it at once.
run_bg() {
  local rc=0
  "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}

# Waits up to $3 seconds for a line matching sed expression $2 in file $1 and
# sets FOUND to what it captures; returns 1 if process $4 exits first or time
# runs out. (Not a $(...): a signal would wait for the subshell to end.)
wait_for() {
  local file=$1 expr=$2 secs=$3 pid=$4
  for _ in $(seq $((secs * 10))); do
    FOUND=$(sed -n "$expr" "$file" 2>/dev/null | head -n1)
    [ -n "$FOUND" ] && return 0
    alive "$pid" || { echo "run.sh: process $pid exited early:" >&2; tail -n 20 "$file" >&2; return 1; }
    sleep 0.1
  done
  echo "run.sh: gave up after ${secs} s waiting for $expr in $file" >&2
  return 1
}

# The build tree is shared with someone who may be rebuilding it: a missing
# executable is waited for (up to 3 minutes) before giving up.
need_exe() {
  local exe
  for exe in "$@"; do
    for _ in $(seq 36); do [ -x "$exe" ] && break; echo "run.sh: waiting for $exe (a rebuild?)" >&2; sleep 5; done
    [ -x "$exe" ] || die "$exe not found; build first (cmake --build $BUILD)"
  done
}
need_exe "$RECD" "$RECCTL" "$LOADGEN" "$ANNB" "$PIPEB"

jstr() { # a JSON string
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\n'/\\n}
  printf '"%s"' "$s"
}
record() { printf '%s\n' "$1" >>"$RECORDS"; }
# A command line as one JSON string, for the report's list of commands.
jcmd() {
  local a out=
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+-]+$ ]]; then out+="$a "; else out+="'$a' "; fi
  done
  jstr "${out% }"
}

# utime + stime of the processes given, in clock ticks (threads included).
cpu_ticks() {
  local t=0 p s f
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -r -a f <<<"${s##*) }"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
# Busy clock ticks of the whole machine (all cores), and the ticks the
# hypervisor stole from it, from /proc/stat.
machine_busy() {
  local f
  read -r -a f </proc/stat
  echo $((f[1] + f[2] + f[3] + f[6] + f[7])) $((f[8]))
}

# ---- bundles ----

# Makes (or reuses) the bundle NAME in $CACHE; sets BDIR. 0, or 1 on failure.
make_bundle() {
  local name=$1 tmp
  BDIR=$CACHE/$name
  if [ "$FRESH" = 1 ] && [ -d "$BDIR" ]; then rm -rf "$BDIR" "$CACHE/$name".*; fi
  if [ -f "$BDIR/manifest.json" ] && [ "$(sed -n 2p "$BDIR/users.tsv" | cut -f1)" != U00000 ]; then
    rm -rf "$BDIR" # made before user ids were relabelled (below)
  fi
  if [ -f "$BDIR/manifest.json" ]; then
    say "$name: cached in $BDIR"
    return 0
  fi
  tmp=$CACHE/$name.partial
  rm -rf "$tmp"
  local t0=$SECONDS rc=0
  case $name in
    synth-*)
      run_bg "$RECCTL" synth --out "$tmp" --items "${name#synth-}" --users 20000 --dim 64 --categories 50 || rc=$?;;
    movielens|superstore)
      # User ids relabelled U00000.. (in order of first appearance), the
      # only ids recd-pipeline-bench asks for: so that it serves these
      # users, not unknown ones. Nothing in a bundle depends on an id's text.
      run_bg "$REPO/tools/data/fetch.sh" "$DATA" "$name" || rc=$?
      [ "$rc" = 0 ] && { "$PY" "$REPORT" relabel-users "$DATA/$name/interactions.csv" >"$tmp.csv" || rc=$?; }
      [ "$rc" = 0 ] && { run_bg "$RECCTL" build --interactions "$tmp.csv" \
        --catalog "$DATA/$name/catalog.csv" --out "$tmp" --quiet --no-eval || rc=$?; }
      rm -f "$tmp.csv";;
    *) echo "run.sh: unknown bundle $name" >&2; return 1;;
  esac
  if [ "$rc" != 0 ] || [ ! -f "$tmp/manifest.json" ]; then
    echo "run.sh: could not make bundle $name (exit $rc)" >&2
    rm -rf "$tmp"
    return 1
  fi
  mv "$tmp" "$BDIR"
  say "$name: made in $((SECONDS - t0)) s"
}

# Side files of a bundle: its users (USERS, for the slate check), the same
# with one unknown user for every nine known ones (LOAD_USERS, what the load
# generator draws from: a tenth of calls take the popularity fallback, as
# recd-loadgen's own synthetic users do) and its categories (CATS).
bundle_inputs() {
  local b=$1 name=$2
  USERS=$CACHE/$name.users LOAD_USERS=$CACHE/$name.load-users
  if [ ! -s "$USERS" ] || [ "$USERS" -ot "$b/manifest.json" ]; then
    tail -n +2 "$b/users.tsv" | cut -f1 | grep -v '^$' >"$USERS.tmp" && mv "$USERS.tmp" "$USERS"
    awk '{ print } NR % 9 == 0 { print "cold-" NR / 9 }' "$USERS" >"$LOAD_USERS"
  fi
  if [ ! -s "$CACHE/$name.categories" ] || [ "$CACHE/$name.categories" -ot "$b/manifest.json" ]; then
    tail -n +2 "$b/items.tsv" | cut -f2 | grep -v -e '^$' -e ',' | sort -u | paste -sd, - \
      >"$CACHE/$name.categories"
  fi
  CATS=$(cat "$CACHE/$name.categories")
}

# ---- servers ----

# Starts recd on bundle $1; sets RECD_PID and RECD_ADDR. 0, or 1.
start_recd() {
  local log=$TMP/recd.log
  "$RECD" --bundle="$1" --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --admin_grpc_listen=127.0.0.1:0 \
    --threads="$RECD_THREADS" --call_log=off --drain_ms=1000 >"$log" 2>&1 &
  RECD_PID=$!
  PIDS+=("$RECD_PID")
  wait_for "$log" 's/.*msg="serving" port=\([0-9][0-9]*\).*/\1/p' 300 "$RECD_PID" || return 1
  RECD_ADDR=127.0.0.1:$FOUND
  run_bg timeout 40 "$RECCTL" health --addr "$RECD_ADDR" --wait 30 >/dev/null || return 1
  say "recd: pid $RECD_PID on $RECD_ADDR, --threads=$RECD_THREADS"
}

# Starts the Python server on bundle $1; sets PY_PID (the launcher), PY_ALL
# (every process: the launcher and its forked servers) and PY_ADDR.
start_py() {
  local log=$TMP/py.log
  "$PY" "$HERE/pyserver/recd_py.py" --bundle "$1" --listen 127.0.0.1:0 --workers "$PY_WORKERS" \
    --processes "$PY_PROCESSES" >"$log" 2>&1 &
  PY_PID=$!
  PIDS+=("$PY_PID")
  wait_for "$log" 's/^recd_py: serving port=\([0-9][0-9]*\) pids=\([0-9,]*\) .*/\1 \2/p' 300 "$PY_PID" || return 1
  PY_ADDR=127.0.0.1:${FOUND% *}
  local kids=${FOUND#* }
  PY_ALL="$PY_PID ${kids//,/ }"
  run_bg timeout 40 "$RECCTL" health --addr "$PY_ADDR" --wait 30 >/dev/null || return 1
  say "recd_py: pids $PY_ALL on $PY_ADDR, --processes $PY_PROCESSES --workers $PY_WORKERS"
}

# ---- one load run ----

LIMIT_S=$(awk -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN { printf "%d", d + w + 60 }')
RUN=0
FAILED=0

# load BUNDLE KIND SERVER REP FRACTION [loadgen options]: one recd-loadgen run
# (callers pass the request mix: "${MIX[@]}" is the benchmark's)
# against the server named (recd or py), recorded with the server's CPU over
# the whole run (every process; warm-up and drain calls included, so it is
# divided by every call made) and the machine's busy time, to see how much
# CPU others took meanwhile. Sets LOAD_JSON (the loadgen's JSON, or empty).
load() {
  local bundle=$1 kind=$2 server=$3 rep=$4 frac=$5 out=$TMP/load-$((++RUN)).json rc=0 addr pids c0 c1 m0 m1 s0 s1
  shift 5
  if [ "$server" = recd ]; then addr=$RECD_ADDR pids=$RECD_PID; else addr=$PY_ADDR pids=$PY_ALL; fi
  # shellcheck disable=SC2086  # pids: a list
  local cmd=("$LOADGEN" --addr "$addr" --method recommend --json --duration-s "$DURATION_S" --warmup-s "$WARMUP_S"
             --channels "$CHANNELS" --server-pid "${pids%% *}" "$@")
  # shellcheck disable=SC2086
  c0=$(cpu_ticks $pids)
  read -r m0 s0 < <(machine_busy)
  run_bg timeout "$LIMIT_S" "${cmd[@]}" >"$out" 2>"$out.err" || rc=$?
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $pids)
  read -r m1 s1 < <(machine_busy)
  LOAD_JSON=$(head -c 100000 "$out")
  [[ $LOAD_JSON == "{"* ]] || LOAD_JSON=
  if [ -z "$LOAD_JSON" ] || [ "$rc" -ge 2 ]; then
    echo "run.sh: $bundle $kind $server: recd-loadgen exited with $rc: $(head -c 300 "$out.err")" >&2
    FAILED=1
  fi
  record "{\"type\":\"load\",\"bundle\":\"$bundle\",\"kind\":\"$kind\",\"server\":\"$server\",\"rep\":$rep,\
\"fraction\":$frac,\"rc\":$rc,\"cpu_ticks\":$((c1 - c0)),\"machine_busy_ticks\":$((m1 - m0)),\"steal_ticks\":$((s1 - s0)),\
\"clk_tck\":$(getconf CLK_TCK),\"pids\":\"$pids\",\"cmd\":$(jcmd "${cmd[@]}"),\"loadgen\":${LOAD_JSON:-null}}"
}

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
calls_per_s() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["calls_per_s"])' "$1"; }

# ---- the steps of one bundle ----

# Step 1: the same slates from both, before anything is timed.
check_slates() {
  local name=$1 rc=0 out=$TMP/compare.out
  local cmd=("$PY" "$HERE/pyserver/compare_slates.py" --a "$RECD_ADDR" --b "$PY_ADDR" --users "$USERS"
             --n "$COMPARE_N" --categories "$CATS" --filter-share "$FILTER_SHARE" --seed 1)
  run_bg "${cmd[@]}" >"$out" 2>&1 || rc=$?
  local summary
  summary=$(grep -E 'identical slates|differ' "$out" | head -n 5 || true)
  record "{\"type\":\"compare\",\"bundle\":\"$name\",\"rc\":$rc,\"cmd\":$(jcmd "${cmd[@]}"),\
\"output\":$(jstr "$(tail -n 40 "$out")")}"
  if [ "$rc" != 0 ]; then
    echo "run.sh: $name: slates differ (compare_slates.py exit $rc); not timing this bundle:" >&2
    tail -n 30 "$out" >&2
    return 1
  fi
  say "$name: slates identical: ${summary//$'\n'/; }"
}

# Step 2: saturation, interleaved. Sets SAT_RECD and SAT_PY (median calls/s).
saturation() {
  local name=$1 rep r=() p=()
  for rep in $(seq "$REPS"); do
    load "$name" saturation recd "$rep" 1 --concurrency "$CONCURRENCY" "${MIX[@]}"
    [ -n "$LOAD_JSON" ] && r+=("$(calls_per_s "$LOAD_JSON")")
    load "$name" saturation py "$rep" 1 --concurrency "$CONCURRENCY" "${MIX[@]}"
    [ -n "$LOAD_JSON" ] && p+=("$(calls_per_s "$LOAD_JSON")")
  done
  SAT_RECD=$(median "${r[@]}") SAT_PY=$(median "${p[@]}")
  say "$name: saturation (median of $REPS): recd ${SAT_RECD:-?} calls/s, python ${SAT_PY:-?} calls/s"
}

# Step 3: open loop at shares of each server's own saturation; the sweep once,
# KEY_LOADS REPS times, recd and Python interleaved.
open_loop() {
  local name=$1 rep f s rate max
  for rep in $(seq "$REPS"); do
    for f in $LOADS; do
      [ "$rep" = 1 ] || [[ " $KEY_LOADS " == *" $f "* ]] || continue
      for s in recd py; do
        [ "$s" = py ] && [ "$PY_OPEN" != 1 ] && continue
        rate=$([ "$s" = recd ] && echo "$SAT_RECD" || echo "$SAT_PY")
        [ -n "$rate" ] || continue
        rate=$(awk -v r="$rate" -v f="$f" 'BEGIN { x = r * f; printf "%.1f", x < 1 ? 1 : x }')
        max=$(awk -v r="$rate" -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN { printf "%d", r * (d + w) * 1.5 + 10 }')
        load "$name" open "$s" "$rep" "$f" --rate "$rate" --arrivals poisson --max-calls "$max" \
          --concurrency "$OPEN_CONCURRENCY" "${MIX[@]}"
      done
    done
  done
}

# Step 4: recall against cost. An inverted file's breadth is nprobe, which
# recd-ann-bench reaches through its efSearch list (below 128, nprobe is
# scaled by ef/128): the index is opened through a copy of the manifest with
# nprobe set to the widest breadth wanted, and each breadth p asked for as
# ef = ceil(128 p / widest). HNSW takes efSearch directly; Flat is exact.
ann_bench() {
  local name=$1 b=$2 plan kind default widest efs rc=0 out=$TMP/ann.out f
  local dir=$b
  plan=$("$PY" "$REPORT" ann-plan "$b/manifest.json") || { FAILED=1; return 0; }
  read -r kind default widest efs <<<"$plan"
  if [ "$kind" = ivf ]; then
    dir=$CACHE/$name.nprobe-$widest
    rm -rf "$dir" && mkdir -p "$dir"
    for f in "$b"/*; do [ "${f##*/}" = manifest.json ] || ln -s "$f" "$dir/"; done
    "$PY" "$REPORT" set-nprobe "$b/manifest.json" "$widest" >"$dir/manifest.json"
  fi
  local cmd=("$ANNB" --bundle "$dir" --queries "$ANN_QUERIES" --k 100 --ef "$efs")
  say "$name: recd-ann-bench, $kind index (default breadth $default), recall@100 at ef list $efs"
  run_bg "${cmd[@]}" >"$out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { echo "run.sh: $name: recd-ann-bench exited $rc: $(tail -n 3 "$out")" >&2; FAILED=1; }
  record "{\"type\":\"ann\",\"bundle\":\"$name\",\"k\":100,\"index\":\"$kind\",\"default\":$default,\
\"widest\":$widest,\"rc\":$rc,\"cmd\":$(jcmd "${cmd[@]}"),\"output\":$(jstr "$(cat "$out")")}"
  # The depth Recommend searches at (candidates.ann: 200 for k <= 49), at the bundle's own breadth.
  local def_ef
  def_ef=$("$PY" "$REPORT" ann-ef "$kind" "$default" "$widest")
  cmd=("$ANNB" --bundle "$dir" --queries "$ANN_DEPTH_QUERIES" --k 200 --ef "$def_ef")
  rc=0
  run_bg "${cmd[@]}" >"$out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { echo "run.sh: $name: recd-ann-bench --k 200 exited $rc" >&2; FAILED=1; }
  record "{\"type\":\"ann\",\"bundle\":\"$name\",\"k\":200,\"index\":\"$kind\",\"default\":$default,\
\"widest\":$widest,\"rc\":$rc,\"cmd\":$(jcmd "${cmd[@]}"),\"output\":$(jstr "$(cat "$out")")}"
  [ "$kind" = ivf ] && rm -rf "$dir"
  return 0
}

# Step 5: the in-process cost, and the serving tax against recd's server CPU
# per call for the very same requests: recd-pipeline-bench asks for users
# U00000.. in turn, every tenth an unknown one, with no filter, as
# recd-loadgen --users N does (every bundle here has such user ids, see
# make_bundle); that closed-loop load ("matched") is run REPS times.
pipeline() {
  local name=$1 b=$2 rc=0 out=$TMP/pipe.out n rep j
  n=$(wc -l <"$USERS")
  local cmd=("$PIPEB" --bundle "$b" --calls "$PIPELINE_CALLS" --users "$n" --json)
  run_bg "${cmd[@]}" >"$out" 2>"$out.err" || rc=$?
  j=$(grep '^{' "$out" | head -n1 || true)
  [ -n "$j" ] || { echo "run.sh: $name: recd-pipeline-bench exited $rc: $(tail -n 3 "$out.err")" >&2; FAILED=1; }
  record "{\"type\":\"pipeline\",\"bundle\":\"$name\",\"rc\":$rc,\"cmd\":$(jcmd "${cmd[@]}"),\"result\":${j:-null}}"
  for rep in $(seq "$REPS"); do
    load "$name" matched recd "$rep" 1 --concurrency "$CONCURRENCY" --users "$n"
  done
  # The floor under any call: Health.Check, the same load shape, no work
  # behind it (the later --method wins).
  load "$name" floor recd 1 1 --concurrency "$CONCURRENCY" --method health
}

run_bundle() {
  local name=$1 t0=$SECONDS
  say "== $name"
  if ! make_bundle "$name"; then
    record "{\"type\":\"bundle\",\"bundle\":\"$name\",\"status\":\"FAILED\",\"why\":\"could not make the bundle\"}"
    FAILED=1
    return
  fi
  local b=$BDIR
  RECD_PID='' PY_PID=''
  bundle_inputs "$b" "$name"
  MIX=(--users-file "$LOAD_USERS" --categories "$CATS" --filter-share "$FILTER_SHARE")
  if ! start_recd "$b" || ! start_py "$b"; then
    record "{\"type\":\"bundle\",\"bundle\":\"$name\",\"status\":\"FAILED\",\"why\":\"a server did not start\"}"
    FAILED=1
    [ -n "${RECD_PID:-}" ] && stop_pid "$RECD_PID"
    [ -n "${PY_PID:-}" ] && stop_pid "$PY_PID"
    return
  fi
  if ! check_slates "$name"; then
    record "{\"type\":\"bundle\",\"bundle\":\"$name\",\"status\":\"FAILED\",\"why\":\"slates differ\"}"
    FAILED=1
    stop_pid "$RECD_PID"
    stop_pid "$PY_PID"
    return
  fi
  saturation "$name"
  # One call at a time on one connection: the latency floor under the open-loop percentiles.
  load "$name" single recd 1 0 --concurrency 1 --channels 1 "${MIX[@]}"
  load "$name" single py 1 0 --concurrency 1 --channels 1 "${MIX[@]}"
  open_loop "$name"
  pipeline "$name" "$b"
  stop_pid "$PY_PID"
  stop_pid "$RECD_PID"
  RECD_PID='' PY_PID=''
  ann_bench "$name" "$b"
  record "{\"type\":\"bundle\",\"bundle\":\"$name\",\"status\":\"ok\",\"dir\":$(jstr "$b"),\
\"manifest\":$("$PY" "$REPORT" manifest-summary "$b/manifest.json"),\"users\":$(wc -l <"$USERS"),\
\"load_users\":$(wc -l <"$LOAD_USERS"),\"categories\":$(tr ',' '\n' <<<"$CATS" | wc -l),\"seconds\":$((SECONDS - t0)),\
\"build\":$(jstr "$(build_stamp)")}"
  say "$name: done in $((SECONDS - t0)) s"
}

# Memory per retrieval shard and recall of the merged answer (bench/shards.py).
shards_bench() {
  local name=synth-$SHARD_ITEMS out=$TMP/shards.json
  [ -n "$SHARDS" ] || return 0
  say "== shards $SHARDS of $name"
  if ! make_bundle "$name"; then
    record "{\"type\":\"shards\",\"bundle\":\"$name\",\"status\":\"FAILED\",\"why\":\"could not make the bundle\"}"
    FAILED=1
    return
  fi
  local cmd=("$PY" "$HERE/shards.py" --build "$BUILD" --bundle "$BDIR" --shards "$(tr ' ' ',' <<<"$SHARDS")"
             --users 200 --k 100 --json "$out")
  if "${cmd[@]}"; then
    record "{\"type\":\"shards\",\"bundle\":\"$name\",\"status\":\"ok\",\"cmd\":$(jcmd "${cmd[@]}"),\"result\":$(cat "$out")}"
  else
    record "{\"type\":\"shards\",\"bundle\":\"$name\",\"status\":\"FAILED\",\"cmd\":$(jcmd "${cmd[@]}")}"
    FAILED=1
  fi
}

# ---- main ----

# What was run: the commit and the executables' times, so that a build tree
# rebuilt in the middle of a run (it is shared) shows in the report.
build_stamp() {
  local exe
  printf '%s' "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
  for exe in "$RECD" "$LOADGEN" "$ANNB" "$PIPEB" "$HERE/pyserver/recd_py.py"; do
    printf ' %s@%s' "${exe##*/}" "$(date -u -r "$exe" +%H:%M:%S 2>/dev/null || echo missing)"
  done
}
START=$SECONDS
BUILD_START=$(build_stamp)
record "{\"type\":\"machine\",\"cpu\":$(jstr "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"),\
\"cores\":$(nproc),\"mem_kib\":$(awk '/^MemTotal/ { print $2 }' /proc/meminfo),\"kernel\":$(jstr "$(uname -sr)"),\
\"os\":$(jstr "$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"')"),\"date\":$(jstr "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),\
\"commit\":$(jstr "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"),\
\"dirty_files\":$(git -C "$REPO" status --porcelain 2>/dev/null | grep -vc '^??' || true),\
\"loadavg_start\":$(jstr "$(cut -d' ' -f1-3 /proc/loadavg)"),\"python\":$(jstr "$("$PY" -c 'import sys, grpc, faiss, numpy
print("Python %s, grpcio %s, faiss %s, numpy %s" % (sys.version.split()[0], grpc.__version__, faiss.__version__, numpy.__version__))')"),\
\"build\":$(jstr "$BUILD"),\"recd_mtime\":$(jstr "$(date -u -r "$RECD" +%Y-%m-%dT%H:%M:%SZ)"),\
\"invocation\":$(jcmd "$0" "$@"),\"knobs\":{\"SIZES\":$(jstr "$SIZES"),\"BUNDLES\":$(jstr "$BUNDLES"),\
\"DURATION_S\":$(jstr "$DURATION_S"),\"WARMUP_S\":$(jstr "$WARMUP_S"),\"REPS\":$(jstr "$REPS"),\
\"CONCURRENCY\":$(jstr "$CONCURRENCY"),\"CHANNELS\":$(jstr "$CHANNELS"),\"LOADS\":$(jstr "$LOADS"),\
\"KEY_LOADS\":$(jstr "$KEY_LOADS"),\"OPEN_CONCURRENCY\":$(jstr "$OPEN_CONCURRENCY"),\
\"FILTER_SHARE\":$(jstr "$FILTER_SHARE"),\"COMPARE_N\":$(jstr "$COMPARE_N"),\"RECD_THREADS\":$(jstr "$RECD_THREADS"),\
\"PY_PROCESSES\":$(jstr "$PY_PROCESSES"),\"PY_WORKERS\":$(jstr "$PY_WORKERS"),\"ANN_QUERIES\":$(jstr "$ANN_QUERIES"),\
\"ANN_DEPTH_QUERIES\":$(jstr "$ANN_DEPTH_QUERIES"),\"PIPELINE_CALLS\":$(jstr "$PIPELINE_CALLS"),\"SHARDS\":$(jstr "$SHARDS"),\
\"SHARD_ITEMS\":$(jstr "$SHARD_ITEMS"),\"CACHE\":$(jstr "$CACHE")}}"
say "build $BUILD, cache $CACHE, report to $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"

for n in $SIZES; do run_bundle "synth-$n"; done
for n in $BUNDLES; do run_bundle "$n"; done
shards_bench

record "{\"type\":\"end\",\"seconds\":$((SECONDS - START)),\"build_start\":$(jstr "$BUILD_START"),\
\"build_end\":$(jstr "$(build_stamp)"),\"loadavg_end\":$(jstr "$(cut -d' ' -f1-3 /proc/loadavg)"),\"failed\":$FAILED}"
"$PY" "$REPORT" render "$RECORDS" "$OUT" || FAILED=1
say "done in $((SECONDS - START)) s; report in $OUT/REPORT.md"
exit "$FAILED"
