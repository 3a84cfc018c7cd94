import Foundation
import Logging
import MeshCore
import Synchronization

/// Publishes this node's persistent sessions, retained and sharded, on its own broker
/// (`$mesh/<node>/sessions/<shard>`, `SessionDirectory`), where every peer reads them: what
/// the survivors need to adopt them if this broker dies.
///
/// Changes the log shows (connect, subscribe, unsubscribe, disconnect, expiry) mark the
/// client's shard; a marked shard is rebuilt from the ids it held plus those touched (O(shard),
/// under the table's lock) and republished only if it changed, each shard at most once a
/// second and all of them within a byte budget per second (a 100 000-session directory is
/// ~10 MB: a full refresh then takes ~10 s). Sessions the table lets go without a log line
/// (census, grace, a broker restart) are caught by a rolling check of a few shards a second.
final class SessionDirectoryService: Sendable {
    /// Bytes of shards published per second at most (what each reader pays).
    static let bytesPerSecond = 1_000_000
    /// A shard is republished at most this often.
    static let shardInterval: Double = 1
    /// Shards checked per second without a log line (the rolling check).
    static let checkedPerSecond = 4
    static let turn: Duration = .milliseconds(250)
    /// How often clean-start marks of ids without a session are forgotten. Every MQTT 5 clean
    /// connect adds one: at 1 500 connects/s a minute's worth was a ~4 MB ramp in
    /// `bench churn-memory` (issue 16); five seconds' worth is a few hundred KB.
    static let prunePeriod: Duration = .seconds(5)

    struct State {
        /// What each shard holds as last published (nil: not built yet).
        var published: [[SharedSession]]?
        /// Shards touched by a log line since they were last built, with the ids touched.
        var touched: [Int: Set<String>] = [:]
        /// Client ids whose last connect was MQTT 5 with clean start: not shared (the client
        /// starts clean again when it comes back; a copy would be discarded at once).
        var cleanStartV5: Set<String> = []
        /// Every shard must be published again (the local broker may have lost its retained messages).
        var republishAll = true
        var lastPublished: [Double] = Array(repeating: 0, count: SessionDirectory.shardCount)
        var nextCheck = 0
    }

    private let node: String
    private let interest: NodeInterest
    private let metrics: MeshMetrics
    private let logger: Logger
    private let state = Mutex(State())
    /// The adoption record of a local session (`AdoptionService`): published with it, so the
    /// lost node, when it returns, knows to end its own copy.
    private let adoption: @Sendable (String) -> SharedSession.Adoption?

    init(node: String, interest: NodeInterest, metrics: MeshMetrics, logger: Logger,
         adoption: @escaping @Sendable (String) -> SharedSession.Adoption?) {
        self.node = node
        self.interest = interest
        self.metrics = metrics
        self.logger = logger
        self.adoption = adoption
    }

    /// One event of the local broker's log, after the table applied it (control link's thread,
    /// under the interest lock).
    func observe(_ event: BrokerLogEvent) {
        switch event {
        case .connected(let id, let level, let cleanStart, _, _):
            state.withLock { s in
                if level >= 5 && cleanStart { s.cleanStartV5.insert(id) } else { s.cleanStartV5.remove(id) }
                Self.touch(id, &s)
            }
        case .subscribed(let id, _, _), .unsubscribed(let id, _), .disconnected(let id, _), .expired(let id), .takenOver(let id):
            state.withLock { Self.touch(id, &$0) }
        case .ambiguous(let readings):
            state.withLock { s in for r in readings where !r.clientID.isEmpty { Self.touch(r.clientID, &s) } }
        case .truncated(let line):
            state.withLock { s in for r in line.readings where !r.clientID.isEmpty { Self.touch(r.clientID, &s) } }
        case .socketOpened:
            break
        }
    }

    private static func touch(_ id: String, _ s: inout State) {
        s.touched[SessionDirectory.shard(of: id), default: []].insert(id)
    }

    /// A local session changed outside the log (an adoption record came or went).
    func touch(_ id: String) { state.withLock { Self.touch(id, &$0) } }

    /// The local broker (re)connected: publish every shard again.
    func markRepublish() { state.withLock { $0.republishAll = true } }

    private func isCleanStartV5(_ id: String) -> Bool { state.withLock { $0.cleanStartV5.contains(id) } }

