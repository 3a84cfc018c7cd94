import Foundation
import Logging
import Synchronization

/// HAProxy agent-check answers: what this node's sidecar thinks of taking new clients.
public enum HealthState: String, Sendable {
    /// Local broker and peers reachable: send clients here.
    case up
    /// Clients already here may stay, new ones should go elsewhere (the agent lost its
    /// local broker, or every peer, so clients here would be cut off from the mesh).
    case drain
    /// The agent is stopping.
    case down
}

extension HealthState {
    /// The line HAProxy reads. HAProxy 2.6 keeps a server in drain after a plain `up`;
    /// `up ready` lifts both down and drain.
    public var agentCheckLine: String {
        switch self {
        case .up: "up ready\n"
        case .drain: "drain\n"
        case .down: "down\n"
        }
    }
}

/// A TCP listener speaking HAProxy's agent-check protocol: on each connection it writes
/// one line (`up`, `drain` or `down`) and closes. Runs on its own thread with blocking
/// accept, so it answers even when the async runtime is busy.
public final class HealthEndpoint: Sendable {
    private let fd: Int32
    private let state: @Sendable () -> HealthState
    private let logger: Logger
    private let running = Atomic<Bool>(true)
    public let port: Int32

    public init(listen: Endpoint, logger: Logger, state: @escaping @Sendable () -> HealthState) throws {
        self.state = state
        self.logger = logger
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ConfigurationError(key: "health-listen", value: listen.description, reason: "socket failed: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(listen.port).bigEndian)
        let host = listen.host == "localhost" ? "127.0.0.1" : listen.host
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(fd)
            throw ConfigurationError(key: "health-listen", value: listen.description, reason: "host must be an IPv4 address")
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw ConfigurationError(key: "health-listen", value: listen.description, reason: "cannot listen: \(String(cString: strerror(e)))")
        }
        self.fd = fd
        port = listen.port
    }

    public func start() {
        let thread = Thread { [self] in self.acceptLoop() }
        thread.name = "mesh-health"
        thread.start()
        logger.info("health endpoint (HAProxy agent-check) listening", metadata: ["port": "\(port)"])
    }

    private func acceptLoop() {
        while running.load(ordering: .relaxed) {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                break
            }
            let line = state().agentCheckLine
            _ = line.withCString { send(client, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            close(client)
        }
    }

    public func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
