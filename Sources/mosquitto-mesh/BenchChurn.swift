struct BenchChurn {
    init(quick: Bool) {}
    func run() async throws -> BenchSection { throw BenchError("Churn: not implemented yet") }
}
