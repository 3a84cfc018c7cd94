import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
@testable import MeshAgent

/// The /metrics and agent-check endpoints, served in process on port 0 and driven by a
/// plain socket client that can split, delay or withhold its request.
@Suite("metrics and agent-check endpoints", .timeLimit(.minutes(1)))
struct EndpointTests {
    let logger = Logger(label: "endpoint-tests")

    /// A metrics endpoint over a registry of its own with one counter at `count`.
    func metricsEndpoint(host: String = "127.0.0.1", count: Int = 3, timeout: Duration = .seconds(30)) async throws -> MetricsEndpoint {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "endpoint_test", unitName: "total", helpText: "")).increment(by: Int64(count))
        return try await MetricsEndpoint(listen: Endpoint(host: host, port: 0), registry: registry, timeout: timeout, logger: logger)
    }

    /// Runs `service` in a service group around `body`, then shuts the group down gracefully
    /// and checks that it stopped listening on `port`.
    func serving(_ service: some Service, port: @escaping @Sendable () async -> Int, host: String = "127.0.0.1",
                 _ body: (Int) async throws -> Void) async throws {
        let group = ServiceGroup(services: [service], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let p = await port()
            do { try await body(p) } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(throws: TestSocket.Failure.self, "still listening after graceful shutdown") { try TestSocket(host: host, port: p) }
        }
    }

    func serving(_ endpoint: MetricsEndpoint, host: String = "127.0.0.1", _ body: (Int) async throws -> Void) async throws {
        let port = endpoint.port
        try await serving(endpoint, port: { port }, host: host, body)
    }

    static let request = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"

    @Test("a request split across two writes with a pause between is answered")
    func splitRequest() async throws {
        try await serving(try await metricsEndpoint(count: 7)) { port in
            let client = try TestSocket(host: "127.0.0.1", port: port)
            try client.send("GET /met")
            // The pause is the point: the rest of the request arrives in a later packet.
            try await Task.sleep(for: .milliseconds(300))
            try client.send("rics?x=1 HTTP/1.1\r\nHost: test\r\n\r\n")
            let response = try #require(client.readToEnd(timeout: .seconds(5)), "no complete response")
            #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response.prefix(60))")
            #expect(response.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
            #expect(response.contains("\nendpoint_test_total 7\n"), "\(response)")
        }
    }

    @Test("other paths and methods get 404")
    func notFound() async throws {
        try await serving(try await metricsEndpoint()) { port in
            for request in ["GET / HTTP/1.1\r\nHost: t\r\n\r\n", "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"] {
                let client = try TestSocket(host: "127.0.0.1", port: port)
                try client.send(request)
                let response = try #require(client.readToEnd(timeout: .seconds(5)))
                #expect(response.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(request): \(response.prefix(60))")
                #expect(!response.contains("endpoint_test_total"))
            }
        }
    }

    @Test("a silent client does not stop a second client from being served at once")
    func silentClientDoesNotBlock() async throws {
        try await serving(try await metricsEndpoint()) { port in
            let silent = try TestSocket(host: "127.0.0.1", port: port)
            let second = try TestSocket(host: "127.0.0.1", port: port)
            try second.send(Self.request)
            let response = second.readToEnd(timeout: .seconds(1))
            #expect(response?.hasPrefix("HTTP/1.1 200 OK\r\n") == true, "second client not served within 1 s: \(response?.prefix(60) ?? "nil")")
            // Served side by side, not after the silent one timed out (30 s here).
            #expect(!silent.isClosedByServer)
        }
    }

    @Test("IPv6 loopback")
    func ipv6() async throws {
        try await serving(try await metricsEndpoint(host: "::1", count: 2), host: "::1") { port in
            let client = try TestSocket(host: "::1", port: port)
            try client.send(Self.request)
            let response = try #require(client.readToEnd(timeout: .seconds(5)))
            #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(response.contains("\nendpoint_test_total 2\n"))
        }
    }

    @Test("a silent client is closed after the timeout")
    func silentClientClosed() async throws {
        try await serving(try await metricsEndpoint(timeout: .milliseconds(300))) { port in
            let clock = ContinuousClock()
            let start = clock.now
            let client = try TestSocket(host: "127.0.0.1", port: port)
            let response = client.readToEnd(timeout: .seconds(5))
            let elapsed = start.duration(to: clock.now)
            #expect(response == "", "not closed within 5 s, or answered: \(String(describing: response))")
            #expect(elapsed >= .milliseconds(250), "closed after \(elapsed), before its timeout")
        }
    }

    @Test("a request larger than the bound is cut off")
    func oversizedRequest() async throws {
        try await serving(try await metricsEndpoint()) { port in
            let client = try TestSocket(host: "127.0.0.1", port: port)
            try client.send("GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: MetricsEndpoint.maxRequestBytes))
            let response = client.readToEnd(timeout: .seconds(5))
            #expect(response != nil, "an oversized request held its connection")
            #expect(response?.contains("200 OK") != true)
        }
    }

    @Test("a listen host that is no IP address is refused, naming the setting")
    func badHost() async throws {
        let error = await #expect(throws: ConfigurationError.self) {
            _ = try await MetricsEndpoint(listen: Endpoint(host: "metrics.example", port: 0), registry: PrometheusCollectorRegistry(), logger: logger)
        }
        #expect(error?.key == "metrics-listen")
    }

    @Test("the health endpoint answers the current state's line, each connection, then closes")
    func health() async throws {
        let state = Mutex(HealthState.drain)
        let (bound, boundContinuation) = AsyncStream.makeStream(of: Int.self)
        let endpoint = HealthEndpoint(listen: Endpoint(host: "::1", port: 0), logger: logger,
                                      state: { state.withLock { $0 } },
                                      onListening: { boundContinuation.yield(Int($0.endpoint.port)) })
        try await serving(endpoint, port: { await bound.first { _ in true } ?? 0 }, host: "::1") { port in
            for s in [HealthState.drain, .up, .down] {
                state.withLock { $0 = s }
                let client = try TestSocket(host: "::1", port: port)
                #expect(client.readToEnd(timeout: .seconds(5)) == s.agentCheckLine)
            }
        }
    }
}
