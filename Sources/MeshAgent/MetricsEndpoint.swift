import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import ServiceLifecycle

/// Prometheus exposition (`GET /metrics`) of every swift-metrics counter and gauge the
/// agent keeps. Creating it bootstraps the process-wide metrics system, so it must exist
/// before the agent creates its metrics. A `Service`: serves until graceful shutdown.
public final class MetricsEndpoint: Service, Sendable {
    /// Bytes a connection may send: a scraper's GET is a few hundred.
    static let maxRequestBytes = 8192
    private let server: EndpointServer
    private let logger: Logger

    /// Binds at once (a bad address stops the start before the agent exists) and
    /// bootstraps the metrics system.
    public convenience init(listen: Endpoint, logger: Logger) async throws(ConfigurationError) {
        let registry = PrometheusCollectorRegistry()
        try await self.init(listen: listen, registry: registry, logger: logger)
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// Serves `registry` without bootstrapping anything (tests make as many as they like).
    /// A connection that has not sent its whole request within `timeout` is closed.
    init(listen: Endpoint, registry: PrometheusCollectorRegistry, timeout: Duration = .seconds(2), logger: Logger) async throws(ConfigurationError) {
        server = try await EndpointServer.bind(listen: listen, key: "metrics-listen") { channel in
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(ConnectionDeadline(TimeAmount(timeout)))
            try pipeline.addHandler(RequestSizeLimit(Self.maxRequestBytes))
            try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
            try pipeline.addHandler(MetricsRequestHandler(registry: registry))
        }
        self.logger = logger
    }

    /// The port listened on.
    var port: Int { Int(server.endpoint.port) }

    public func run() async throws {
        logger.info("metrics endpoint listening", metadata: ["address": "\(server.endpoint)", "path": "/metrics"])
        await server.serve()
    }
}

/// Closes a connection that sends more than `limit` bytes, before the HTTP parser buffers them.
final class RequestSizeLimit: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let limit: Int
    private var seen = 0

    init(_ limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        seen += unwrapInboundIn(data).readableBytes
        guard seen <= limit else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

/// Answers the one request of a connection, then closes it: `GET /metrics` (any query)
/// gets the exposition, anything else 404.
final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let registry: PrometheusCollectorRegistry
    private var head: HTTPRequestHead?
    private var answered = false

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head, !answered else { return }
            answered = true
            respond(context: context, to: head)
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let status: HTTPResponseStatus
        let contentType: String
        var body = context.channel.allocator.buffer(capacity: 0)
        if request.method == .GET && path == "/metrics" {
            var page: [UInt8] = []
            registry.emit(into: &page)
            body.writeBytes(MetricHelp.annotate(page))
            status = .ok
            contentType = "text/plain; version=0.0.4; charset=utf-8"
        } else {
            body.writeString("only GET /metrics is served here\n")
            status = .notFound
            contentType = "text/plain"
        }
        let headers: HTTPHeaders = ["Content-Type": contentType, "Content-Length": "\(body.readableBytes)", "Connection": "close"]
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
