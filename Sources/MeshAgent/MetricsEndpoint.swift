import Logging

/// Placeholder replaced below.
public final class MetricsEndpoint: Sendable {
    public init(listen: Endpoint, logger: Logger) throws {}
    public func start() {}
    public func stop() {}
}
