#!/usr/bin/env bash
# Installs, from Debian's packages, what building and testing mosquitto-mesh needs and the
# machine lacks. Idempotent: installs nothing when everything is present.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in mosquitto mosquitto-clients libmosquitto-dev haproxy keepalived iproute2 openssl pkg-config; do
  have_pkg "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages' own services are not wanted: the mesh starts its brokers itself.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts mosquitto/haproxy on install where systemd runs; stop them so they do not hold ports.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now mosquitto haproxy keepalived 2>/dev/null || true
  fi
fi
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6 toolchain required)" >&2; exit 1; }
