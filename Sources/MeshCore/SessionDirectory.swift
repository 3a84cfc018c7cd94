/// Persistent sessions known mesh-wide, so that they can outlive their broker.
///
/// A session lives on one broker. When that broker dies, its clients come back through the
/// load balancer on another broker and find nothing there: a client that subscribes once, on
/// its first connect, receives nothing ever again. So every agent shares its broker's
/// persistent sessions (client id, filters with QoS, protocol, what is known of the expiry)
/// retained on its own broker, sharded by a stable hash of the client id
/// (`$mesh/<node>/sessions/<shard>`), and every peer reads them. When a node is lost, the
/// survivors *adopt* its sessions: for each, exactly one of them (rendezvous hashing over the
/// live nodes) creates it on its own broker. Everything here decides; `MeshAgent`'s
/// `SessionDirectoryService` and `AdoptionService` publish, read and connect.

/// One persistent session as its node shares it.
public struct SharedSession: Equatable, Sendable {
    /// What the node's agent knows of how long the session outlives its connection.
    public enum Expiry: String, Equatable, Sendable {
        /// MQTT 3.1/3.1.1 clean session 0: never expires.
        case never
        /// MQTT 5: the broker's log never shows the session expiry interval.
        case unknown
    }

    /// The session was created on this node by adopting it from a lost node.
    public struct Adoption: Equatable, Sendable, Codable {
        /// The node it was adopted from.
        public var from: String
        /// When the adoption completed (its subscriptions were acknowledged), ms since 1970 on
        /// the adopting node's clock.
        public var time: Int64
        public init(from: String, time: Int64) {
            self.from = from
            self.time = time
        }
    }

    public var clientID: String
    /// 4: MQTT 3.1/3.1.1 (adopted with clean session 0); 5: MQTT 5 (clean start 0 with a
    /// session expiry).
    public var protocolLevel: Int
    /// Filter text as subscribed (incl. `$share/...`) → QoS.
    public var filters: [String: Int]
    public var expiry: Expiry
    /// Some of its subscriptions were never in the log (the agent started beside a broker that
    /// already held it, or lost lines): not adopted, since a client told "session present"
    /// would trust subscriptions it does not have.
    public var filtersIncomplete: Bool
    public var adopted: Adoption?

    public init(clientID: String, protocolLevel: Int, filters: [String: Int], expiry: Expiry,
                filtersIncomplete: Bool = false, adopted: Adoption? = nil) {
        self.clientID = clientID
        self.protocolLevel = protocolLevel
        self.filters = filters
        self.expiry = expiry
        self.filtersIncomplete = filtersIncomplete
        self.adopted = adopted
    }

    /// Whether a survivor may create it when its node is lost.
    public var adoptable: Bool { !filtersIncomplete }
}

/// One shard of a node's directory: the sessions whose client id hashes to `index`.
public struct SessionShard: Equatable, Sendable {
    public var node: String
    public var index: Int
    /// How many shards the node uses (a reader drops shards it kept beyond this).
    public var count: Int
    public var sessions: [SharedSession]

    public init(node: String, index: Int, count: Int, sessions: [SharedSession]) {
        self.node = node
        self.index = index
        self.count = count
        self.sessions = sessions
    }
}

public enum SessionDirectory {
    /// Shards per node. 100 000 sessions of ~90 bytes make ~140 KB per shard: a change costs
    /// one shard, not the whole directory.
    public static let shardCount = 64
    public static let kind = "sessions"

    /// `$mesh/<node>/sessions/<shard>`. Four levels: peers subscribe `$mesh/+/sessions/+`, which
    /// matches neither the three-level own topics nor the five-level mirrors.
    public static func topic(node: String, shard: Int) -> String { "\(ControlTopic.root)/\(node)/\(kind)/\(shard)" }

    /// The node and shard of a directory topic; nil for anything else.
    public static func parseTopic(_ topic: String) -> (node: String, shard: Int)? {
        let levels = topic.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard levels.count == 4, levels[0].elementsEqual(ControlTopic.root.utf8), levels[2].elementsEqual(kind.utf8),
              let shard = Int(String(Substring(levels[3]))), shard >= 0, shard < 65_536 else { return nil }
        let node = String(Substring(levels[1]))
        guard NodeID.isValid(node) else { return nil }
        return (node, shard)
    }

