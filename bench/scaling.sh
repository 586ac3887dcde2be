#!/usr/bin/env bash
# bench/scaling.sh - does a Recommend cost more as the catalog grows? For each
# catalog size it makes (or reuses) a synthetic bundle, starts recd with two
# workers on loopback, drives it closed-loop with recd-loadgen (16 calls in
# flight) and prints calls/s, server CPU per call and p99. Given a second
# build tree, runs it on the same bundles, interleaved, for a before/after.
#
#   bench/scaling.sh BUILD_DIR [OTHER_BUILD_DIR]
#
# Knobs (environment): SIZES ("100000 300000"), DURATION_S (8), WARMUP_S (2),
# REPEATS (2), CACHE (where bundles are kept between runs: /tmp/recd-scaling;
# a 300k-item bundle takes minutes to make). Exit status 0, or 1 if a run
# failed.
set -euo pipefail

BUILD=${1:?usage: bench/scaling.sh BUILD_DIR [OTHER_BUILD_DIR]}
OTHER=${2:-}
SIZES=${SIZES:-100000 300000}
DURATION_S=${DURATION_S:-8}
WARMUP_S=${WARMUP_S:-2}
REPEATS=${REPEATS:-2}
CACHE=${CACHE:-/tmp/recd-scaling}
mkdir -p "$CACHE"
failed=0

# run LABEL RECD BUNDLE: one closed-loop run against a fresh recd.
run() {
  local label=$1 recd=$2 bundle=$3 log port pid out
  log=$(mktemp "$CACHE/recd.XXXXXX.log")
  "$recd" --bundle="$bundle" --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --admin_grpc_listen= \
          --call_log=off --threads=2 >"$log" 2>&1 &
  pid=$!
  port=
  for _ in $(seq 600); do
    port=$(sed -n 's/.*msg="serving" port=\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$port" ]; then
    echo "scaling.sh: recd did not start:" >&2; cat "$log" >&2; failed=1; kill "$pid" 2>/dev/null || true
    rm -f "$log"; return
  fi
  if out=$("$BUILD/bench/recd-loadgen" --addr "127.0.0.1:$port" --method recommend --concurrency 16 \
             --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --users 5000 --server-pid "$pid" --json); then
    echo "$out" | /usr/bin/python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%-28s %9.0f %14.0f %9d" % (sys.argv[1], d["calls_per_s"], d["server_cpu_us_per_call"], d["latency_us"]["p99"]))' "$label"
  else
    echo "scaling.sh: $label: recd-loadgen failed" >&2; failed=1
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$log"
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
printf '%-28s %9s %14s %9s\n' "build tree, items" "calls/s" "server us/call" "p99 us"
for n in $SIZES; do
  bundle=$CACHE/synth-$n
  if [ ! -f "$bundle/manifest.json" ]; then
    "$BUILD/tools/recctl" synth --out "$bundle" --items "$n" --users 5000 --dim 32 --categories 20 --seed 3 >/dev/null
  fi
  for _ in $(seq "$REPEATS"); do
    [ -n "$OTHER" ] && run "$OTHER, $n" "$OTHER/server/recd" "$bundle"
    run "$BUILD, $n" "$BUILD/server/recd" "$bundle"
  done
done
exit $failed
