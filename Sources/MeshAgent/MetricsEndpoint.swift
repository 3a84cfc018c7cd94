import CoreMetrics
import Foundation
import Logging
import Prometheus

/// Prometheus exposition (`GET /metrics`) of every swift-metrics counter and gauge the
/// agent keeps. Creating it bootstraps the process-wide metrics system, so it must exist
/// before the agent creates its metrics.
public final class MetricsEndpoint: Sendable {
    private let listener: TCPListener
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger

    public init(listen: Endpoint, logger: Logger) throws(ConfigurationError) {
        listener = try TCPListener(listen: listen, key: "metrics-listen")
        registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        self.logger = logger
    }

    public func start() {
        let registry = self.registry
        listener.start(name: "mesh-metrics") { fd in
            var request = [UInt8](repeating: 0, count: 2048)
            let n = recv(fd, &request, request.count, 0)
            let line = n > 0 ? String(decoding: request[..<n], as: UTF8.self).prefix { $0 != "\r" && $0 != "\n" } : ""
            let parts = line.split(separator: " ")
            let response: [UInt8]
            if parts.count >= 2, parts[0] == "GET", parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?") {
                var page: [UInt8] = []
                registry.emit(into: &page)
                let body = MetricHelp.annotate(page)
                response = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
            } else {
                let body = "only GET /metrics is served here\n"
                response = Array("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8)
            }
            TCPListener.send(fd, response)
        }
        logger.info("metrics endpoint listening", metadata: ["address": "\(listener.endpoint)", "path": "/metrics"])
    }

    public func stop() { listener.stop() }
}
