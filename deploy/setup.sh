#!/usr/bin/env bash
# deploy/setup.sh - everything a fresh Debian 12 machine needs to build and test
# recd, and nothing else. Idempotent: packages already present are not
# reinstalled, FAISS's C API source is fetched once per build tree, and the
# build is incremental.
#
# clang with libclang-rt-14-dev (libFuzzer, clang's sanitizer runtimes) and
# libomp-dev (clang's OpenMP) build the fuzz targets; valgrind runs memcheck.
# libssl-dev checks TLS certificate files when recd reads them; openssl makes
# the certificates the security tests use. haproxy is the canary gateway
# (deploy/gateway, docs/operations.md) and its end-to-end test. chromium
# renders the admin port's web console in its end-to-end test.
#
# Usage: deploy/setup.sh [BUILD_DIR] [extra cmake args...]   (default BUILD_DIR: build)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shift || true

packages=(
  build-essential cmake pkg-config dpkg-dev ca-certificates
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
  # protoc: the descriptor set server reflection embeds (proto/CMakeLists.txt)
  protobuf-compiler
  libfaiss-dev libopenblas-dev libuv1-dev libcunit1-dev
  libcjson-dev libxxhash-dev libcsv-dev libhttp-parser-dev zlib1g-dev libssl-dev openssl
  python3 python3-grpcio python3-grpc-tools python3-pkg-resources python3-numpy python3-faiss
  curl python3-rdata prometheus
  clang libclang-rt-14-dev libomp-dev valgrind
  haproxy
  # e2e.deploy checks deploy/: systemd-analyze (verify, security) on the units, python3-yaml reads the manifests
  systemd python3-yaml
  # e2e.console loads the admin port's web console in headless Chromium
  chromium
  # e2e.security speaks raw HTTP/2 as hostile clients do (shut windows, reset streams, raw paths)
  python3-h2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages already installed"
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$jobs"
echo "setup: built $build"
