#!/usr/bin/env bash
# deploy/install.sh — install mosquitto-mesh beside the stock Mosquitto on this VM.
#
#   sudo deploy/install.sh            # do it
#   deploy/install.sh --dry-run       # print what it would do, change nothing
#
# Idempotent: run it again after `git pull` to upgrade. What it never overwrites
# (operator-owned after the first install): /etc/mosquitto-mesh/mesh.env,
# /etc/mosquitto/acl, existing users in /etc/mosquitto/passwd. What it replaces
# (ours): the binary, the systemd unit, /etc/mosquitto/conf.d/mesh.conf (the old
# one is kept as mesh.conf.bak when it differed).
# It does not start, enable or restart anything: see deploy/README.md for that.
# Load balancers (haproxy/, keepalived/) are separate hosts: copied by hand.
#
# Environment:
#   MESH_USER_PASSWORD  password for the `mesh` user if it has to be created
#                       (default: a random one, written into mesh.env when
#                       mesh.env is created by this run)
#   SWIFT               swift binary (default: swift on PATH)
#   SKIP_BUILD=1        do not build; install the binary that is already there
#   MESH_BINARY         binary to install (default: <repo>/.build/release/mosquitto-mesh)
#   ROOT                prefix for every installed path (staging/packaging; default /)
set -euo pipefail

DRY=no
case "${1:-}" in
    --dry-run | -n) DRY=yes ;;
    "") ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (use --dry-run)" >&2; exit 64 ;;
esac

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$DEPLOY")
SWIFT=${SWIFT:-swift}
ROOT=${ROOT:-}
BIN=$ROOT/usr/local/bin/mosquitto-mesh
UNIT=$ROOT/etc/systemd/system/mosquitto-mesh.service
ETC_MESH=$ROOT/etc/mosquitto-mesh
ENV_FILE=$ETC_MESH/mesh.env
CONF_D=$ROOT/etc/mosquitto/conf.d
PASSWD=$ROOT/etc/mosquitto/passwd
ACL=$ROOT/etc/mosquitto/acl

