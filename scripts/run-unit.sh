#!/usr/bin/env bash
# Runs each Criterion unit-test binary given; fails if any fails.
# Tests run from the repository root (some read ../shared/ conformance data).
set -u
cd "$(dirname "$0")/.." || exit 1
failed=0
passed=0
for t in "$@"; do
    if "$t" --jobs 2; then
        passed=$((passed + 1))
    else
        echo "FAILED: $t" >&2
        failed=$((failed + 1))
    fi
done
echo "unit test programs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
