#!/usr/bin/env python3
"""Regenerates the fuzz seed corpora (Fuzz/corpus/log, Fuzz/corpus/advert) from REAL traffic.

Starts two real mosquitto brokers (A: epoch timestamps, B: strftime timestamps) with the
log_types of deploy/mosquitto/mesh.conf and `log_dest topic`, a real mosquitto-mesh agent
beside each, drives real clients through them (mosquitto_sub/mosquitto_pub, plus a few raw
MQTT packets for what those tools cannot send: empty id, keepalive timeout, malformed
packet), and records with mosquitto_sub what the brokers publish on `$SYS/broker/log/#`
and `$mesh/#`. Then writes:
  corpus/log/     one file per captured line (first byte = topic selector, see
                  LogParserFuzz.swift), one per scenario (its lines joined by 0xFF), and
                  hand-written edge cases;
  corpus/advert/  every distinct `.../subscriptions` payload, and hand-written edge cases.

Usage: Fuzz/capture-corpus.py [--base-port 27710]   (needs `swift build --product mosquitto-mesh`)
Uses ports base..base+1. Every process it starts, it stops. Waits are bounded polls of the capture.
"""
import argparse, hashlib, os, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, ".build/debug/mosquitto-mesh")
SELECTOR = {"$SYS/broker/log/M/subscribe": 0, "$SYS/broker/log/M/unsubscribe": 1,
            "$SYS/broker/log/N": 2, "$SYS/broker/log/E": 3}  # anything else: 4
SEPARATOR = b"\xff"

procs = []


