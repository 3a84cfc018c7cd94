import Logging
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

    /// Logs the message if this occurrence is one to log, with its ordinal as `occurrence`.
    func log(_ level: Logger.Level, to logger: Logger, _ message: @autoclosure () -> Logger.Message,
             metadata: @autoclosure () -> Logger.Metadata = [:]) {
        let (log, n) = shouldLog()
        guard log else { return }
        var m = metadata()
        m["occurrence"] = "\(n)"
        logger.log(level: level, message(), metadata: m)
    }

    /// A `ClientEvents.libraryLog` handler: libmosquitto's errors, as warnings naming the
    /// link, throttled (first 5, then one in 100).
    static func libraryLog(_ logger: Logger, link: String) -> @Sendable (Bool, String) -> Void {
        let throttle = LogThrottle(first: 5, every: 100)
        return { isError, message in
            guard isError, throttle.shouldLog().0 else { return }
            logger.warning("\(link): \(message)")
        }
    }
}
