import Foundation
import Synchronization

/// Loopback ports for tests and benchmarks.
public enum Network {
    /// A port that is free on 127.0.0.1 right now, chosen below the kernel's ephemeral range
    /// (`ip_local_port_range`, 32768–60999 on Debian): a port from that range, even if free
    /// when asked, can be taken moments later as the local port of some outgoing connection,
    /// and the broker or agent meant to listen on it then fails with "address in use".
    public static func freePort() -> Int32 {
        let (low, high) = ephemeralRange()
        // 19000–19999 stay free for deploy/check.sh's throw-away broker.
        let candidates = low > 21_000 ? 20_000..<Int32(low) : Int32(high + 1)..<65_000
        for _ in 0..<500 {
            let port = Int32.random(in: candidates)
            // Not yet bound by whoever asked for it: never hand the same port out twice.
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(port) { return port }
        }
        return 0
    }

    /// Every port `freePort` has returned in this process.
    private static let handedOut = Mutex<Set<Int32>>([])

    private static func ephemeralRange() -> (Int, Int) {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else { return (32768, 60999) }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (32768, 60999)
    }

    private static func canBind(_ port: Int32) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// Whether something accepts TCP connections on host:port.
    public static func isListening(host: String = "127.0.0.1", port: Int32) -> Bool {
        guard let fd = connected(host: host, port: port) else { return false }
        close(fd)
        return true
    }

    /// Waits (bounded) until host:port accepts connections.
    public static func waitForListening(host: String = "127.0.0.1", port: Int32, timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !isListening(host: host, port: port) {
            if clock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Reads one line from a TCP server (HAProxy agent-check style), nil on failure.
    public static func readLine(host: String = "127.0.0.1", port: Int32) -> String? {
        guard let fd = connected(host: host, port: port) else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A plain HTTP/1.1 GET on loopback; the body, or nil if the request failed.
    public static func httpGet(port: Int32, path: String) -> (status: Int, body: String)? {
        guard let fd = connected(host: "127.0.0.1", port: port) else { return nil }
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let text = String(decoding: readToEnd(fd), as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n"),
              let status = Int(text.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return (status, String(text[headerEnd.upperBound...]))
    }

    /// Everything `fd` yields until end of file, an error or a read timeout.
    public static func readToEnd(_ fd: Int32) -> [UInt8] {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[..<n]
        }
        return data
    }

    /// Why `tcpConnect` failed: the call (`socket`, `connect`) and its errno.
    public struct ConnectFailure: Error {
        public let call: String
        public let errno: Int32
    }

    /// A TCP connection to host:port (IPv4); the caller closes it. `timeoutSeconds` bounds each
    /// read (SO_RCVTIMEO); with `boundingSends` each send and the connect itself too
    /// (SO_SNDTIMEO), for a peer that may not answer at all.
    public static func tcpConnect(host: String = "127.0.0.1", port: Int32, timeoutSeconds: Int? = nil,
                                  boundingSends: Bool = false) throws(ConnectFailure) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ConnectFailure(call: "socket", errno: errno) }
        if let timeoutSeconds {
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if boundingSends { setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr(host)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let failure = ConnectFailure(call: "connect", errno: errno)
            close(fd)
            throw failure
        }
        return fd
    }

    /// A TCP connection to host:port (IPv4), or nil. The caller closes it.
    private static func connected(host: String, port: Int32) -> Int32? {
        try? tcpConnect(host: host, port: port)
    }
}
