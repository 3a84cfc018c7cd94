#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against real mosquitto, HAProxy and
# deploy-config checks, then short fuzzing runs. Installs missing Debian packages first.
set -euo pipefail
# The Swift toolchain may be installed outside the default PATH (e.g. /opt/swift).
command -v swift >/dev/null || export PATH="$PATH:/opt/swift/usr/bin"
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
swift build --build-tests
# Integration suites start real brokers; running them one at a time keeps a 2-core box calm.
swift test --skip-build --no-parallel "$@"
# The suites whose guarantees hold in direct delivery too, again with --delivery direct
# (the others pin what only prefixed forwards promise: the forward/ topic on the peer
# broker, user properties exactly as sent, topic aliases, no duplicate after a link cut).
if [ "$#" -eq 0 ]; then
    MESH_TEST_DELIVERY=direct swift test --skip-build --no-parallel \
        --filter 'BadInputTests|ClientAccountingTests|InterestIntegrityTests|RestartTests|SessionTests|SharedSubscriptionTests|SubscribeRaceTests|ThreeNodeTests|DirectDeliveryTests'
fi
# Short libFuzzer runs of the log parser/session table and the advert codec (~1 min; see scripts/fuzz.sh).
scripts/fuzz.sh