def start(args, **kw):
    p = subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Capture:
    """mosquitto_sub writing `<topic> <hex payload>` lines to a file."""

    def __init__(self, port, topic, path):
        self.path = path
        self.file = open(path, "wb")
        self.proc = start(["mosquitto_sub", "-p", str(port), "-i", f"capture-{port}-{len(procs)}",
                           "-t", topic, "-F", "%t %x"], stdout=self.file)

    def records(self):
        with open(self.path, "rb") as f:
            out = []
            for line in f.read().decode().splitlines():
                topic, _, hexed = line.partition(" ")
                out.append((topic, bytes.fromhex(hexed)))
            return out

    def wait(self, needle, timeout=30.0):
        """Bounded poll until a captured payload contains `needle` (bytes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in payload for _, payload in self.records()):
                return
            time.sleep(0.05)
        sys.exit(f"timed out waiting for {needle!r} in {self.path}")


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"broker on {port} did not start")


# --- raw MQTT, for what mosquitto_sub cannot do ----------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(b):
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def read_packet(s):
    head = s.recv(1)
    if not head:
        raise ConnectionError("closed")
    length, shift = 0, 0
    while True:
        b = s.recv(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < length:
        body += s.recv(length - len(body))
    return head[0], body


def raw_connect(port, cid, version=4, clean=True, keepalive=60, username=None, props=b""):
    s = socket.create_connection(("127.0.0.1", port), 5)
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    vh = mstr(b"MQTT") + bytes([version, flags]) + keepalive.to_bytes(2, "big")
    if version == 5:
        vh += varint(len(props)) + props
    payload = mstr(cid) + (mstr(username) if username is not None else b"")
    s.sendall(packet(0x10, vh + payload))
    kind, _ = read_packet(s)
    assert kind == 0x20, kind
    return s


def raw_subscribe(s, filters, version=4, qos=1):
    vh = (1).to_bytes(2, "big") + (b"\x00" if version == 5 else b"")
    s.sendall(packet(0x82, vh + b"".join(mstr(f) + bytes([qos]) for f in filters)))
    kind, _ = read_packet(s)
    assert kind == 0x90, kind


def raw_disconnect(s, version=4):
    s.sendall(packet(0xE0, b"\x00\x00" if version == 5 else b""))
    s.close()


# --- scenarios -------------------------------------------------------------------------------
def run(args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def sub(port, cid, *rest):
    """One mosquitto_sub that connects, subscribes, waits for the SUBACK and disconnects."""
    run(["mosquitto_sub", "-p", str(port), "-i", cid, *rest, "-E"])


def scenarios(pa, pb, cap_a, cap_b):
    def marker(name, port=pa, cap=cap_a):
        run(["mosquitto_pub", "-p", str(port), "-i", f"scenario:{name}", "-t", "marker", "-n"])
        cap.wait(f"scenario:{name} disconnected.".encode())

    marker("clean")
    sub(pa, "c311-clean", "-V", "311", "-t", "a/b", "-t", "w/+/x", "-q", "1")
    sub(pa, "c5", "-V", "5", "-u", "bob smith", "-t", "sensors/#", "-q", "2")
    sub(pa, "v31-client", "-V", "31", "-t", "old/topic")
    run(["mosquitto_pub", "-p", str(pa), "-i", "pubber", "-t", "a/b", "-m", "hello"])

    marker("persistent")
    sub(pa, "pers311", "-c", "-t", "p/q", "-q", "1")
    sub(pa, "pers311", "-c", "-t", "p/r")                      # resume: p/q restored unlogged
    sub(pa, "pers311", "-c", "-U", "p/q", "-t", "p/r")
    sub(pa, "pers5", "-V", "5", "-c", "-x", "3600", "-t", "v5/persist/#", "-q", "1")
    sub(pa, "mix", "-c", "-t", "m/1")
    sub(pa, "mix", "-t", "m/2")                                # clean start over a persistent session
    sub(pa, "nosub", "-U", "never/subscribed", "-t", "y")

    marker("spaces")
    sub(pa, "id with  spaces ", "-c", "-t", "a b/ c", "-t", "x 1 y", "-q", "1")
    sub(pa, " lead", "-t", " ")
    sub(pa, "x 1 y", "-c", "-t", "1 z", "-q", "2")
    sub(pa, "c 0 d", "-c", "-U", "c 0 d", "-t", "e 2 f")
    sub(pa, "ü ☃ id", "-V", "5", "-c", "-x", "3600", "-t", "températures/+/°C", "-u", "o'brien")
    sub(pa, "quotes", "-c", "-t", 'q"uote\\back/+', "-t", "$share/g \" 1/a b")
    sub(pa, "Client x disconnected.", "-t", "Client x disconnected.")

    marker("long")
    sub(pa, "L" * 300, "-c", "-t", "long/" + "f" * 250)
    sub(pa, "M" * 1100, "-c", "-t", "long/truncated")          # lines cut at 1000 bytes
    sub(pa, "short", "-t", "g" * 1050, "-u", "u" * 40)
    sub(pa, "short", "-U", "g" * 1050, "-t", "h" * 990)

    marker("takeover")
    holder = start(["mosquitto_sub", "-p", str(pa), "-i", "dup", "-t", "t/1"])
    cap_a.wait(b"dup 0 t/1")
    sub(pa, "dup", "-t", "t/2")
    cap_a.wait(b"Client dup already connected, closing old connection.")
    stop(holder)
    holder = start(["mosquitto_sub", "-p", str(pa), "-V", "5", "-c", "-x", "600", "-i", "dup5", "-t", "t/3"])
    cap_a.wait(b"dup5 0 t/3")
    sub(pa, "dup5", "-V", "5", "-c", "-x", "600", "-t", "t/4")
    cap_a.wait(b"Client dup5 already connected, closing old connection.")
    stop(holder)

    marker("kill")
    victim = start(["mosquitto_sub", "-p", str(pa), "-i", "killme", "-t", "k/#"])
    cap_a.wait(b"killme 0 k/#")
    stop(victim, signal.SIGKILL)
    cap_a.wait(b"Client killme closed its connection.")

    marker("keepalive")
    idle = raw_connect(pa, b"ka", keepalive=1)
    raw_subscribe(idle, [b"ka/#"])
    cap_a.wait(b"Client ka has exceeded timeout, disconnecting.", timeout=20)
    idle.close()

    marker("expiry")
    sub(pa, "scn-exp", "-V", "5", "-c", "-x", "1", "-t", "e/f")
    cap_a.wait(b"Expiring client scn-exp due to timeout.", timeout=20)

    marker("shared")
    sub(pa, "worker1", "-c", "-t", "$share/g1/jobs/#", "-q", "1")
    sub(pa, "worker2", "-c", "-t", "$share/g1/jobs/#", "-t", "$share/g2/jobs/+/done")
    sub(pa, "worker2", "-c", "-U", "$share/g2/jobs/+/done", "-t", "$share/g1/jobs/#")

    marker("raw")
    s = raw_connect(pa, b"", version=5)                        # the broker assigns auto-<uuid>
    raw_subscribe(s, [b"auto/+"], version=5)
    raw_disconnect(s, version=5)
    s = raw_connect(pa, b"badpkt")
    s.sendall(packet(0x80, (1).to_bytes(2, "big") + mstr(b"x") + b"\x00"))   # SUBSCRIBE with flags 0
    cap_a.wait(b"Client badpkt disconnected")
    s.close()
    s = raw_connect(pa, "new\u00a0line".encode(), version=5, clean=False, keepalive=0,
                    username=b"u') (p5, c1, k60", props=b"\x11\x00\x00\x0e\x10")  # expiry 3600
    raw_subscribe(s, [b"nbsp/#"], version=5, qos=2)
    raw_disconnect(s, version=5)

    marker("strftime", pb, cap_b)
    sub(pb, "on b", "-t", "b/+", "-q", "1")
    sub(pb, "pers b", "-c", "-t", "$share/grp/b/#")
    sub(pb, "pers b", "-c", "-U", "b/+", "-t", "b/x y")
    marker("end", pb, cap_b)
    marker("end")


# --- corpus ----------------------------------------------------------------------------------
def write(directory, data):
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def log_input(records):
    return SEPARATOR.join(bytes([SELECTOR.get(t, 4)]) + p for t, p in records)


def handwritten_log_lines():
    """Edge cases real brokers produce only with other settings or damage."""
    n, e, s, u = 2, 3, 0, 1
    return [
        (n, b"New client connected from 10.0.0.1:5 as plain (p2, c1, k60)."),         # log_timestamp false
        (s, b"plain 1 a/b"),
        (n, b"2026-11-22 02:56:21: Client plain disconnected.\n"),                    # space format, newline
        (n, b"1700000000: New client connected from ::1:5 as x (p5, c0, k0, u'')."),
        (n, b"1700000000: New client connected from ::1:5 as y (p9, c1, k1234567890)."),
        (n, b"1700000000: New client connected from ::1:5 as z (p2, c1, k60"),         # cut short
        (n, b"1700000000: New client connected from ::1:5 as \xcc\x81 (p2, c1, k60)."), # combining mark id
        (s, b"1700000000: \xcc\x81 0 a"),
        (u, b"1700000000: \xcc\x81 a"),
        (n, b"1700000000: Client \xcc\x81 disconnected."),
        (s, b"1700000000: id 3 a/b"),
        (s, b"1700000000: id 0 a/#/b"),
        (s, b"1700000000: id 0 $share/g/"),
        (s, b"1700000000: id 0 a\x00b"),
        (s, b"1700000000: id\xff 0 a"),                                                # not UTF-8
        (n, b"1700000000: Client a b disconnected: connection reset by peer."),
        (n, b"1700000000: Bad socket read/write on client x: Connection reset."),
        (n, b"1700000000: Socket error on client y, disconnecting."),
        (n, b"1700000000: Client z disconnected, not authorised."),
        (n, b"1700000000: Client w been disconnected by administrative action."),
        (e, b"1700000000: Client q already connected, closing old connection."),
        (4, b"1700000000: mosquitto version 2.0.11 running"),
        (n, b"1700000000: Client mosquitto-mesh/a disconnected."),
        (s, b"1700000000: mosquitto-mesh/a 2 #"),
        (n, b"1700000000: "),
        (s, b""),
    ]


def handwritten_adverts():
    return [
        b'{"node":"a","seq":0,"filters":{}}',
        b'{"node":"a","seq":18446744073709551615,"filters":{"a/+/c":2147483647}}',
        b'{"node":"a","seq":18446744073709551616,"filters":{}}',
        b'{"node":"a","seq":1,"filters":{"x":0}}',
        b'{"node":"a","seq":1,"filters":{"x":1.0}}',
        b'{"node":"a","seq":1,"filters":{"x":1e0}}',
        b'{"node":"a","seq":-1,"filters":{}}',
        b'{"node":"a","seq":1,"filters":{"x":1,"x":2}}',
        b'{"node":"a","seq":1,"filters":{"\\u00e9":1,"e\\u0301":1}}',
        b'{"node":"a","seq":1,"filters":{"\\ud83d\\ude00/#":1,"\\ud800":1}}',
        b'{"node":"a","seq":1,"filters":{"a\\/b\\n\\t\\u0001":1}}',
        b'{"node":"a b","seq":1,"filters":{}}',
        b'{"node":"","seq":1,"filters":{}}',
        b'{"node":"a","seq":1,"filters":{"$share/g/#":1,"$share//x":1,"a/#/b":1}}',
        b'{"node":"a","seq":1,"filters":{},"future":[1,{"x":null},true,false,"s"]}',
        b' \n\t{"seq":1,"filters":{},"node":"\\u00fc"}\r\n',
        b"[" * 40 + b"]" * 40,
        b'{"node":"a","seq":1,"filters":' + b'{"k":' * 35 + b"1" + b"}" * 36,
        b'{"node":"a","seq":01,"filters":{}}',
        b'{"node":"a","seq":1,"filters":{"x":1}} x',
        b"\xef\xbb\xbf" + b'{"node":"a","seq":1,"filters":{}}',
        b"",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-port", type=int, default=27710)
    opts = ap.parse_args()
    if not os.access(AGENT, os.X_OK):
        sys.exit(f"{AGENT} missing: run `swift build --product mosquitto-mesh` first")
    pa, pb = opts.base_port, opts.base_port + 1
    work = tempfile.mkdtemp(prefix="fuzz-capture-")
    try:
        for name, port, extra in (("a", pa, ""), ("b", pb, "log_timestamp_format %Y-%m-%dT%H:%M:%S\n")):
            conf = os.path.join(work, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "log_dest topic\n" + "".join(f"log_type {t}\n" for t in
                        ("error", "warning", "notice", "information", "subscribe", "unsubscribe")) + extra)
            start(["mosquitto", "-c", conf])
            wait_port(port)
        cap_a = Capture(pa, "$SYS/broker/log/#", os.path.join(work, "log-a"))
        cap_b = Capture(pb, "$SYS/broker/log/#", os.path.join(work, "log-b"))
        mesh_a = Capture(pa, "$mesh/#", os.path.join(work, "mesh-a"))
        mesh_b = Capture(pb, "$mesh/#", os.path.join(work, "mesh-b"))
        cap_a.wait(b"capture-"), cap_b.wait(b"capture-")
        for node, local, peer in (("a", pa, pb), ("b", pb, pa)):
            os.makedirs(os.path.join(work, f"state-{node}"))
            start([AGENT, "run", "--node-id", node, "--local", f"127.0.0.1:{local}", "--peer", f"127.0.0.1:{peer}",
                   "--state-dir", os.path.join(work, f"state-{node}"), "--stats-interval", "1"])
        mesh_a.wait(b'"node":"a"'), mesh_b.wait(b'"node":"b"')
        scenarios(pa, pb, cap_a, cap_b)
        mesh_a.wait(b"$share/g1/jobs/#")
        mesh_b.wait(b"$share/grp/b/#")
        logs = [cap_a.records(), cap_b.records()]
        adverts = {p for cap in (mesh_a, mesh_b) for t, p in cap.records() if t.endswith("/subscriptions") and p}
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(work, ignore_errors=True)

    log_dir, advert_dir = os.path.join(ROOT, "Fuzz/corpus/log"), os.path.join(ROOT, "Fuzz/corpus/advert")
    for d in (log_dir, advert_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for records in logs:
        scenario = []
        for topic, payload in records:
            write(log_dir, log_input([(topic, payload)]))
            if b"as scenario:" in payload and scenario:
                write(log_dir, log_input(scenario))
                scenario = []
            scenario.append((topic, payload))
        write(log_dir, log_input(scenario))
    hand = handwritten_log_lines()
    for selector, line in hand:
        write(log_dir, bytes([selector]) + line)
    write(log_dir, SEPARATOR.join(bytes([selector]) + line for selector, line in hand))
    for payload in adverts | set(handwritten_adverts()):
        write(advert_dir, payload)
    print(f"log: {len(os.listdir(log_dir))} inputs, advert: {len(os.listdir(advert_dir))} inputs "
          f"({len(adverts)} captured adverts)")


if __name__ == "__main__":
    main()
