#!/usr/bin/env bash
# Three mosquitto brokers, three mosquitto-mesh agents and HAProxy on loopback; shows a
# message crossing the mesh, then keeps running until Ctrl-C. Installs what is missing.
set -euo pipefail
# The Swift toolchain may be installed outside the default PATH (e.g. /opt/swift).
command -v swift >/dev/null || export PATH="$PATH:/opt/swift/usr/bin"
cd "$(dirname "$0")/../.."
scripts/ensure-deps.sh
swift build --product mosquitto-mesh
exec .build/debug/mosquitto-mesh local-cluster "$@"
