#!/usr/bin/env bash
# The whole suite: unit tests, then integration tests against the real binary.
#   scripts/run-tests.sh BUILD_DIR UNIT_TEST_BINARIES...
# Exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.." || exit 1
build=$1
shift

status=0
echo "== unit tests"
scripts/run-unit.sh "$@" || status=1

echo "== integration tests"
NEXUS_BIN="$PWD/$build/nexus" NEXUS_BUILD="$PWD/$build" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
rc=$?
[ $rc -eq 0 ] || status=1

if [ $status -eq 0 ]; then
    echo "== all tests passed"
else
    echo "== SOME TESTS FAILED" >&2
fi
exit $status
