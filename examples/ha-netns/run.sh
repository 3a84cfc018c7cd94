#!/usr/bin/env bash
# The seed HA topology with real addresses, on one machine, built from network namespaces:
#
#   client host 10.99.0.50 ──► floating IP 10.99.0.100:1883 (keepalived VRRP)
#                                ├─ lb1 10.99.0.21: HAProxy + keepalived MASTER (priority 150)
#                                └─ lb2 10.99.0.22: HAProxy + keepalived BACKUP (priority 100)
#                                        │ deploy/haproxy/haproxy.cfg: stickiness, agent-check, peers
#                                ┌───────┴───────┐
#                   b1 10.99.0.11: mosquitto + agent   b2 10.99.0.12: mosquitto + agent
#
# Every host is a network namespace with one veth (eth0) plugged into a Linux bridge that
# lives in a sixth namespace (the "switch"), so nothing touches the root namespace and
# no packet leaves the namespaces this script creates. HAProxy and keepalived configs are
# the shipped ones from deploy/, adapted by sed (addresses, paths, see adapt_* below).
#
# Usage (root, iproute2, mosquitto, haproxy, keepalived; the agent binary is
# $MESH_BINARY, default .build/debug/mosquitto-mesh):
#   examples/ha-netns/run.sh [bench options]   build it, run `mosquitto-mesh bench failover --netns`
#                                              in the client host (kills b1, then the MASTER lb1), tear down
#   examples/ha-netns/run.sh --up              build it and keep it until Ctrl-C
# Environment: HA_NETNS_LOGS=DIR copies every log there before tear-down;
# Everything (processes by pid, namespaces with their veths and the bridge, the state
# directory) is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
MESH_BINARY=${MESH_BINARY:-$ROOT/.build/debug/mosquitto-mesh}
P=mmha$$                       # namespace prefix, unique per run
DIR=/run/mosquitto-mesh-ha-$$  # root-owned: keepalived's enable_script_security wants that
NET=10.99.0
VIP=$NET.100
declare -A ADDR=([b1]=$NET.11 [b2]=$NET.12 [lb1]=$NET.21 [lb2]=$NET.22 [cl]=$NET.50)
HOSTS=(b1 b2 lb1 lb2 cl)
PIDS=()

