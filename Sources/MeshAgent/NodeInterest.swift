import Logging
import MeshCore
import Synchronization

/// The local node's interest: the broker's sessions as reconstructed from its log, and
/// the advert sequence. Fed from the local link's loop thread, read by the advert
/// publisher; all state behind one lock, held only for pure work.
final class NodeInterest: Sendable {
    struct State {
        var table: SessionTable
        var seq: UInt64
        var dirty: Bool = true
        var changes: UInt64 = 0
        /// Client ids that connected since the local link last reconnected: these
        /// sessions are certainly alive on the (possibly restarted) broker.
        var connectedSinceReconnect: Set<String> = []
    }

    private let state: Mutex<State>
    private let parser = LogLineParser()
    private let metrics: MeshMetrics
    private let logger: Logger
    private let unparsedThrottle = LogThrottle()

    init(table: SessionTable, seq: UInt64, metrics: MeshMetrics, logger: Logger) {
        state = Mutex(State(table: table, seq: seq))
        self.metrics = metrics
        self.logger = logger
        metrics.localFilters.set(table.interest.count)
        metrics.localSessions.set(table.sessions.count)
    }

    /// Applies one `$SYS/broker/log/...` line. Returns whether the interest changed.
    func handleLogLine(topic: String, payload: UnsafeRawBufferPointer) -> Bool {
        metrics.logLines.increment()
        let outcome = state.withLock { s -> Result<(Bool, Int, Int), LogParseError> in
            do throws(LogParseError) {
                // Borrow the table for id resolution; a copy kept alive across `apply` below
                // would force copy-on-write of every session on every log line.
                guard let event = try parser.parse(topic: topic, payload: payload, isKnownClient: { s.table.isKnownClient($0) }) else {
                    return .success((false, 0, 0))
                }
                if case .connected(let id, _, _, _, _) = event { s.connectedSinceReconnect.insert(id) }
                let changed = s.table.apply(event)
                if changed {
                    s.dirty = true
                    s.changes &+= 1
                }
                return .success((changed, s.table.interest.count, s.table.sessions.count))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let (changed, filters, sessions)):
            if changed {
                metrics.localFilters.set(filters)
                metrics.localSessions.set(sessions)
            }
            return changed
        case .failure(let error):
            metrics.logLinesUnparsed.increment()
            let (log, n) = unparsedThrottle.shouldLog()
            if log {
                logger.warning("broker log line not understood; interest unchanged", metadata: [
                    "topic": "\(error.topic)", "line": "\(error.line.prefix(300))", "reason": "\(error.reason)", "occurrence": "\(n)",
                ])
            }
            return false
        }
    }

    /// The local link reconnected: start remembering who connects from now on.
    func localLinkReconnected() {
        state.withLock { $0.connectedSinceReconnect = [] }
    }

    /// The local broker restarted: sessions that did not reconnect since are gone if
    /// clean (Mosquitto forgets them) and offline if persistent.
    func brokerRestarted() -> Bool {
        state.withLock { s in
            var changed = false
            for (id, session) in s.table.sessions where !s.connectedSinceReconnect.contains(id) {
                if s.table.apply(.disconnected(clientID: id, reason: .closed)) { changed = true }
                _ = session
            }
            if changed { s.dirty = true }
            return changed
        }
    }

    /// The next advert if anything changed since the last one (or `force`).
    func takeAdvert(node: String, force: Bool = false) -> InterestAdvert? {
        state.withLock { s in
            guard s.dirty || force else { return nil }
            s.dirty = false
            s.seq += 1
            return InterestAdvert(node: node, seq: s.seq, filters: s.table.interest)
        }
    }

    func markDirty() { state.withLock { $0.dirty = true } }

    /// How many times the interest has changed since start (the advert pacer's clock).
    var changeCount: UInt64 { state.withLock { $0.changes } }

    var snapshot: (table: SessionTable, seq: UInt64) { state.withLock { ($0.table, $0.seq) } }
}
