/// Decides how long the advert publisher waits before it may publish again.
///
/// Every advert is the node's whole interest (a retained snapshot that any peer or operator
/// can read on its own), so during a subscription storm — a fleet reconnecting through the
/// load balancer, hundreds of subscribes a second — publishing one every `base` would send
/// the growing snapshot over every inter-broker link dozens of times. The pacer keeps the
/// gap at `base` while changes come slower than one per `base` (what SUBACK-to-first-forward
/// latency needs: a steady trickle of subscriptions is never slowed down), and doubles it,
/// up to `ceiling`, while they come faster than that.
public struct AdvertPacer: Sendable {
    public let base: Duration
    public let ceiling: Duration
    public private(set) var interval: Duration

    public init(base: Duration, ceiling: Duration) {
        self.base = base
        self.ceiling = max(base, ceiling)
        interval = base
    }

    /// Called after an advert went out and the current `interval` has been waited, with the
    /// number of interest changes that arrived during that wait. Returns the gap to keep
    /// after the next advert.
    public mutating func next(changesWhileWaiting changes: Int) -> Duration {
        // A storm: on average more than one change per `base` during the wait.
        if changes > 0 && base * changes > interval {
            interval = min(interval * 2, ceiling)
        } else {
            interval = base
        }
        return interval
    }
}
