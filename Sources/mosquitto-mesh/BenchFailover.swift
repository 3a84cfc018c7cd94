import ArgumentParser

extension MosquittoMesh {
    /// Failover measured through HAProxy (issue 3).
    struct BenchFailover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "failover", abstract: "Kill a broker (and a load balancer) under load and measure what it costs.")
        func run() async throws { throw ValidationError("not implemented yet") }
    }
}
