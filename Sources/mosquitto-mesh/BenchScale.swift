struct BenchScale {
    init(quick: Bool) {}
    func run() async throws -> BenchSection { throw BenchError("Scale: not implemented yet") }
}
