#!/usr/bin/env bash
# tests/fuzz/run.sh - runs every libFuzzer target of a REC_FUZZ build for a
# bounded time each, starting from the committed seeds (tests/fuzz/corpus/)
# plus whatever earlier runs of this build found (BUILD_DIR/fuzz-out/).
# Exits non-zero if any target crashed, leaked, timed out on an input or
# ran out of memory; the input that did it is in BUILD_DIR/fuzz-out/artifacts.
#
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]   (default: all targets)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rpc bundle rank_config eventlog csv catalog experiments declog console)

out=$build/fuzz-out
mkdir -p "$out/artifacts"
failed=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: $bin missing (configure with -DREC_FUZZ=ON)" >&2; exit 2; }
  mkdir -p "$out/corpus-$t"
  # -timeout: one input taking longer is a finding (a request that stalls a
  # worker); -rss_limit_mb also caps any single allocation (malloc_limit_mb).
  "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
         -artifact_prefix="$out/artifacts/$t-" "$out/corpus-$t" "$here/corpus/$t" \
         >"$out/$t.log" 2>&1
  rc=$?
  runs=$(grep -o 'Done [0-9]* runs' "$out/$t.log" | tail -1 | cut -d' ' -f2)
  found=$(ls "$out/artifacts" | grep -c "^$t-" || true)
  if [ $rc -ne 0 ] || [ "$found" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc; ${runs:-?} runs; artifacts in $out/artifacts; log $out/$t.log)"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$out/$t.log" | head -5
    failed=$((failed + 1))
  else
    echo "fuzz: $t ok (${runs:-?} runs in ${secs} s, corpus $(ls "$out/corpus-$t" | wc -l) inputs)"
  fi
done
echo "fuzz: ${#targets[@]} targets, $failed failed"
[ $failed -eq 0 ]
