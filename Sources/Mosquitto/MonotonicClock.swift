import Foundation

/// Monotonic nanoseconds (CLOCK_MONOTONIC): unaffected by wall-clock steps, and shared by
/// every process on the machine, so a time stamp one process writes into a payload gives
/// another process on the same host end-to-end latency without clock sync. The one such
/// clock of the package (the agent, the harness, the benchmarks and the tests use it).
@inline(__always)
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The same clock in seconds.
@inline(__always)
public func monotonicSeconds() -> Double {
    Double(monotonicNanos()) / 1e9
}
