import Synchronization

/// Bad input is logged with context, but a flood of it must not flood the log: the first
/// few occurrences are logged, then one in every `every`. Counting is separate (metrics).
final class LogThrottle: Sendable {
    private let seen = Atomic<Int>(0)
    private let first: Int
    private let every: Int

    init(first: Int = 10, every: Int = 1000) {
        self.first = first
        self.every = every
    }

    /// Whether this occurrence should be logged, and its ordinal.
    func shouldLog() -> (Bool, Int) {
        let n = seen.add(1, ordering: .relaxed).newValue
        return (n <= first || n % every == 0, n)
    }
}
