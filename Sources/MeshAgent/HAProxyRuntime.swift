import Foundation

/// HAProxy's runtime API over TCP (`stats socket ipv4@host:port level operator`): how an agent
/// makes client-id stickiness follow its sessions when a broker is lost.
///
/// - **Hold**: `set table <backend> key <id> data.gpt0 <epoch s>`. The shipped frontend
///   rejects a CONNECT whose client id's `gpt0` is still in the future, so a lost node's
///   clients cannot start over with an empty session on a survivor before their session has
///   been adopted. The hold ends by itself at that time, even if every agent died.
/// - **Move**: `clear table … key <id>` then `set table … key <id> data.server_id <n> data.gpt0 0`.
///   HAProxy 2.6 sticks by the entry's `server_key` (the server's name, stored when a
///   connection succeeds) and the runtime API cannot write it, so the entry is made again
///   with only the server id, which HAProxy then follows (and fills the key on the next
///   connection). Checked with HAProxy 2.6.12.
///
/// Blocking socket I/O with short timeouts; callers run it off the async pool.
struct HAProxyRuntime: Sendable {
    let endpoint: Endpoint
    let backend: String
    /// Connect, send and receive timeout, seconds.
    static let timeout: Int = 2
    /// Commands per connection are joined with ';' up to this many bytes (HAProxy reads a
    /// command line into one buffer, 16 KB by default).
    static let lineBytes = 8_000

    struct RuntimeError: Error, CustomStringConvertible {
        let endpoint: Endpoint
        let reason: String
        var description: String { "HAProxy runtime API \(endpoint): \(reason)" }
    }

    /// A stick-table key as a runtime-API argument: spaces, tabs, ';' and '\' escaped with '\'.
    /// Nil for ids the CLI cannot carry (line breaks, NUL) or that exceed the shipped table's
    /// `len 128` (HAProxy would store a cut key that the CONNECT's full id never matches).
    static func escapedKey(_ id: String) -> String? {
        guard id.utf8.count <= 128, !id.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0 }) else { return nil }
        var out = ""
        out.reserveCapacity(id.utf8.count + 4)
        for ch in id.unicodeScalars {
            if ch == " " || ch == "\t" || ch == ";" || ch == "\\" { out.append("\\") }
            out.unicodeScalars.append(ch)
        }
        return out
    }

    func holdCommand(key: String, until epochSeconds: Int64) -> String {
        "set table \(backend) key \(key) data.gpt0 \(max(0, epochSeconds))"
    }

    func moveCommands(key: String, serverID: Int) -> [String] {
        ["clear table \(backend) key \(key)", "set table \(backend) key \(key) data.server_id \(serverID) data.gpt0 0"]
    }

    /// The numeric id of server `name` in the backend (`show servers state`).
    func serverID(named name: String) throws(RuntimeError) -> Int {
        let text = try send("show servers state \(backend)")
        // Data lines: be_id be_name srv_id srv_name srv_addr …
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: " ")
            if f.count > 3, f[1] == backend, f[3] == name, let id = Int(f[2]) { return id }
        }
        throw RuntimeError(endpoint: endpoint, reason: "no server '\(name)' in backend '\(backend)' (check --haproxy-server and --haproxy-backend)")
    }

    /// Runs commands, several per connection; returns the error lines HAProxy answered (a
    /// successful `set`/`clear table` answers nothing).
    func run(_ commands: [String]) throws(RuntimeError) -> [String] {
        var errors: [String] = []
        var line = ""
        func flush() throws(RuntimeError) {
            guard !line.isEmpty else { return }
            let answer = try send(line)
            for l in answer.split(separator: "\n") where !l.trimmingCharacters(in: .whitespaces).isEmpty { errors.append(String(l)) }
            line = ""
        }
        for c in commands {
            if !line.isEmpty && line.utf8.count + c.utf8.count + 1 > Self.lineBytes { try flush() }
            line += line.isEmpty ? c : ";" + c
        }
        try flush()
        return errors
    }

    /// One connection: the line, then everything HAProxy answers until it closes.
    func send(_ line: String) throws(RuntimeError) -> String {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &result) == 0, let first = result else {
            throw RuntimeError(endpoint: endpoint, reason: "cannot resolve host")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw RuntimeError(endpoint: endpoint, reason: "socket: errno \(errno)") }
        defer { close(fd) }
        // Non-blocking connect bounded by the timeout (a dead host would hold a blocking one for minutes).
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else { throw RuntimeError(endpoint: endpoint, reason: "connect: \(String(cString: strerror(errno)))") }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, Int32(Self.timeout * 1000)) == 1 else { throw RuntimeError(endpoint: endpoint, reason: "connect timed out") }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else { throw RuntimeError(endpoint: endpoint, reason: "connect: \(String(cString: strerror(err)))") }
        }
        _ = fcntl(fd, F_SETFL, flags)
        var tv = timeval(tv_sec: Self.timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array((line + "\n").utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw RuntimeError(endpoint: endpoint, reason: "write: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw RuntimeError(endpoint: endpoint, reason: "read: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            answer += buffer[..<n]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
