#!/usr/bin/env bash
# deploy/test.sh - sets everything up (deploy/setup.sh) and runs every test:
# the CUnit suites and end-to-end tests in the normal build, then all of them
# again in an AddressSanitizer + UndefinedBehaviorSanitizer build; then the
# multi-threaded suites and end-to-end tests in a ThreadSanitizer build
# (ctest label concurrency), valgrind memcheck over the unit suites of the
# normal build (ctest -C memcheck), and the libFuzzer targets in a clang
# build: each seed corpus replayed, then each target fuzzed for a short while
# (tests/fuzz/run.sh). Exits non-zero if any of it fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

deploy/setup.sh "$here/build"
deploy/setup.sh "$here/build-asan" -DREC_SANITIZE=ON
deploy/setup.sh "$here/build-tsan" -DREC_SANITIZE=thread
# The fuzz build needs only its targets (setup.sh above installed clang).
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$here" -B "$here/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
      -DCMAKE_CXX_COMPILER=clang++ -DREC_FUZZ=ON >/dev/null
cmake --build "$here/build-fuzz" -j "$jobs" --target fuzzers

# Leak reports name third-party frames too; ours must be clean, so leaks fail.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fuzz_seconds=${REC_FUZZ_SECONDS:-20}
status=0
for b in build build-asan; do
  echo "=== ctest in $b ==="
  (cd "$b" && ctest --output-on-failure -j "$jobs" | tee ctest.out) || status=1
done
echo "=== ctest -L concurrency in build-tsan (ThreadSanitizer; TSAN_OPTIONS set by ctest) ==="
(cd build-tsan && ctest -L concurrency --output-on-failure -j "$jobs" | tee ctest.out) || status=1
echo "=== ctest -C memcheck -L memcheck in build (valgrind) ==="
(cd build && ctest -C memcheck -L memcheck --output-on-failure -j "$jobs" | tee memcheck.out) || status=1
echo "=== ctest in build-fuzz (seed corpora replayed), then tests/fuzz/run.sh, ${fuzz_seconds} s a target ==="
(cd build-fuzz && ctest --output-on-failure -j "$jobs" | tee ctest.out) || status=1
tests/fuzz/run.sh "$here/build-fuzz" "$fuzz_seconds" | tee build-fuzz/fuzz.out || status=1

echo "=== summary ==="
summary() { # label file pattern
  printf '%-22s ' "$1:"
  grep -h -E "$3" "$2" 2>/dev/null | tail -1 || echo "no summary"
}
summary build build/ctest.out 'tests passed'
summary build-asan build-asan/ctest.out 'tests passed'
summary build-tsan build-tsan/ctest.out 'tests passed'
summary "build (memcheck)" build/memcheck.out 'tests passed'
summary "build-fuzz (corpora)" build-fuzz/ctest.out 'tests passed'
summary "build-fuzz (fuzzing)" build-fuzz/fuzz.out '^fuzz: [0-9]+ targets'
[ $status -eq 0 ] && echo "all tests passed (normal, ASan+UBSan, TSan, memcheck and fuzzing)" || echo "TESTS FAILED"
exit $status
