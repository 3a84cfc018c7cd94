struct BenchLocality {
    init(quick: Bool) {}
    func run() async throws -> BenchSection { throw BenchError("Locality: not implemented yet") }
}
