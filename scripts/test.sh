#!/usr/bin/env bash
# The README's test command, and what .ci/run calls. On a fresh machine it installs the
# Debian packages, builds the real components from their Go modules into $MOAT_CACHE
# (cached), checks formatting, scripts (shellcheck) and the C tree (scan-build), builds
# Moat normally and with ASan/UBSan, and runs every
# test ctest knows: unit tests, fuzz corpus replays, and the integration tests against the
# local control plane and node, which ctest starts and stops as fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
jobs=$(nproc)

step() { printf '\n== %s\n' "$*"; }

step "Debian packages"
bash scripts/install-deps.sh
command -v go >/dev/null || { echo "test: Go (1.25 or newer) is required to build the components" >&2; exit 1; }

step "Real components from their Go modules (cache: $MOAT_CACHE)"
bash e2e/tools/build.sh
bash e2e/images/build.sh

step "Format (clang-format)"
bad=$(git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror 2>&1 | grep -c 'error:' || true)
if [ "$bad" != 0 ]; then
    git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror
    exit 1
fi

step "Static checks: shellcheck over every script, scan-build over the C tree"
bash scripts/static-checks.sh

step "Release build (-O2 -Werror), unit tests under valgrind"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
for t in build/tests/test_*; do
    valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite -q "$t" \
        >/dev/null || { echo "valgrind: $t failed" >&2; exit 1; }
    echo "valgrind clean: $(basename "$t")"
done

step "libFuzzer targets (clang), 10 s each beyond their corpora"
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMOAT_FUZZ=ON \
    -DMOAT_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j "$jobs"
for f in build-fuzz/tests/fuzz_*; do
    name=$(basename "$f")
    scratch=$(mktemp -d)
    "$f" -max_total_time=10 -print_final_stats=0 "$scratch" "tests/fuzz/corpus/$name" \
        >/dev/null 2>"$scratch.log" || { tail -30 "$scratch.log" >&2; exit 1; }
    rm -rf "$scratch" "$scratch.log"
    echo "fuzzed: $name"
done

step "Every test under ASan + UBSan: unit, fuzz corpora, integration against the real components"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
ctest --test-dir build-asan --output-on-failure