    /// FNV-1a, 64 bits, over the UTF-8 bytes: stable across processes, versions and machines
    /// (Swift's `Hasher` is seeded per process).
    @inline(__always)
    public static func fnv1a(_ bytes: some Sequence<UInt8>, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// The shard of a client id.
    public static func shard(of clientID: String, count: Int = shardCount) -> Int {
        Int(fnv1a(clientID.utf8) % UInt64(count))
    }

    /// What a node shares of one session of its table; nil when it is not shared: clean
    /// sessions (they end with their connection), MQTT 5 sessions whose last connect was a
    /// clean start (`cleanStartV5`: the client will start clean again when it comes back, so a
    /// copy would be discarded at once), the mesh's own clients, the unattributed entry.
    public static func entry(id: String, session: SessionTable.Session, cleanStartV5: Bool,
                             adopted: SharedSession.Adoption?) -> SharedSession? {
        guard !session.excluded, id != SessionTable.unattributedKey else { return nil }
        switch session.lifetime {
        case .endsAtDisconnect:
            return nil
        case .survivesDisconnect:
            return SharedSession(clientID: id, protocolLevel: 4, filters: session.filters, expiry: .never,
                                 filtersIncomplete: session.filtersUnknown, adopted: adopted)
        case .unknown:
            if cleanStartV5 { return nil }
            return SharedSession(clientID: id, protocolLevel: 5, filters: session.filters, expiry: .unknown,
                                 filtersIncomplete: session.filtersUnknown, adopted: adopted)
        }
    }

    /// Every shard of a table, sessions sorted by client id (equal shards compare equal).
    /// O(sessions); the agent runs it under the table's lock only as a periodic check.
    public static func build(_ table: SessionTable, count: Int = shardCount, cleanStartV5: (String) -> Bool,
                             adopted: (String) -> SharedSession.Adoption?) -> [[SharedSession]] {
        var shards = Array(repeating: [SharedSession](), count: count)
        for (id, session) in table.sessions {
            guard let e = entry(id: id, session: session, cleanStartV5: cleanStartV5(id), adopted: adopted(id)) else { continue }
            shards[shard(of: id, count: count)].append(e)
        }
        for i in shards.indices { shards[i].sort { $0.clientID.utf8.lexicographicallyPrecedes($1.clientID.utf8) } }
        return shards
    }

    /// One shard rebuilt from the ids that may be in it (those it held, and those an event
    /// touched since): O(shard), for the changes the log shows as they happen.
    public static func rebuild(_ table: SessionTable, ids: some Sequence<String>, cleanStartV5: (String) -> Bool,
                               adopted: (String) -> SharedSession.Adoption?) -> [SharedSession] {
        var seen = Set<String>()
        var out: [SharedSession] = []
        for id in ids where seen.insert(id).inserted {
            guard let s = table.sessions[id], let e = entry(id: id, session: s, cleanStartV5: cleanStartV5(id), adopted: adopted(id)) else { continue }
            out.append(e)
        }
        out.sort { $0.clientID.utf8.lexicographicallyPrecedes($1.clientID.utf8) }
        return out
    }
}

/// JSON form of `SessionShard`, compact (100 000 sessions must stay a few MB):
/// `{"node":"a","shard":5,"of":64,"sessions":[{"id":"X","p":5,"f":{"a/+":1},"e":"unknown"},
/// {"id":"Y","p":4,"f":{},"e":"never","u":true,"a":{"from":"c","t":1764450000123}}]}`
/// (`u`: filters incomplete; `a`: adopted from a lost node). Strict like the other codecs:
/// bounded, integers told from floats, every filter validated, never traps.
public enum SessionShardCodec {
    public static let maximumPayloadBytes = 64 * 1024 * 1024