say() { echo "install.sh: $*"; }
# run CMD...: execute, or only print it in --dry-run.
run() {
    if [[ $DRY == yes ]]; then
        printf 'would run:'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

if [[ $DRY == no && $(id -u) != 0 ]]; then
    echo "install.sh: must run as root (or use --dry-run)" >&2
    exit 1
fi

# 1. Packages: the broker, its clients (operators' tools, check.sh) and the
#    library the agent links. Only what is missing, so a re-run is quick/offline.
need=()
for p in mosquitto mosquitto-clients libmosquitto-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
else
    say "packages present: mosquitto mosquitto-clients libmosquitto-dev"
fi

# 2. Build the release binary (SwiftPM only rebuilds what changed).
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    run "$SWIFT" build -c release --package-path "$REPO"
fi
BUILT=${MESH_BINARY:-$REPO/.build/release/mosquitto-mesh}

# install_file SRC DEST MODE: copy when missing or different.
install_file() {
    local src=$1 dest=$2 mode=$3
    if [[ -e $dest ]] && cmp -s "$src" "$dest"; then
        say "up to date: $dest"
    else
        run install -D -m "$mode" -o root -g root "$src" "$dest"
    fi
}

# 3. The binary and the unit (ours: replaced on upgrade).
if [[ -e $BUILT || $DRY == yes ]]; then
    install_file "$BUILT" "$BIN" 0755
else
    echo "install.sh: $BUILT missing (build failed?)" >&2
    exit 1
fi
install_file "$DEPLOY/systemd/mosquitto-mesh.service" "$UNIT" 0644

# 4. The ACL (operator-owned once installed: they add their own users to it).
if [[ -e $ACL ]]; then
    if cmp -s "$DEPLOY/mosquitto/acl" "$ACL"; then
        say "up to date: $ACL"
    else
        say "keeping your $ACL; the shipped one is in $DEPLOY/mosquitto/acl"
    fi
else
    # Readable by the broker after it drops to the mosquitto user.
    run install -D -m 0640 -o root -g mosquitto "$DEPLOY/mosquitto/acl" "$ACL"
fi

# 5. The mesh user in the password file, created only if absent. The password
#    must be the same on every broker of the mesh (and in every mesh.env).
#    Password: $MESH_USER_PASSWORD, else the one already in mesh.env, else random.
PW=${MESH_USER_PASSWORD:-}
if [[ -e $PASSWD ]] && grep -q '^mesh:' "$PASSWD"; then
    say "user mesh already in $PASSWD"
else
    if [[ -z $PW && -r $ENV_FILE ]]; then
        PW=$(sed -n 's/^MESH_PASSWORD=//p' "$ENV_FILE" | tail -1)
        [[ $PW == change-me ]] && PW=
    fi
    [[ -n $PW ]] || PW=$(openssl rand -hex 16 2>/dev/null || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    create=(); [[ -e $PASSWD ]] || create=(-c)
    if [[ $DRY == yes ]]; then
        echo "would run: mosquitto_passwd -b ${create[*]} $PASSWD mesh <password>"
    else
        # -b puts the password on mosquitto_passwd's command line for an instant;
        # acceptable on a broker VM without untrusted local users.
        mosquitto_passwd -b "${create[@]}" "$PASSWD" mesh "$PW"
    fi
    run chown root:mosquitto "$PASSWD"
    run chmod 0640 "$PASSWD"
    GENERATED_PW=$PW
fi

# 6. The broker snippet (ours), last of the broker files: it names the ACL and
#    password file, which must exist before mosquitto next reads its config. Back up an operator-edited copy before replacing it.
if [[ -e $CONF_D/mesh.conf ]] && ! cmp -s "$DEPLOY/mosquitto/mesh.conf" "$CONF_D/mesh.conf"; then
    run cp -p "$CONF_D/mesh.conf" "$CONF_D/mesh.conf.bak"
    say "previous $CONF_D/mesh.conf kept as mesh.conf.bak"
fi
install_file "$DEPLOY/mosquitto/mesh.conf" "$CONF_D/mesh.conf" 0644
if grep -lsE '^[[:space:]]*(listener|port)[[:space:]]+1883([[:space:]]|$)' "$CONF_D"/*.conf /etc/mosquitto/mosquitto.conf |
    grep -qv "^$CONF_D/mesh.conf$"; then
    say "WARNING: another file also defines port 1883; mosquitto will not start until one is removed"
fi

# 7. The agent's settings: created from the example once, never overwritten.
if [[ -e $ENV_FILE ]]; then
    say "keeping $ENV_FILE"
else
    run install -d -m 0755 "$ETC_MESH"
    run install -m 0600 -o root -g root "$DEPLOY/systemd/mesh.env.example" "$ENV_FILE"
    run sed -i "s/^MESH_NODE_ID=.*/MESH_NODE_ID=$(hostname -s)/" "$ENV_FILE"
    if [[ -n ${GENERATED_PW:-} ]]; then
        # Never echo the password; it goes straight into the 0600 file.
        if [[ $DRY == yes ]]; then
            echo "would run: set MESH_PASSWORD in $ENV_FILE to the mesh user's password"
        else
            sed -i "s/^MESH_PASSWORD=.*/MESH_PASSWORD=$GENERATED_PW/" "$ENV_FILE"
        fi
    fi
    say "edit $ENV_FILE: MESH_PEERS (and the password if the other brokers use another)"
fi

# 8. Tell systemd about the unit, only where systemd is the running init.
if [[ -n $ROOT ]]; then
    say "ROOT=$ROOT: skipped daemon-reload"
elif [[ -d /run/systemd/system ]]; then
    run systemctl daemon-reload
else
    say "systemd not running here: skipped daemon-reload"
fi

say "done. Next: edit $ENV_FILE, add your users (deploy/mosquitto/README.md), then"
say "  systemctl restart mosquitto && systemctl enable --now mosquitto-mesh"
