/// Which adverts read on one peer broker are news, judged by their `seq`.
///
/// A node's agent numbers its adverts with a `seq` that only grows (it survives restarts in
/// the state file), so while a peer link watches a node continuously, an advert whose `seq`
/// is lower than the last one it accepted — or equal with other filters — is stale or replayed
/// control data (a client writing `$mesh/<node>/subscriptions` by hand, an old copy): applying
/// it would shrink or bend routing until the node's next advert. Such adverts are refused.
///
/// The floor is per process and per link (not saved), and it is lifted where a lower `seq` can
/// be genuine, because refusing a real node's adverts would stop forwarding to its subscribers
/// for good, which is worse than applying one stale advert until the next one:
/// - a node whose agent lost its state directory starts again at `seq` 1. Its agent's status
///   (`$mesh/<node>/status`) is published live as `offline` (graceful stop or the broker
///   sending its Will) and `online` (connected again) around such a restart, so a live status
///   lifts the floor for that node's next advert;
/// - after a gap in watching (this agent's start, the link's reconnect) nothing tells a node
///   that restarted without state from stale data, so the retained advert read when the link
///   (re)subscribes is the broker's current word and is taken whatever its `seq` — as it is at
///   this agent's start, where there is no floor at all.
///
/// This guards against stale and replayed adverts, not against a client that may write
/// `$mesh/#` at will (it could as well send `seq` 2^64−1 or a status): the broker's ACL
/// (`deploy/mosquitto/acl`) is what keeps those out.
public struct AdvertFloor: Sendable, Equatable {
    public enum Verdict: Equatable, Sendable {
        /// Newer than the accepted one, or the first from that node: apply it.
        case newer
        /// Not newer, but taken: read on (re)subscribe, or the node restarted since the last one.
        case restarted(previous: UInt64)
        /// The advert already applied, read again (same `seq`, same filters): nothing to do.
        case repeated
        /// Lower than the accepted `seq`, or equal with other filters: keep the accepted one.
        case stale(accepted: UInt64)
    }

    struct Entry: Sendable, Equatable {
        var seq: UInt64
        /// The node's status was seen since `seq` was accepted: its next advert is taken.
        var lifted = false
    }

    private var nodes: [String: Entry] = [:]

    public init() {}

    /// The last accepted `seq` of `node`.
    public func seq(of node: String) -> UInt64? { nodes[node]?.seq }

    /// Judges an advert of `node` and, unless it is stale or repeated, records its `seq`.
    /// - Parameters:
    ///   - sameFilters: whether its filters equal the accepted ones (asked only on an equal `seq`).
    ///   - readOnSubscribe: the broker sent it as the retained message of a new subscription
    ///     (the link has just (re)connected), not as a live publish.
    public mutating func judge(node: String, seq: UInt64, sameFilters: () -> Bool, readOnSubscribe: Bool) -> Verdict {
        guard let entry = nodes[node] else {
            nodes[node] = Entry(seq: seq)
            return .newer
        }
        if seq > entry.seq {
            nodes[node] = Entry(seq: seq)
            return .newer
        }
        if seq == entry.seq && sameFilters() { return .repeated }
        if entry.lifted || readOnSubscribe {
            nodes[node] = Entry(seq: seq)
            return .restarted(previous: entry.seq)
        }
        return .stale(accepted: entry.seq)
    }

    /// `node`'s status was published live (`offline` or `online`): its agent left or joined
    /// its broker and may have started over, so its next advert is taken whatever its `seq`.
    public mutating func statusSeen(node: String) {
        nodes[node]?.lifted = true
    }

    /// `node`'s retained advert was deleted: it left the mesh, whatever it sends next is new.
    public mutating func remove(node: String) {
        nodes[node] = nil
    }
}
