#!/usr/bin/env bash
# deploy/demo.sh - the main job on a fresh machine: set everything up, make a
# sample bundle, start recd on a free loopback port, ask it for
# recommendations (a known user and a brand-new one), print them, stop it.
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

echo "== making a sample bundle (synthetic catalog: 20000 items, 2000 users, HNSW index)"
"$bin/tools/recctl" synth --out "$work/bundle" --items 20000 --users 2000 --dim 32 --categories 8

echo "== starting recd"
"$bin/server/recd" --bundle="$work/bundle" --listen=127.0.0.1:0 2>"$work/recd.log" &
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

echo; echo "== recommendations for a known user"
"$bin/tools/recctl" recommend --addr "$addr" --user U00042 -k 10 --explain
echo; echo "== a user the model has never seen (popularity fallback)"
"$bin/tools/recctl" recommend --addr "$addr" --user new-visitor-1 -k 5

echo; echo "== stopping recd"
kill -TERM "$pid"
wait "$pid"
pid=
tail -n 2 "$work/recd.log"
