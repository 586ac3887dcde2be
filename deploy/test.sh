#!/usr/bin/env bash
# deploy/test.sh - sets everything up (deploy/setup.sh) and runs every test:
# the CUnit suites and end-to-end tests in the normal build, then all of them
# again in an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Exits non-zero if any test fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

deploy/setup.sh "$here/build"
deploy/setup.sh "$here/build-asan" -DREC_SANITIZE=ON

# Leak reports name third-party frames too; ours must be clean, so leaks fail.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
jobs=$(nproc 2>/dev/null || echo 2)
status=0
for b in build build-asan; do
  echo "=== ctest in $b ==="
  (cd "$b" && ctest --output-on-failure -j "$jobs" | tee ctest.out) || status=1
done
echo "=== summary ==="
for b in build build-asan; do
  printf '%-11s ' "$b:"
  grep -h -E 'tests passed' "$b/ctest.out" || echo "no summary"
done
[ $status -eq 0 ] && echo "all tests passed (normal and ASan+UBSan builds)" || echo "TESTS FAILED"
exit $status
