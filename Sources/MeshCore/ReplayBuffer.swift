/// A set of peer indexes, without allocating for the first 64 (a mesh rarely has more).
public struct PeerSet: Equatable, Sendable {
    private var low: UInt64 = 0
    private var high: [Int] = []

    public init() {}

    public init(_ peers: some Sequence<Int>) {
        for peer in peers { insert(peer) }
    }

    public mutating func insert(_ peer: Int) {
        if peer >= 0 && peer < 64 {
            low |= 1 << UInt64(peer)
        } else if !high.contains(peer) {
            high.append(peer)
        }
    }

    public func contains(_ peer: Int) -> Bool {
        peer >= 0 && peer < 64 ? low & (1 << UInt64(peer)) != 0 : high.contains(peer)
    }
}

/// A filter a peer has just started to want, and when it appeared there (the advertising
/// agent's clock, seconds since 1970): what `ReplayBuffer.replay` sends again.
public struct ReplayFilter: Equatable, Sendable {
    /// The form that matches topics (`a/+` for `$share/g/a/+`).
    public var matchFilter: String
    public var since: Double

    public init(matchFilter: String, since: Double) {
        self.matchFilter = matchFilter
        self.since = since
    }
}

/// One peer's new interest, as the agent learned it from an advert: replay what it missed.
public struct ReplayRequest: Equatable, Sendable {
    public var peer: Int
    public var filters: [ReplayFilter]

    public init(peer: Int, filters: [ReplayFilter]) {
        self.peer = peer
        self.filters = filters
    }

    /// The request for an advert's `since` map (filter text as subscribed → milliseconds),
    /// nil if it names no usable filter. Filters that do not parse are skipped: the advert
    /// decoder has already refused any that is not valid.
    public init?(peer: Int, since: [String: UInt64]) {
        var filters: [ReplayFilter] = []
        filters.reserveCapacity(since.count)
        for (text, millis) in since {
            guard let filter = try? TopicFilter(validating: text), !filter.matchFilter.isEmpty else { continue }
            filters.append(ReplayFilter(matchFilter: filter.matchFilter, since: Double(millis) / 1000))
        }
        guard !filters.isEmpty else { return nil }
        self.init(peer: peer, filters: filters)
    }
}

/// What a replay did.
public struct ReplayOutcome: Equatable, Sendable {
    /// Messages sent again (each to the one peer asked for).
    public var replayed = 0
    /// The oldest message the request could have needed was older than what the buffer still
    /// held (its window or byte limit had already let it go): some message may have been
    /// missed for good.
    public var windowExceeded = false

    public init(replayed: Int = 0, windowExceeded: Bool = false) {
        self.replayed = replayed
        self.windowExceeded = windowExceeded
    }
}

/// The messages this node's broker handed the agent in the last moments, with the peers each
/// was forwarded to: the cure for the subscribe race.
///
/// A client subscribes on B and gets its SUBACK; a client on A publishes a matching message
/// right after. A's agent routes it before B's advert of the new filter has reached it, so
/// the message goes nowhere. With the advert B's agent says when each new filter appeared
/// (`InterestAdvert.since`); A's agent then sends B, in the order they arrived, the buffered
/// messages that match it, arrived no earlier than it appeared minus a margin (clock skew
/// and B's own delay in reading its log), and were not sent to B already.
///
/// Bounded by time (`window`) and bytes (`byteLimit`); times must not decrease (`append`
/// keeps them so). Generic over the message body so the core stays free of libmosquitto.
public struct ReplayBuffer<Body> {
    public struct Entry {
        /// When it arrived (seconds since 1970, this agent's clock, never decreasing).
        public let time: Double
        public let topic: String
        /// What it costs against `byteLimit` (payload, topic, properties).
        public let size: Int
        public fileprivate(set) var sentTo: PeerSet
        public let body: Body
    }