    public static func encode(_ shard: SessionShard) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 64 + shard.sessions.count * 80)
        w.beginObject()
        w.key("node"); w.string(shard.node)
        w.key("shard"); w.int(shard.index)
        w.key("of"); w.int(shard.count)
        w.key("sessions")
        w.beginArray()
        for s in shard.sessions {
            w.beginObject()
            w.key("id"); w.string(s.clientID)
            w.key("p"); w.int(s.protocolLevel)
            w.key("f")
            w.beginObject()
            for f in s.filters.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                w.key(f)
                w.int(s.filters[f]!)
            }
            w.endObject()
            w.key("e"); w.string(s.expiry.rawValue)
            if s.filtersIncomplete { w.key("u"); w.bool(true) }
            if let a = s.adopted {
                w.key("a")
                w.beginObject(); w.key("from"); w.string(a.from); w.key("t"); w.int(Int(a.time)); w.endObject()
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    public static func decode(_ payload: some Collection<UInt8>, expectedNode: String?, expectedShard: Int?) throws(AdvertDecodeError) -> SessionShard {
        let members = try ControlPayload.members(payload, maximumBytes: maximumPayloadBytes)
        func member(_ name: String, _ members: [(key: String, value: JSONValue)]) -> JSONValue? { members.first { $0.key == name }?.value }
        func integer(_ v: JSONValue?) -> Int? {
            guard case .number(let text, true) = v else { return nil }
            return Int(text)
        }
        let node = try ControlPayload.node(of: members, expected: expectedNode)
        guard let count = integer(member("of", members)), count >= 1, count <= 65_536 else {
            throw AdvertDecodeError(reason: "'of' is not a shard count in 1...65536")
        }
        guard let index = integer(member("shard", members)), index >= 0, index < count else {
            throw AdvertDecodeError(reason: "'shard' is not an integer below 'of'")
        }
        if let expectedShard, expectedShard != index {
            throw AdvertDecodeError(reason: "'shard' is \(index) but the topic says \(expectedShard)")
        }
        guard case .array(let items) = member("sessions", members) else { throw AdvertDecodeError(reason: "missing or ill-typed 'sessions'") }
        var sessions: [SharedSession] = []
        sessions.reserveCapacity(items.count)
        var ids = Set<String>()
        for (i, item) in items.enumerated() {
            guard case .object(let fields) = item else { throw AdvertDecodeError(reason: "session \(i) is not an object") }
            guard case .string(let id) = member("id", fields), ClientPresence.isUsableClientID(id) else {
                throw AdvertDecodeError(reason: "session \(i): 'id' is not a client id (1-65535 bytes, no NUL)")
            }
            guard SessionDirectory.shard(of: id, count: count) == index else {
                throw AdvertDecodeError(reason: "session \(InterestAdvertCodec.quoted(id)) does not belong to shard \(index)")
            }
            guard ids.insert(id).inserted else { throw AdvertDecodeError(reason: "session \(InterestAdvertCodec.quoted(id)) appears twice") }
            guard let p = integer(member("p", fields)), p == 4 || p == 5 else {
                throw AdvertDecodeError(reason: "session \(i): 'p' is not 4 or 5")
            }
            guard case .object(let filterMembers) = member("f", fields) else { throw AdvertDecodeError(reason: "session \(i): 'f' is not an object") }
            var filters: [String: Int] = [:]
            filters.reserveCapacity(filterMembers.count)
            for (filter, q) in filterMembers {
                do { _ = try TopicFilter(validating: filter) } catch {
                    throw AdvertDecodeError(reason: "session \(i): filter \(InterestAdvertCodec.quoted(filter)) is invalid: \(error)")
                }
                guard let qos = integer(q), (0...2).contains(qos) else {
                    throw AdvertDecodeError(reason: "session \(i): QoS of \(InterestAdvertCodec.quoted(filter)) is not 0, 1 or 2")
                }
                guard filters.updateValue(qos, forKey: filter) == nil else {
                    throw AdvertDecodeError(reason: "session \(i): filter \(InterestAdvertCodec.quoted(filter)) appears twice")
                }
            }
            guard case .string(let e) = member("e", fields), let expiry = SharedSession.Expiry(rawValue: e) else {
                throw AdvertDecodeError(reason: "session \(i): 'e' is not \"never\" or \"unknown\"")
            }
            var incomplete = false
            if let u = member("u", fields) {
                guard case .bool(let b) = u else { throw AdvertDecodeError(reason: "session \(i): 'u' is not a boolean") }
                incomplete = b
            }
            var adopted: SharedSession.Adoption?
            if let a = member("a", fields) {
                guard case .object(let af) = a, case .string(let from) = member("from", af), NodeID.isValid(from),
                      let t = integer(member("t", af)), t >= 0 else {
                    throw AdvertDecodeError(reason: "session \(i): 'a' is not {\"from\": node, \"t\": ms}")
                }
                adopted = SharedSession.Adoption(from: from, time: Int64(t))
            }
            sessions.append(SharedSession(clientID: id, protocolLevel: p, filters: filters, expiry: expiry,
                                          filtersIncomplete: incomplete, adopted: adopted))
        }
        return SessionShard(node: node, index: index, count: count, sessions: sessions)
    }
}

/// Rendezvous (highest random weight) hashing: the owner of a client id among a set of nodes
/// is the node with the highest score for (id, node). Every agent that sees the same live
/// nodes picks the same owner; removing a node moves only the ids it owned, spread evenly.
public enum Rendezvous {
    public static func score(clientID: String, node: String) -> UInt64 {
        var h = SessionDirectory.fnv1a(clientID.utf8)
        h = SessionDirectory.fnv1a(CollectionOfOne(0), seed: h)
        h = SessionDirectory.fnv1a(node.utf8, seed: h)
        // splitmix64 finaliser: FNV's low bits alone are poorly mixed for short inputs.
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }

