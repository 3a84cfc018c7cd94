import Foundation

/// HAProxy's runtime API over its admin (stats) socket: the only authoritative answer to
/// "which broker did HAProxy send client X to?" and "does HAProxy see server Y as
/// draining?". Tests and the failover bench read it instead of guessing from timing.
public struct HAProxyAdmin: Sendable {
    /// Path of the `stats socket … level admin` unix socket.
    public let socketPath: String

    public init(socketPath: String) { self.socketPath = socketPath }

    /// A failure to talk to the admin socket, with the socket and command.
    public struct AdminError: Error, CustomStringConvertible {
        public let socketPath: String
        public let command: String
        public let reason: String
        public var description: String { "haproxy admin \(socketPath) '\(command)': \(reason)" }
    }

    /// Sends one command and returns the whole answer (HAProxy closes after answering).
    public func run(_ command: String) throws(AdminError) -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw AdminError(socketPath: socketPath, command: command, reason: "socket: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw AdminError(socketPath: socketPath, command: command, reason: "path too long for a unix socket")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw AdminError(socketPath: socketPath, command: command, reason: "connect: \(String(cString: strerror(errno)))") }
        let line = Array((command + "\n").utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw AdminError(socketPath: socketPath, command: command, reason: "short write")
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            answer += buffer[..<n]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    /// Server id → server name of one backend (`show servers state`).
    public func serverNames(backend: String) throws(AdminError) -> [Int: String] {
        let text = try run("show servers state \(backend)")
        var names: [Int: String] = [:]
        // Data lines: be_id be_name srv_id srv_name srv_addr …
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: " ")
            if f.count > 3, let id = Int(f[2]) { names[id] = String(f[3]) }
        }
        return names
    }

    /// Client id → server name, from the client-id stick table of `backend`.
    public func stuckClients(backend: String) throws(AdminError) -> [String: String] {
        let names = try serverNames(backend: backend)
        let text = try run("show table \(backend)")
        var table: [String: String] = [:]
        // 0x…: key=sub-1 use=1 exp=1799870 shard=0 server_id=1 server_key=a
        for line in text.split(separator: "\n") where line.hasPrefix("0x") {
            var key: String?
            var server: String?
            for field in line.split(separator: " ") {
                if field.hasPrefix("key=") { key = String(field.dropFirst(4)) }
                if field.hasPrefix("server_key="), server == nil { server = String(field.dropFirst(11)) }
                if field.hasPrefix("server_id="), let id = Int(field.dropFirst(10)) { server = names[id] ?? server }
            }
            if let key, let server { table[key] = server }
        }
        return table
    }

    /// One server's state as HAProxy sees it (from `show stat`): status (`UP`, `DOWN`,
    /// `DRAIN`, `NOLB`, …), current weight and the last agent-check answer.
    public struct ServerStatus: Sendable, Equatable {
        public var status: String
        public var weight: Int
        public var agentStatus: String
    }

    public func serverStatus(backend: String) throws(AdminError) -> [String: ServerStatus] {
        let text = try run("show stat")
        let lines = text.split(separator: "\n")
        guard let header = lines.first, header.hasPrefix("# ") else {
            throw AdminError(socketPath: socketPath, command: "show stat", reason: "no CSV header in \(text.prefix(200))")
        }
        let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        func index(_ name: String) -> Int? { columns.firstIndex(of: name) }
        guard let px = index("pxname"), let sv = index("svname"), let st = index("status"), let w = index("weight") else {
            throw AdminError(socketPath: socketPath, command: "show stat", reason: "unexpected columns \(columns.prefix(20))")
        }
        let agent = index("agent_status")
        var result: [String: ServerStatus] = [:]
        for line in lines.dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count > max(px, sv, st, w), f[px] == backend, f[sv] != "BACKEND", f[sv] != "FRONTEND" else { continue }
            result[f[sv]] = ServerStatus(status: f[st], weight: Int(f[w]) ?? -1, agentStatus: agent.map { f.count > $0 ? f[$0] : "" } ?? "")
        }
        return result
    }
}

extension HAProxyProcess {
    /// The backend name the harness configuration uses.
    public static let backendName = "brokers"

    /// The admin socket the harness configuration opens (`stats socket … level admin`).
    public var admin: HAProxyAdmin { HAProxyAdmin(socketPath: directory + "/admin.sock") }
}