log() { echo "ha-netns: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for tool in ip mosquitto haproxy keepalived; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -x $MESH_BINARY ]] || die "agent binary $MESH_BINARY not found: swift build, or set MESH_BINARY"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # keepalived's VRRP child is not our child: take its pid from its pid file.
    for f in "$DIR"/*/vrrp.pid; do [[ -f $f ]] && PIDS+=("$(cat "$f")"); done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    local deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Safety net: anything still running inside our namespaces was started by this script.
    for ns in "${HOSTS[@]/#/$P-}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    wait 2>/dev/null || true
    if [[ -n ${HA_NETNS_LOGS:-} && -d $DIR ]]; then
        mkdir -p "$HA_NETNS_LOGS"
        for h in "${HOSTS[@]}"; do [[ -d $DIR/$h ]] && cp -r "$DIR/$h" "$HA_NETNS_LOGS/" 2>/dev/null || true; done
    fi
    # Deleting a namespace deletes its veth end, which deletes the peer; the bridge goes with the switch.
    for ns in "${HOSTS[@]/#/$P-}" "$P-sw"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (bounded) until a command succeeds: polling an event, not a fixed sleep.
wait_for() {
    local what=$1 timeout=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
        sleep 0.1
    done
}
in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }
tcp_open() { in_ns "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/$3"; }
health_up() { [[ $(in_ns cl timeout 2 bash -c "exec 3<>/dev/tcp/$1/18830; head -c 64 <&3") == up* ]]; }
vip_on() { ip -n "$P-$1" -o -4 addr show dev eth0 | grep -q " $VIP/"; }

mkdir -m 0755 "$DIR"

# --- the network: a switch namespace with a bridge, one veth per host -------------------
ip netns add "$P-sw"
ip -n "$P-sw" link set lo up
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
for h in "${HOSTS[@]}"; do
    ip netns add "$P-$h"
    mkdir -m 0755 "$DIR/$h"
    ip -n "$P-$h" link set lo up
    ip -n "$P-$h" link add eth0 type veth peer name "$h" netns "$P-sw"
    ip -n "$P-$h" addr add "${ADDR[$h]}/24" dev eth0
    ip -n "$P-$h" link set eth0 up
    ip -n "$P-sw" link set "$h" master br0 up
done
log "namespaces $P-{${HOSTS[*]// /,},sw}, bridge br0 in $P-sw, state in $DIR"

# --- brokers and agents -----------------------------------------------------------------
start_broker() {
    local h=$1 peer=$2 d=$DIR/$1
    cat >"$d/mosquitto.conf" <<EOF
# like deploy/mosquitto/mesh.conf, without passwords/ACL (clients here are anonymous)
user root
per_listener_settings false
allow_anonymous true
listener 1883
persistence true
persistence_location $d/
autosave_interval 60
log_dest topic
log_dest file $d/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
log_type unsubscribe
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 1000
set_tcp_nodelay true
EOF
    # `ip netns exec` execs the command, so $! is mosquitto's own pid (a shell function
    # in the background would be a subshell, and kill -9 would miss the broker).
    ip netns exec "$P-$h" mosquitto -c "$d/mosquitto.conf" >>"$d/mosquitto.stderr" 2>&1 &
    PIDS+=($!)
    echo $! >"$d/mosquitto.pid"
    wait_for "mosquitto on $h" 10 tcp_open "$h" 127.0.0.1 1883
    ip netns exec "$P-$h" "$MESH_BINARY" run --node-id "$h" --local 127.0.0.1:1883 --peer "$peer:1883" \
        --state-dir "$d/agent" --health-listen 0.0.0.0:18830 >>"$d/agent.log" 2>&1 &
    PIDS+=($!)
}
start_broker b1 "${ADDR[b2]}"
start_broker b2 "${ADDR[b1]}"
wait_for "agent b1 to answer 'up ready'" 30 health_up "${ADDR[b1]}"
wait_for "agent b2 to answer 'up ready'" 30 health_up "${ADDR[b2]}"
log "brokers b1, b2 and their agents are up"

# --- load balancers: deploy/haproxy/haproxy.cfg and deploy/keepalived/*.conf, adapted ---
adapt_haproxy() {
    # No chroot/user/daemon/syslog (foreground, logs to a file); admin socket in our dir;
    # maxconn fitting a container's file limit; real addresses for brokers and LB peers.
    sed -e '/^\s*log /d' -e '/^\s*chroot /d' -e '/^\s*user /d' -e '/^\s*group /d' -e '/^\s*daemon$/d' \
        -e '/^\s*option\s*tcplog/d' \
        -e "s#stats socket /run/haproxy/admin.sock#stats socket $DIR/$1/admin.sock#" \
        -e "s#stats socket ipv4@192.0.2.21:9999#stats socket ipv4@${ADDR[$1]}:9999#" \
        -e 's/maxconn 100000/maxconn 4096/' \
        -e "s/server broker-a 192.0.2.11:1883/server b1 ${ADDR[b1]}:1883/" \
        -e "s/server broker-b 192.0.2.12:1883/server b2 ${ADDR[b2]}:1883/" \
        -e "s/peer lb1 192.0.2.21:10000/peer lb1 ${ADDR[lb1]}:10000/" \
        -e "s/peer lb2 192.0.2.22:10000/peer lb2 ${ADDR[lb2]}:10000/" \
        deploy/haproxy/haproxy.cfg
}
adapt_keepalived() {
    # pidof sees every namespace's haproxy (they share one pid space): check this host's
    # own HAProxy by its pid file instead, with a root-owned script.
    sed -e "s#192.0.2.100/24#$VIP/24#" -e "s#\"/usr/bin/pidof haproxy\"#\"$DIR/$2/chk_haproxy.sh\"#" \
        "deploy/keepalived/keepalived-$1.conf"
}
start_lb() {
    local h=$1 role=$2 d=$DIR/$1
    adapt_haproxy "$h" >"$d/haproxy.cfg"
    haproxy -c -q -L "$h" -f "$d/haproxy.cfg" || die "adapted haproxy.cfg for $h is invalid"
    ip netns exec "$P-$h" haproxy -db -L "$h" -f "$d/haproxy.cfg" >>"$d/haproxy.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$d/haproxy.pid"
    printf '#!/bin/sh\nexec kill -0 "$(cat %s)"\n' "$d/haproxy.pid" >"$d/chk_haproxy.sh"
    chmod 0755 "$d/chk_haproxy.sh"
    adapt_keepalived "$role" "$h" >"$d/keepalived.conf"
    keepalived --config-test -f "$d/keepalived.conf" >>"$d/keepalived.log" 2>&1 || die "adapted keepalived.conf for $h is invalid"
    ip netns exec "$P-$h" keepalived -n -l -D -P -f "$d/keepalived.conf" -p "$d/keepalived.pid" -r "$d/vrrp.pid" >>"$d/keepalived.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$d/keepalived.main.pid"
}
start_lb lb1 master
start_lb lb2 backup
wait_for "HAProxy on lb1" 10 tcp_open lb1 127.0.0.1 8404
wait_for "HAProxy on lb2" 10 tcp_open lb2 127.0.0.1 8404
wait_for "keepalived on lb1 to hold the floating IP $VIP" 30 vip_on lb1
wait_for "the floating IP to answer MQTT from the client host" 10 tcp_open cl "$VIP" 1883
wait_for "keepalived's VRRP process on lb1" 10 test -s "$DIR/lb1/vrrp.pid"
log "lb1 (MASTER) holds $VIP; lb2 is BACKUP"

# The VRRP child is killed first: killed after its parent it would get SIGTERM from the
# parent's death (PR_SET_PDEATHSIG) and resign politely (priority 0), which is not a crash.
cat >"$DIR/topology.env" <<EOF
FLOATING_IP=$VIP
MQTT_PORT=1883
KILL_BROKER=b1
KILL_BROKER_PIDS=$(cat "$DIR/b1/mosquitto.pid")
MASTER_LB=lb1
MASTER_LB_PIDS="$(cat "$DIR/lb1/vrrp.pid") $(cat "$DIR/lb1/haproxy.pid") $(cat "$DIR/lb1/keepalived.main.pid")"
MASTER_ADMIN_SOCKET=$DIR/lb1/admin.sock
BACKUP_NETNS=$P-lb2
EOF

if [[ ${1:-} == --up ]]; then
    log "running; from the client host try: ip netns exec $P-cl mosquitto_sub -h $VIP -t '#' -v   (Ctrl-C tears down)"
    while true; do sleep 3600; done
fi

log "bench: ip netns exec $P-cl $MESH_BINARY bench failover --netns $DIR $*"
in_ns cl "$MESH_BINARY" bench failover --netns "$DIR" "$@"