    /// The owner of `clientID` among `nodes`; ties (never in practice) go to the node id that
    /// sorts later. Nil for no nodes.
    public static func owner(of clientID: String, among nodes: some Sequence<String>) -> String? {
        var best: (node: String, score: UInt64)?
        for node in nodes {
            let s = score(clientID: clientID, node: node)
            if let b = best, s < b.score || (s == b.score && node.utf8.lexicographicallyPrecedes(b.node.utf8)) { continue }
            best = (node, s)
        }
        return best?.node
    }
}

/// What the agent has read of its peers' directories: node → shard → sessions, with an index
/// by client id for the questions adoption asks ("does X have a session on another node?").
public struct RemoteSessions: Sendable {
    struct NodeDirectory: Sendable {
        var shardIDs: [Int: [String]] = [:]
        var sessions: [String: SharedSession] = [:]
    }

    private(set) var nodes: [String: NodeDirectory] = [:]

    public init() {}

    /// Replaces one shard of a node; a shard index at or beyond the node's new count drops the
    /// shards it had there. Returns the ids whose entry changed (added, removed or different).
    @discardableResult
    public mutating func apply(_ shard: SessionShard) -> [String] {
        var d = nodes[shard.node] ?? NodeDirectory()
        var changed: [String] = []
        for stale in d.shardIDs.keys where stale >= shard.count {
            for id in d.shardIDs[stale] ?? [] {
                d.sessions[id] = nil
                changed.append(id)
            }
            d.shardIDs[stale] = nil
        }
        let old = d.shardIDs[shard.index] ?? []
        let newIDs = Set(shard.sessions.map(\.clientID))
        for id in old where !newIDs.contains(id) {
            d.sessions[id] = nil
            changed.append(id)
        }
        for s in shard.sessions where d.sessions[s.clientID] != s {
            d.sessions[s.clientID] = s
            changed.append(s.clientID)
        }
        d.shardIDs[shard.index] = shard.sessions.map(\.clientID)
        nodes[shard.node] = d
        return changed
    }

    /// A shard deleted (empty retained payload): its sessions are gone.
    @discardableResult
    public mutating func remove(node: String, shard: Int) -> [String] {
        guard var d = nodes[node], let ids = d.shardIDs.removeValue(forKey: shard) else { return [] }
        for id in ids { d.sessions[id] = nil }
        nodes[node] = d
        return ids
    }

    /// Every session `node` shares, as last read.
    public func sessions(of node: String) -> [SharedSession] { nodes[node].map { Array($0.sessions.values) } ?? [] }

    public func session(_ clientID: String, on node: String) -> SharedSession? { nodes[node]?.sessions[clientID] }

    /// The nodes (other than those in `excluding`) whose directory lists `clientID`.
    public func holders(of clientID: String, excluding: Set<String> = []) -> [String] {
        nodes.compactMap { node, d in !excluding.contains(node) && d.sessions[clientID] != nil ? node : nil }
    }

    public func count(of node: String) -> Int { nodes[node]?.sessions.count ?? 0 }
    public var knownNodes: [String] { Array(nodes.keys) }
}

/// Which peer brokers a node's agent cannot reach, published retained on `$mesh/<node>/reach`
/// (`{"node":"b","time":1764450000123,"down":{"a":1764449990000}}`: node → since when, ms). A
/// node is adopted from only when every live agent agrees that its broker is unreachable, so
/// a link cut between two nodes (the broker itself alive) never makes one adopt the other's
/// sessions.
public struct ReachReport: Equatable, Sendable {
    public var node: String
    public var time: Int64
    public var down: [String: Int64]

    public init(node: String, time: Int64, down: [String: Int64]) {
        self.node = node
        self.time = time
        self.down = down
    }
}

public enum ReachReportCodec {
    public static let maximumPayloadBytes = 1024 * 1024

