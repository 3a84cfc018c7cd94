struct BenchTree {
    init(quick: Bool) {}
    func run() async throws -> BenchSection { throw BenchError("Tree: not implemented yet") }
}
