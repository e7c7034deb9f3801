#!/usr/bin/env bash
# Static checks, failing on any finding (part of scripts/test.sh):
#   - shellcheck over every shell script git tracks (`source` followed from each script's
#     own folder; the scripts carry their directives);
#   - scan-build (clang's static analyzer) over the whole C tree, tests included, in a build
#     directory of its own (build-scan).
# scan-build runs without its unix.Malloc checker: clang 14's analyzer does not run
# __attribute__((cleanup)) handlers, so every _cleanup_free_ local is a "leak" and every
# hand-over from one (TAKE_PTR) a dead store to it. Leaks, double frees and use after free
# are what the ASan and valgrind runs of the same tests catch. (GCC 12's -fanalyzer misreads
# the cleanup attribute too.) Every other finding is fixed in the code.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
shellcheck -x -P SCRIPTDIR "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"

scan=$(command -v scan-build-14 || command -v scan-build) ||
    { echo "static-checks: scan-build is missing (Debian: clang-tools-14)" >&2; exit 1; }
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
rm -rf build-scan
"$scan" -o "$report" cmake -S . -B build-scan -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
if ! "$scan" -o "$report" -disable-checker unix.Malloc --status-bugs \
    cmake --build build-scan -j "$jobs" >"$report/build.log" 2>&1; then
    grep -E 'warning:|error:' "$report/build.log" | sort -u >&2 || tail -30 "$report/build.log" >&2
    echo "static-checks: scan-build found the above" >&2
    exit 1
fi
echo "scan-build: no findings"