    public static func encode(_ r: ReachReport) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 64 + r.down.count * 32)
        w.beginObject()
        w.key("node"); w.string(r.node)
        w.key("time"); w.int(Int(r.time))
        w.key("down"); w.counts(r.down)
        w.endObject()
        return w.bytes
    }

    public static func decode(_ payload: some Collection<UInt8>, expectedNode: String?) throws(AdvertDecodeError) -> ReachReport {
        let members = try ControlPayload.members(payload, maximumBytes: maximumPayloadBytes)
        func member(_ name: String) -> JSONValue? { members.first { $0.key == name }?.value }
        let node = try ControlPayload.node(of: members, expected: expectedNode)
        guard case .number(let tText, true) = member("time"), let time = Int64(tText), time >= 0 else {
            throw AdvertDecodeError(reason: "'time' is not a non-negative integer")
        }
        guard case .object(let entries) = member("down") else { throw AdvertDecodeError(reason: "missing or ill-typed 'down'") }
        var down: [String: Int64] = [:]
        for (n, v) in entries {
            guard NodeID.isValid(n) else { throw AdvertDecodeError(reason: "'down' names an invalid node id") }
            guard case .number(let text, true) = v, let since = Int64(text), since >= 0 else {
                throw AdvertDecodeError(reason: "'down' time of \(InterestAdvertCodec.quoted(n)) is not a non-negative integer")
            }
            down[n] = since
        }
        return ReachReport(node: node, time: time, down: down)
    }
}

/// When the survivors adopt a node's sessions, and which of them does it.
public enum AdoptionRule {
    /// One peer as this agent sees it.
    public struct Peer: Equatable, Sendable {
        /// The node ids read on that peer's broker (normally one).
        public var nodes: [String]
        public var linkUp: Bool
        /// When the link went down (seconds since 1970); nil while up or never connected.
        public var downSince: Double?
        public init(nodes: [String], linkUp: Bool, downSince: Double?) {
            self.nodes = nodes
            self.linkUp = linkUp
            self.downSince = downSince
        }
    }

    public struct Verdict: Equatable, Sendable {
        /// This node and the nodes of its live peers, sorted: the rendezvous set.
        public var live: [String] = []
        /// Whether this agent can see a majority of the configured nodes (itself included):
        /// without it, it may be the one cut off, and must neither hold nor adopt.
        public var majority = false
        /// Nodes whose broker this agent cannot reach (link down), with since when.
        public var unreachable: [String: Double] = [:]
        /// Of those, the ones every live peer reports unreachable too (however briefly): their
        /// clients are held at the load balancer until adopted or back.
        public var agreed: [String: Double] = [:]
        /// Nodes lost: unreachable here for `adoptAfter`, and reported unreachable by every live
        /// peer.
        public var lost: [String] = []
        /// Unreachable long enough here, but some live peer still reaches it or has not said.
        public var disputed: [String] = []
    }

    /// - Parameters:
    ///   - selfUp: this agent's own broker is reachable (an agent beside a dead broker adopts nothing).
    ///   - configuredNodes: this node plus its configured peers.
    ///   - reach: what each node reported of its own links (`ReachReport`), by node.
    public static func judge(selfNode: String, selfUp: Bool, peers: [Peer], configuredNodes: Int,
                             reach: [String: ReachReport], adoptAfter: Double, now: Double) -> Verdict {
        var v = Verdict()
        guard selfUp else { return v }
        var live: Set<String> = [selfNode]
        for p in peers where p.linkUp { live.formUnion(p.nodes) }
        v.live = live.sorted()
        let livePeers = peers.filter(\.linkUp).count
        v.majority = (livePeers + 1) * 2 > max(1, configuredNodes)
        for p in peers where !p.linkUp {
            for node in p.nodes where !live.contains(node) {
                let since = p.downSince ?? now
                v.unreachable[node] = min(v.unreachable[node] ?? since, since)
            }
        }
        guard v.majority else { return v }
        for (node, since) in v.unreachable.sorted(by: { $0.key < $1.key }) {
            let agreed = v.live.allSatisfy { other in other == selfNode || reach[other]?.down[node] != nil }
            if agreed { v.agreed[node] = since }
            guard now - since >= adoptAfter else { continue }
            if agreed { v.lost.append(node) } else { v.disputed.append(node) }
        }
        return v
    }
}
