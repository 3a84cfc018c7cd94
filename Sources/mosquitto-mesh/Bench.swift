import ArgumentParser

extension MosquittoMesh {
    /// Benchmarks: mesh vs Mosquitto's own bridge vs a single broker, and failover.
    /// Every scenario starts and stops its own brokers, agents and HAProxy on loopback.
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmarks: mesh vs Mosquitto's own bridge vs a single broker; failover.",
            subcommands: [BenchFailover.self]
        )
    }
}