    /// Runs until cancelled. `publish` returns false when the local link is down.
    func publishLoop(publish: @Sendable (_ topic: String, _ payload: [UInt8]) -> Bool) async {
        let clock = ContinuousClock()
        var budget = Self.bytesPerSecond
        var budgetRefill = clock.now
        var nextCheck = clock.now
        var nextPrune = clock.now.advanced(by: Self.prunePeriod)
        while !Task.isCancelled {
            if clock.now >= budgetRefill {
                budget = Self.bytesPerSecond
                budgetRefill = clock.now.advanced(by: .seconds(1))
            }
            if clock.now >= nextPrune {
                nextPrune = clock.now.advanced(by: Self.prunePeriod)
                // Forget clean-start marks of ids that have no session any more (bounded memory).
                interest.withTable { table, _ in state.withLock { s in s.cleanStartV5 = s.cleanStartV5.filter { table.sessions[$0] != nil } } }
            }
            step(publish: publish, budget: &budget, check: clock.now >= nextCheck)
            if clock.now >= nextCheck { nextCheck = clock.now.advanced(by: .seconds(1)) }
            try? await Task.sleep(for: Self.turn)
        }
    }

    private func step(publish: @Sendable (_ topic: String, _ payload: [UInt8]) -> Bool, budget: inout Int, check: Bool) {
        let now = Date().timeIntervalSince1970
        if state.withLock({ $0.published == nil }) {
            // The first time: every shard, one O(sessions) pass.
            let shards = interest.withTable { table, _ in
                SessionDirectory.build(table, cleanStartV5: { self.isCleanStartV5($0) }, adopted: adoption)
            }
            state.withLock { s in
                s.published = shards
                s.republishAll = true
                s.touched = [:]
            }
        }
        // The touched shards whose turn has come, and a few for the rolling check.
        let chosen = state.withLock { s -> [Int] in
            var chosen = s.touched.keys.filter { now - s.lastPublished[$0] >= Self.shardInterval }.sorted()
            if check {
                for _ in 0..<Self.checkedPerSecond {
                    if !chosen.contains(s.nextCheck) { chosen.append(s.nextCheck) }
                    s.nextCheck = (s.nextCheck + 1) % SessionDirectory.shardCount
                }
            }
            return chosen
        }
        var outgoing: [(shard: Int, sessions: [SharedSession])] = []
        for shard in chosen {
            let ids = state.withLock { s -> [String] in
                let touched = s.touched.removeValue(forKey: shard) ?? []
                return (s.published?[shard].map(\.clientID) ?? []) + touched
            }
            let rebuilt = interest.withTable { table, _ in
                SessionDirectory.rebuild(table, ids: ids, cleanStartV5: { self.isCleanStartV5($0) }, adopted: adoption)
            }
            if state.withLock({ $0.published?[shard] != rebuilt }) { outgoing.append((shard, rebuilt)) }
        }
        let all = state.withLock { s -> [[SharedSession]]? in
            guard s.republishAll else { return nil }
            s.republishAll = false
            for o in outgoing { s.published?[o.shard] = o.sessions }
            return s.published
        }
        if let all { outgoing = all.enumerated().map { ($0.offset, $0.element) } }
        for (i, entry) in outgoing.enumerated() {
            if budget <= 0 && all == nil {
                // Over budget: the rest waits (still different from what was published, so
                // rebuilt and sent again on a later turn).
                state.withLock { s in for rest in outgoing[i...] { s.touched[rest.shard, default: []] = s.touched[rest.shard] ?? [] } }
                break
            }
            let payload = entry.sessions.isEmpty
                ? [] : SessionShardCodec.encode(SessionShard(node: node, index: entry.shard, count: SessionDirectory.shardCount, sessions: entry.sessions))
            guard publish(SessionDirectory.topic(node: node, shard: entry.shard), payload) else {
                // The local link is down: everything goes again once it is back.
                state.withLock { s in
                    for rest in outgoing[i...] { s.published?[rest.shard] = rest.sessions }
                    s.republishAll = true
                }
                break
            }
            budget -= max(payload.count, 1)
            metrics.directoryShardsPublished.increment()
            state.withLock { s in
                s.published?[entry.shard] = entry.sessions
                s.lastPublished[entry.shard] = now
            }
        }
        metrics.directorySessions.set(state.withLock { $0.published?.reduce(0) { $0 + $1.count } ?? 0 })
    }
}
