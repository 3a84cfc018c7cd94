/// Mosquitto forgets clean sessions when it restarts and logs nothing about them. The
/// agent notices a restart from `$SYS/broker/uptime` — the one sign of a restart that no
/// client can fake (a client can take the agent's id and so discard its session, but not
/// make the broker's uptime go back): the uptime going back while the agent watches, or the
/// broker's start time (now − uptime) jumping forward across an agent restart.
struct BrokerRestartDetector: Sendable {
    /// Start-time estimates closer than this are the same broker run (uptime is published
    /// every `sys_interval` seconds, so estimates wobble by up to that much).
    var tolerance: Double = 15
    private(set) var startedAt: Double?
    /// The last uptime seen in this process (nil until the first).
    private var lastUptime: Double?

    init(startedAt: Double?) { self.startedAt = startedAt }

    /// Feeds one uptime reading; true if it shows a restart since the previous one.
    mutating func observe(uptimeSeconds: Double, now: Double) -> Bool {
        let estimate = now - uptimeSeconds
        defer {
            startedAt = estimate
            lastUptime = uptimeSeconds
        }
        if let lastUptime { return uptimeSeconds < lastUptime }
        guard let previous = startedAt else { return false }
        return estimate > previous + tolerance
    }

    /// Parses the payload of `$SYS/broker/uptime` ("123 seconds").
    static func parseUptime(_ payload: UnsafeRawBufferPointer) -> Double? {
        let text = String(decoding: payload, as: UTF8.self)
        guard let first = text.split(separator: " ").first else { return nil }
        return Double(first)
    }
}
