import Foundation

/// Bytes carried by TCP connections, read from the kernel (`ss -tinpH`): the one
/// measurement of inter-broker traffic that treats Mosquitto's bridge and the mesh
/// alike, because it counts what went over the wire, not what either side says it sent.
///
/// Per connection it takes `bytes_acked` (sent and acknowledged by the peer) and
/// `bytes_received`, keyed by the local/remote port pair and the owning process id.
/// Deltas between two snapshots are what a phase cost; a connection that appeared in
/// between counts whole.
public struct TCPConnection: Sendable, Hashable {
    public var localPort: Int32
    public var remotePort: Int32
    public var pid: pid_t
    public var bytesSent: UInt64
    public var bytesReceived: UInt64

    public var key: String { "\(pid):\(localPort)->\(remotePort)" }
}

public enum SocketCounters {
    /// An error reading the kernel's socket table, with what `ss` said.
    public struct ReadError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Every established loopback TCP connection with its owning process.
    public static func snapshot() async throws -> [TCPConnection] {
        let out = NSTemporaryDirectory() + "/mesh-ss-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).txt"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let child = try ChildProcess(executable: "/usr/bin/ss", arguments: ["-tinpH", "state", "established"], logPath: out)
        guard await child.waitForExit(timeout: .seconds(10)), child.exitCode == 0 else {
            throw ReadError(description: "ss -tinpH failed: \(child.logTail())")
        }
        guard let text = try? String(contentsOfFile: out, encoding: .utf8) else {
            throw ReadError(description: "ss output unreadable at \(out)")
        }
        return parse(text)
    }

    /// Parses `ss -tinpH state established`: a socket line (`recvq sendq local peer users:(…pid=N…)`)
    /// followed by an indented info line with `bytes_acked:`/`bytes_received:`.
    public static func parse(_ text: String) -> [TCPConnection] {
        var result: [TCPConnection] = []
        var pending: (local: Int32, remote: Int32, pid: pid_t)?
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if raw.first == " " || raw.first == "\t" {
                guard let p = pending else { continue }
                pending = nil
                result.append(TCPConnection(localPort: p.local, remotePort: p.remote, pid: p.pid,
                                            bytesSent: field("bytes_acked:", in: line), bytesReceived: field("bytes_received:", in: line)))
            } else {
                let cols = line.split(separator: " ", omittingEmptySubsequences: true)
                guard cols.count >= 4, let l = port(cols[2]), let r = port(cols[3]) else { pending = nil; continue }
                var pid: pid_t = -1
                if let range = line.range(of: "pid=") {
                    pid = pid_t(line[range.upperBound...].prefix { $0.isNumber }) ?? -1
                }
                pending = (l, r, pid)
            }
        }
        return result
    }

    private static func port(_ s: Substring) -> Int32? {
        guard let colon = s.lastIndex(of: ":") else { return nil }
        return Int32(s[s.index(after: colon)...])
    }

    private static func field(_ name: String, in line: String) -> UInt64 {
        guard let r = line.range(of: name) else { return 0 }
        return UInt64(line[r.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    /// Bytes (both directions) that the connections selected by `include` carried between
    /// `before` and `after`.
    public static func delta(from before: [TCPConnection], to after: [TCPConnection],
                             where include: (TCPConnection) -> Bool) -> UInt64 {
        var old: [String: TCPConnection] = [:]
        for c in before where include(c) { old[c.key] = c }
        var total: UInt64 = 0
        for c in after where include(c) {
            let o = old[c.key]
            let sent = c.bytesSent &- (o?.bytesSent ?? 0)
            let received = c.bytesReceived &- (o?.bytesReceived ?? 0)
            // A counter that went backwards means a new connection on the same ports.
            total += (sent > c.bytesSent ? c.bytesSent : sent) + (received > c.bytesReceived ? c.bytesReceived : received)
        }
        return total
    }
}
