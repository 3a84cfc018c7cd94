import ArgumentParser

extension MosquittoMesh {
    /// Benchmarks (mesh vs Mosquitto's bridge vs one broker) — filled in by issue 4.
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Benchmarks: mesh vs Mosquitto's own bridge vs a single broker.")
        func run() async throws {
            throw ValidationError("no scenario given")
        }
    }
}
