#!/usr/bin/env bash
# deploy/fetch-faiss-capi.sh DEST - puts FAISS 1.7.3's c_api sources under
# DEST/faiss-1.7.3/c_api, taken from Debian's own faiss source package, the
# same version as the installed libfaiss.a. Debian ships the C API headers but
# not its compiled library, so the build compiles these few files itself.
# Nothing fetched here is ever committed: DEST lives in the build tree.
set -euo pipefail
dest=$1
[ -f "$dest/faiss-1.7.3/c_api/index_factory_c.cpp" ] && exit 0
mkdir -p "$dest"
apt=$dest/apt
mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial"
# A private deb-src list made from the machine's own Debian sources, so apt's
# system configuration is left as it was.
src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ]; then
  sed 's/^Types: deb$/Types: deb-src/' "$src" > "$apt/sources.list.d/debian-src.sources"
else
  grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$apt/sources.list.d/debian-src.list"
fi
opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources.list.d"
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
apt-get -q "${opts[@]}" update >/dev/null
(cd "$dest" && apt-get -q "${opts[@]}" source --download-only faiss=1.7.3-2 >/dev/null)
tar -xzf "$dest"/faiss_1.7.3.orig.tar.gz -C "$dest" faiss-1.7.3/c_api
rm -rf "$apt" "$dest"/faiss_1.7.3*
echo "fetch-faiss-capi: FAISS C API sources in $dest/faiss-1.7.3/c_api"