    /// Seconds a message is kept; 0 keeps nothing (replay off).
    public let window: Double
    public let byteLimit: Int
    /// Oldest first; evicted slots before `head` are nil so their payloads are freed at once.
    private var slots: [Entry?] = []
    private var head = 0
    public private(set) var bytes = 0
    /// The newest time ever let go of: a request reaching further back may have missed one.
    private var evictedThrough = -Double.infinity
    private var lastTime = -Double.infinity
    /// Entries let go because of the byte limit before their window ran out.
    public private(set) var evictedEarly = 0

    /// Per-entry bookkeeping counted on top of the message's own bytes.
    public static var entryOverhead: Int { 64 }

    public init(window: Double, byteLimit: Int) {
        self.window = max(0, window)
        self.byteLimit = max(0, byteLimit)
    }

    public var isEnabled: Bool { window > 0 && byteLimit > 0 }
    public var count: Int { slots.count - head }

    /// Keeps a message that was routed at `time` to `sentTo`.
    public mutating func append(time: Double, topic: String, size: Int, sentTo: PeerSet, body: Body) {
        guard isEnabled else { return }
        let time = max(time, lastTime)
        lastTime = time
        expire(now: time)
        let cost = size + Self.entryOverhead
        while bytes + cost > byteLimit, head < slots.count {
            evictOldest()
            evictedEarly += 1
        }
        guard cost <= byteLimit else {
            // Larger than the whole buffer: never replayable.
            evictedThrough = max(evictedThrough, time)
            return
        }
        slots.append(Entry(time: time, topic: topic, size: cost, sentTo: sentTo, body: body))
        bytes += cost
    }

    /// Lets go of what is older than the window.
    public mutating func expire(now: Double) {
        let horizon = now - window
        while head < slots.count, let oldest = slots[head], oldest.time < horizon {
            evictOldest()
        }
    }

    private mutating func evictOldest() {
        guard let oldest = slots[head] else { return }
        slots[head] = nil
        head += 1
        bytes -= oldest.size
        evictedThrough = max(evictedThrough, oldest.time)
        if head >= 1024 && head * 2 >= slots.count {
            slots.removeFirst(head)
            head = 0
        }
    }

    /// Calls `send` for each kept message that `request`'s peer did not get and that matches
    /// one of its filters, having arrived no earlier than that filter's `since - margin`;
    /// oldest first, each marked as sent to the peer (a later request does not send it again).
    public mutating func replay(_ request: ReplayRequest, margin: Double, send: (Entry) -> Void) -> ReplayOutcome {
        var outcome = ReplayOutcome()
        guard isEnabled, !request.filters.isEmpty else { return outcome }
        let filters = request.filters.sorted { $0.since < $1.since }
        let earliest = filters[0].since - margin
        if earliest < evictedThrough { outcome.windowExceeded = true }
        // Many filters at once (a reconnect storm, `#`): one tree, from the earliest since
        // (may send a message to a filter that appeared a little after it: more, never less).
        let tree: SubscriptionTree? = filters.count > 16
            ? SubscriptionTree(filters: Dictionary(filters.map { ($0.matchFilter, 1) }, uniquingKeysWith: +))
            : nil
        var index = firstIndex(notBefore: earliest)
        while index < slots.count {
            defer { index += 1 }
            guard let entry = slots[index], !entry.sentTo.contains(request.peer) else { continue }
            let wanted: Bool
            if let tree {
                wanted = tree.matches(entry.topic)
            } else {
                wanted = filters.contains { $0.since - margin <= entry.time && Topic.matches(filter: $0.matchFilter, name: entry.topic) }
            }
            guard wanted else { continue }
            slots[index]!.sentTo.insert(request.peer)
            send(entry)
            outcome.replayed += 1
        }
        return outcome
    }

    /// Index of the first kept entry at or after `time` (times never decrease).
    private func firstIndex(notBefore time: Double) -> Int {
        var low = head, high = slots.count
        while low < high {
            let mid = (low + high) / 2
            if let entry = slots[mid], entry.time < time { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
