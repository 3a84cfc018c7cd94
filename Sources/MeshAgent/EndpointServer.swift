import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The listening socket of one of the agent's two small endpoints (agent-check, /metrics),
/// served by swift-nio: connections are handled side by side on one event loop, so a slow
/// or silent client delays nobody else, and a request may arrive in as many packets as it
/// likes. IPv4 and IPv6.
struct EndpointServer: Sendable {
    /// One thread for both endpoints: each connection is a few hundred bytes in and one
    /// answer out. Lives as long as the process.
    static let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    let channel: any Channel
    /// The address listened on, with the port actually bound (the kernel's pick for port 0).
    let endpoint: Endpoint

    /// Binds and listens; the error names the setting (`key`) and the address. `connection`
    /// sets up each accepted connection's pipeline (on its event loop).
    static func bind(listen: Endpoint, key: String,
                     connection: @escaping @Sendable (any Channel) throws -> Void) async throws(ConfigurationError) -> EndpointServer {
        let address = try socketAddress(listen, key: key)
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try connection(channel) }
            }
        do {
            let channel = try await bootstrap.bind(to: address).get()
            return EndpointServer(channel: channel, endpoint: Endpoint(host: listen.host, port: Int32(channel.localAddress?.port ?? Int(listen.port))))
        } catch let error as IOError {
            throw ConfigurationError(key: key, value: listen.description, reason: "cannot listen: \(String(cString: strerror(error.errnoCode)))")
        } catch {
            throw ConfigurationError(key: key, value: listen.description, reason: "cannot listen: \(error)")
        }
    }

    /// An IPv4 or IPv6 literal (`localhost` is 127.0.0.1): no name lookup at startup.
    static func socketAddress(_ listen: Endpoint, key: String) throws(ConfigurationError) -> SocketAddress {
        let host = listen.host == "localhost" ? "127.0.0.1" : listen.host
        do {
            return try SocketAddress(ipAddress: host, port: Int(listen.port))
        } catch {
            throw ConfigurationError(key: key, value: listen.description, reason: "host must be an IPv4 or IPv6 address")
        }
    }

    /// Serves until graceful shutdown or cancellation, then stops listening. Connections
    /// already accepted finish on their own (each is bounded by its deadline).
    func serve() async {
        let channel = self.channel
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

/// Closes a connection that is still open `limit` after it was accepted, whatever the
/// client is doing: a silent or trickling client holds a socket for a bounded time.
final class ConnectionDeadline: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    private let limit: TimeAmount
    private var timer: Scheduled<Void>?

    init(_ limit: TimeAmount) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }
}
