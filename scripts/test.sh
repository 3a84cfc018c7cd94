#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against real mosquitto, HAProxy and
# deploy-config checks. Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
swift build --build-tests
# Integration suites start real brokers; running them one at a time keeps a 2-core box calm.
swift test --skip-build --no-parallel "$@"
