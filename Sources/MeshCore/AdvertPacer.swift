/// Decides how long the advert publisher waits before it may publish again.
///
/// Every advert is the node's whole interest (a retained snapshot that any peer or operator
/// can read on its own), so during a subscription storm — a fleet reconnecting through the
/// load balancer, hundreds of subscribes a second — publishing one every `base` would send
/// the growing snapshot over every inter-broker link dozens of times. The pacer keeps the
/// first advert after a quiet spell immediate and the gap at `base` for isolated changes
/// (what SUBACK-to-first-forward latency needs), and doubles the gap, up to `ceiling`, for
/// as long as changes keep arriving while it waits.
public struct AdvertPacer: Sendable {
    public let base: Duration
    public let ceiling: Duration
    public private(set) var interval: Duration

    public init(base: Duration, ceiling: Duration) {
        self.base = base
        self.ceiling = max(base, ceiling)
        interval = base
    }

    /// Called after an advert went out and the current `interval` has been waited.
    /// `changedWhileWaiting`: more changes piled up during the wait (a burst goes on).
    /// Returns the gap to keep after the next advert.
    public mutating func next(changedWhileWaiting: Bool) -> Duration {
        if changedWhileWaiting {
            interval = min(interval * 2, ceiling)
        } else {
            interval = base
        }
        return interval
    }
}
