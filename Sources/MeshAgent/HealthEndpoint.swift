import Logging

/// HAProxy agent-check answers: what this node's sidecar thinks of taking new clients.
public enum HealthState: String, Sendable {
    /// Local broker and peers reachable: send clients here.
    case up
    /// Clients already here may stay, new ones should go elsewhere (the agent lost its
    /// local broker, or every peer, so clients here would be cut off from the mesh).
    case drain
    /// The agent is stopping.
    case down

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

/// HAProxy's agent-check protocol: on each connection, one line (`up ready`, `drain`,
/// `down`), then close.
public final class HealthEndpoint: Sendable {
    private let listener: TCPListener
    private let state: @Sendable () -> HealthState
    private let logger: Logger

    public init(listen: Endpoint, logger: Logger, state: @escaping @Sendable () -> HealthState) throws(ConfigurationError) {
        listener = try TCPListener(listen: listen, key: "health-listen")
        self.state = state
        self.logger = logger
    }

    public func start() {
        let state = self.state
        listener.start(name: "mesh-health") { fd in TCPListener.send(fd, Array(state().agentCheckLine.utf8)) }
        logger.info("health endpoint (HAProxy agent-check) listening", metadata: ["address": "\(listener.endpoint)"])
    }

    public func stop() { listener.stop() }
}
