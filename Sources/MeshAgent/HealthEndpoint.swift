import Logging
import NIOCore
import ServiceLifecycle

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
/// `down`), then close. A `Service`: it listens once `opensAfter` returns (the agent has
/// started its links; until then a check finds the port closed, which HAProxy ignores) and
/// until graceful shutdown, so HAProxy reads `down` while the agent drains.
public final class HealthEndpoint: Service, Sendable {
    private let listen: Endpoint
    private let opensAfter: @Sendable () async -> Void
    private let state: @Sendable () -> HealthState
    private let onListening: @Sendable (EndpointServer) -> Void
    private let logger: Logger

    public convenience init(listen: Endpoint, logger: Logger, opensAfter: @escaping @Sendable () async -> Void,
                            state: @escaping @Sendable () -> HealthState) {
        self.init(listen: listen, logger: logger, opensAfter: opensAfter, state: state, onListening: { _ in })
    }

    /// `onListening` is told the bound socket (tests listen on port 0).
    init(listen: Endpoint, logger: Logger, opensAfter: @escaping @Sendable () async -> Void = {},
         state: @escaping @Sendable () -> HealthState, onListening: @escaping @Sendable (EndpointServer) -> Void) {
        self.listen = listen
        self.opensAfter = opensAfter
        self.state = state
        self.onListening = onListening
        self.logger = logger
    }

    public func run() async throws {
        await opensAfter()
        guard !Task.isCancelled else { return }
        let state = self.state
        let server = try await EndpointServer.bind(listen: listen, key: "health-listen") { channel in
            try channel.pipeline.syncOperations.addHandler(AgentCheckHandler(state: state))
        }
        onListening(server)
        logger.info("health endpoint (HAProxy agent-check) listening", metadata: ["address": "\(server.endpoint)"])
        await server.serve()
    }
}

/// Writes the current state's line as soon as the connection is up, then closes it;
/// whatever the client sends is ignored.
final class AgentCheckHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let state: @Sendable () -> HealthState

    init(state: @escaping @Sendable () -> HealthState) { self.state = state }

    func channelActive(context: ChannelHandlerContext) {
        let line = context.channel.allocator.buffer(string: state().agentCheckLine)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(line)).whenComplete { _ in channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
