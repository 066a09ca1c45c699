#!/usr/bin/env bash
# The whole suite: unit tests, then integration tests against the real binary.
#   scripts/run-tests.sh BUILD_DIR UNIT_TEST_BINARIES...
# Exits non-zero when anything failed.
#
# Throwaway PostgreSQL and MariaDB servers (scripts/services.sh) run for the whole suite in a
# temporary folder; their NEXUS_TEST_* variables reach both the unit and the integration
# tests. They are stopped and the folder removed however the run ends, Ctrl-C included.
set -u
cd "$(dirname "$0")/.." || exit 1
build=$1
shift
case "$build" in
/*) ;;
*) build=$PWD/$build ;;
esac

services=$(mktemp -d /tmp/nexus-services.XXXXXX) || exit 1
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    scripts/services.sh stop "$services" || echo "== could not stop the services in $services" >&2
    rm -rf "$services"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== services (PostgreSQL, MariaDB, Redis)"
if ! scripts/services.sh start "$services"; then
    echo "== SOME TESTS FAILED: the test databases did not start" >&2
    exit 1
fi
# shellcheck source=/dev/null
. "$services/env"
echo "   $NEXUS_TEST_PG_URL"
echo "   $NEXUS_TEST_MYSQL_URL"

status=0
echo "== unit tests"
scripts/run-unit.sh "$@" || status=1

echo "== integration tests"
NEXUS_BIN="$build/nexus" NEXUS_BUILD="$build" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
rc=$?
[ $rc -eq 0 ] || status=1

if [ $status -eq 0 ]; then
    echo "== all tests passed"
else
    echo "== SOME TESTS FAILED" >&2
fi
exit $status
