#!/usr/bin/env bash
# Three mosquitto brokers, three mosquitto-mesh agents and HAProxy on loopback; shows a
# message crossing the mesh, then keeps running until Ctrl-C. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/ensure-deps.sh
swift build --product mosquitto-mesh
exec .build/debug/mosquitto-mesh local-cluster "$@"
