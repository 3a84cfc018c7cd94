/// One client id, one connection, across the mesh.
///
/// MQTT says a second connection with a client id takes over the first. Mosquitto does that
/// within one broker; behind a load balancer the second connection can land on another broker
/// (stickiness lost on a restart or a failover), and then both would stay connected, each with
/// its own session. So every agent announces the connects its broker logs
/// (`$mesh/<node>/connected`), and an agent that reads "X connected on B at t" ends its own
/// broker's older connection or session of X the way Mosquitto's takeover does.
///
/// Everything here decides; `MeshAgent.TakeoverService` connects and publishes.

/// A client connect as one node announces it to the others.
public struct ClientConnect: Equatable, Sendable {
    public var clientID: String
    /// When the announcing node's broker took the connection, in milliseconds since 1970 on
    /// that node's clock (see `ClientPresence.connectTime`).
    public var time: Int64
    public var cleanStart: Bool
    /// Mosquitto's protocol number as logged: 1 = MQTT 3.1, 2 = MQTT 3.1.1, 5 = MQTT 5.
    public var protocolLevel: Int

    public init(clientID: String, time: Int64, cleanStart: Bool, protocolLevel: Int) {
        self.clientID = clientID
        self.time = time
        self.cleanStart = cleanStart
        self.protocolLevel = protocolLevel
    }
}

/// A batch of connects, published non-retained (QoS 1) on `$mesh/<node>/connected`.
public struct ConnectAnnouncement: Equatable, Sendable {
    public var node: String
    public var connects: [ClientConnect]

    public init(node: String, connects: [ClientConnect]) {
        self.node = node
        self.connects = connects
    }
}

/// JSON form of `ConnectAnnouncement`:
/// `{"node":"b","connects":[{"id":"X","t":1764450000123,"c":true,"p":5}]}`.
///
/// Strict like the advert codec (these come from the network): bounded size, integers told
/// from floats, unknown keys ignored for forward compatibility, never traps.
public enum ConnectAnnouncementCodec {
    public static let maximumPayloadBytes = 8 * 1024 * 1024
    /// A batch is closed before it grows past this many bytes (a client id can be 64 KB).
    public static let batchBytes = 256 * 1024

    public static func encode(_ announcement: ConnectAnnouncement) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 32 + announcement.connects.count * 48)
        w.beginObject()
        w.key(ControlFormat.key); w.int(ControlFormat.current)
        w.key("node"); w.string(announcement.node)
        w.key("connects")
        w.beginArray()
        for c in announcement.connects { write(c, to: &w) }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    private static func write(_ c: ClientConnect, to w: inout JSONWriter) {
        w.beginObject()
        w.key("id"); w.string(c.clientID)
        w.key("t"); w.int(Int(c.time))
        w.key("c"); w.bool(c.cleanStart)
        w.key("p"); w.int(c.protocolLevel)
        w.endObject()
    }

    /// `connects` as payloads of at most about `batchBytes` each (at least one connect each), in order.
    public static func batches(node: String, connects: [ClientConnect]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0
        var size = 0
        for (i, c) in connects.enumerated() {
            let cost = c.clientID.utf8.count + 48
            if i > start && size + cost > batchBytes {
                out.append(encode(ConnectAnnouncement(node: node, connects: Array(connects[start..<i]))))
                start = i
                size = 0
            }
            size += cost
        }
        if start < connects.count { out.append(encode(ConnectAnnouncement(node: node, connects: Array(connects[start...])))) }
        return out
    }

    public static func decode(_ payload: some Collection<UInt8>, expectedNode: String?) throws(AdvertDecodeError) -> ConnectAnnouncement {
        let members = try ControlPayload.members(payload, maximumBytes: maximumPayloadBytes)
        try ControlFormat.requireUnderstood(members)
        func member(_ name: String, in members: [(key: String, value: JSONValue)]) -> JSONValue? { members.first { $0.key == name }?.value }
        let node = try ControlPayload.node(of: members, expected: expectedNode)
        guard case .array(let items) = member("connects", in: members) else { throw AdvertDecodeError(reason: "missing or ill-typed 'connects'") }
        var connects: [ClientConnect] = []
        connects.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .object(let fields) = item else { throw AdvertDecodeError(reason: "connect \(i) is not an object") }
            guard case .string(let id) = member("id", in: fields), ClientPresence.isUsableClientID(id) else {
                throw AdvertDecodeError(reason: "connect \(i): 'id' is not a client id (1-65535 bytes, no NUL)")
            }
            guard case .number(let tText, true) = member("t", in: fields), let t = Int64(tText), t >= 0 else {
                throw AdvertDecodeError(reason: "connect \(i): 't' is not a non-negative integer of milliseconds")
            }
            guard case .bool(let clean) = member("c", in: fields) else { throw AdvertDecodeError(reason: "connect \(i): 'c' is not a boolean") }
            guard case .number(let pText, true) = member("p", in: fields), let p = Int(pText), (0...255).contains(p) else {
                throw AdvertDecodeError(reason: "connect \(i): 'p' is not a protocol number")
            }
            connects.append(ClientConnect(clientID: id, time: t, cleanStart: clean, protocolLevel: p))
        }
        return ConnectAnnouncement(node: node, connects: connects)
    }
}

/// What an agent does about its own broker's client when the same id connected elsewhere.
public enum TakeoverDecision: Equatable, Sendable {
    case keep(KeepReason)
    /// The client is connected here: close that connection (its session ends with it).
    case endConnection
    /// The client is offline here but its session lives on: end the session.
    case endSession

    public enum KeepReason: String, Equatable, Sendable {
        /// No session of that id here.
        case noSession
        /// One of the mesh's own client ids: never touched.
        case meshClient
        /// This agent is already ending that client.
        case alreadyEnding
        /// The connection here is the newer one: the announcing node ends its own.
        case localNewer
        /// Too close to tell apart; the node order gives the connection to this node.
        case localWinsTie
    }

    public var ends: Bool {
        switch self {
        case .keep: return false
        case .endConnection, .endSession: return true
        }
    }
}

/// A client id's state on this node's broker, for `TakeoverRule`.
public struct LocalClient: Equatable, Sendable {
    public var online: Bool
    /// When its connection (or, offline, its last connection) was made, in ms on this node's
    /// clock; nil when the agent never read that connect (it predates what the agent knows):
    /// taken as time 0, older than any connect announced with a time (two such unknowns are
    /// ordered by node id, like equal times).
    public var connectedAt: Int64?
    public var meshClient: Bool
    public var ending: Bool

    public init(online: Bool, connectedAt: Int64?, meshClient: Bool = false, ending: Bool = false) {
        self.online = online
        self.connectedAt = connectedAt
        self.meshClient = meshClient
        self.ending = ending
    }
}

/// The rule both sides of a duplicate apply, so that exactly one connection survives.
public enum TakeoverRule {
    /// Connects this close (ms) are taken as simultaneous and ordered by node id. 0: only
    /// equal times. Any margin keeps both sides' verdicts complementary (they compare the same
    /// two numbers), but a margin also ends the *newer* of two connects closer than it: each
    /// agent times a connect when it reads the broker's log line (the broker stamps whole
    /// seconds only) on its own NTP-synced clock, which on one host is exact to the
    /// millisecond and between LAN hosts off by a few, so the times themselves are the better
    /// judge.
    public static let defaultMargin: Int64 = 0

    /// Whether the connection (or session) of `remote.clientID` here gives way to `remote`.
    ///
    /// The older connection ends; the newer one is never ended. Both nodes compare the same
    /// two times (each announces exactly the time it judges its own connection by), so their
    /// verdicts are complementary. Within `margin` the order is decided by node id: the node
    /// whose id sorts later (UTF-8 bytes) keeps its connection — again the same on both sides.
    public static func decide(remote: ClientConnect, remoteNode: String, local: LocalClient?, localNode: String,
                              margin: Int64 = defaultMargin) -> TakeoverDecision {
        guard let local else { return .keep(.noSession) }
        if local.meshClient { return .keep(.meshClient) }
        if local.ending { return .keep(.alreadyEnding) }
        let localTime = local.connectedAt ?? 0
        let (difference, overflow) = remote.time.subtractingReportingOverflow(localTime)
        let d = overflow ? (remote.time > localTime ? Int64.max : Int64.min) : difference
        if d < -margin { return .keep(.localNewer) }
        if d <= margin && !localNode.utf8.lexicographicallyPrecedes(remoteNode.utf8) { return .keep(.localWinsTie) }
        return local.online ? .endConnection : .endSession
    }
}

/// The node's own clients as the agent reads them from its broker's log: when each connected,
/// what to announce, connects read from peers lately, and the takeovers under way.
public struct ClientPresence: Sendable {
    public struct Entry: Equatable, Sendable {
        /// ms since 1970, this node's clock (`connectTime`).
        public var connectedAt: Int64
        public var online: Bool
        /// MQTT 3.1/3.1.1 clean session: gone at disconnect.
        public var endsAtDisconnect: Bool
    }

    /// How the agent's own takeover connection appears in its broker's log: MQTT 3.1.1, clean
    /// session (`p2, c1`), a keepalive of its own and the agent's username. Its connect line must
    /// not be announced (peers would end the client's real connection in turn).
    public struct Fingerprint: Equatable, Sendable {
        public var keepalive: Int
        public var username: String?
        public static let protocolLevel = 2

        public init(keepalive: Int, username: String?) {
            self.keepalive = keepalive
            self.username = username
        }

        func matches(level: Int, cleanStart: Bool, keepalive: Int, username: String?) -> Bool {
            level == Self.protocolLevel && cleanStart && keepalive == self.keepalive && username == self.username
        }
    }

    /// A takeover under way: its connect line has not been read yet, or the job has not finished.
    struct Ending: Equatable, Sendable {
        var connectSeen = false
        var finished = false
        /// ms: forgotten after this (a job that never connected leaves no line).
        var deadline: Int64
    }

    /// A connect read from a peer, kept by a digest of its client id: every connect anywhere in
    /// the mesh is kept by every agent for `remoteMemory`, and fleets use ids of 100 bytes and
    /// more, so the id itself (its storage and the dictionary's copy of it) was most of the
    /// ~400 B an entry cost. Every lookup comes with the id in hand, which rebuilds the connect.
    struct Remote: Equatable, Sendable {
        var node: String
        var time: Int64
        var receivedAt: Int64
        var protocolLevel: Int8
        var cleanStart: Bool

        init(node: String, connect: ClientConnect, receivedAt: Int64) {
            self.node = node
            time = connect.time
            self.receivedAt = receivedAt
            protocolLevel = Int8(clamping: connect.protocolLevel)
            cleanStart = connect.cleanStart
        }

        func connect(_ id: String) -> ClientConnect {
            ClientConnect(clientID: id, time: time, cleanStart: cleanStart, protocolLevel: Int(protocolLevel))
        }
    }

    /// 128 bits of a keyed hash of a client id: two ids share a digest with a chance of about
    /// 2⁻¹²⁸ per pair, far below anything else that can go wrong, and a client that could
    /// force one could as well connect with the other id (which ends that connection under
    /// MQTT's own rules). The key is the process's random hashing seed, so digests are never
    /// stored or sent.
    struct IDDigest: Hashable, Sendable {
        var high: UInt64
        var low: UInt64

        init(_ id: String) {
            var h1 = Hasher(), h2 = Hasher()
            h1.combine(0x6d65_7368 as UInt32)
            h2.combine(0x6964_7331 as UInt32)
            h1.combine(id)
            h2.combine(id)
            high = UInt64(bitPattern: Int64(h1.finalize()))
            low = UInt64(bitPattern: Int64(h2.finalize()))
        }
    }

    /// A takeover to perform: what to end, because of which connect on which node.
    public struct Takeover: Equatable, Sendable {
        public var decision: TakeoverDecision
        public var node: String
        public var connect: ClientConnect
    }

    /// What a local log event means for the mesh.
    public struct LocalOutcome: Equatable, Sendable {
        /// A real client connected: tell the peers.
        public var announce: ClientConnect?
        /// A peer had announced a newer connect of this id before this line was read: end it.
        public var takeover: Takeover?
        /// The line is the agent's own takeover connection.
        public var ownConnection = false
        public init(announce: ClientConnect? = nil, takeover: Takeover? = nil, ownConnection: Bool = false) {
            self.announce = announce
            self.takeover = takeover
            self.ownConnection = ownConnection
        }
    }

    /// How long (ms) connects read from peers are kept for a local connect line read late. The
    /// local line lags by the broker → agent log delay (milliseconds; seconds in a storm);
    /// every connect anywhere in the mesh is kept this long by every agent, so it is short:
    /// at 1 500 connects/s of 100-byte ids 30 s held ~12 MB, 10 s about a third of that, and
    /// kept by digest (`IDDigest`) about 1.2 MB.
    public static let remoteMemory: Int64 = 10_000
    /// At most this many of them (the oldest go first).
    public static let remoteLimit = 100_000
    /// How long (ms) a takeover's connect line is waited for after the job ended.
    public static let lineWait: Int64 = 10_000

    public let localNode: String
    public let fingerprint: Fingerprint
    public let margin: Int64
    public private(set) var clients: [String: Entry] = [:] { didSet { version &+= 1 } }
    /// Grows with every change of `clients`: whether a new snapshot is worth publishing.
    public private(set) var version: UInt64 = 0
    private(set) var ending: [String: Ending] = [:]
    private(set) var recentRemote: [IDDigest: Remote] = [:]
    /// Adoptions under way (`SessionDirectory`): client id → deadline (ms). The adopting agent
    /// connects with the client's id and clean start 0 to create the session here; that connect
    /// must not be announced (peers would end the client's real connection elsewhere).
    private(set) var adopting: [String: Int64] = [:]
    /// The adoption connection's keepalive: with clean start 0 and the agent's username, how its
    /// connect line is told from the client's own.
    public static let adoptionKeepalive = 53

    public init(localNode: String, fingerprint: Fingerprint, margin: Int64 = TakeoverRule.defaultMargin) {
        self.localNode = localNode
        self.fingerprint = fingerprint
        self.margin = margin
    }

    /// Mosquitto accepts client ids of 1-65535 bytes; NUL never appears in one from its log.
    public static func isUsableClientID(_ id: String) -> Bool {
        let count = id.utf8.count
        return count > 0 && count <= 65_535 && !id.utf8.contains(0)
    }

    /// The time a connect is judged by: when the agent read its log line (`receivedAt`, ms),
    /// but no later than the end of the second the broker stamped it with (`<epoch>: ` prefix),
    /// so a line read late (replayed after an agent restart) is not taken for a newer connect.
    public static func connectTime(receivedAt: Int64, line: some Collection<UInt8>) -> Int64 {
        var seconds: Int64 = 0
        var digits = 0
        var index = line.startIndex
        while index != line.endIndex, digits < 12 {
            let byte = line[index]
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { break }
            seconds = seconds * 10 + Int64(byte - UInt8(ascii: "0"))
            digits += 1
            index = line.index(after: index)
        }
        guard digits > 0, index != line.endIndex, line[index] == UInt8(ascii: ":") else { return receivedAt }
        return min(receivedAt, (seconds + 1) * 1000)
    }

    /// Applies one event of the local broker's log, after the session table has.
    public mutating func observeLocal(_ event: BrokerLogEvent, at time: Int64, isMeshClient: (String) -> Bool) -> LocalOutcome {
        switch event {
        case .connected(let id, let level, let cleanStart, let keepalive, let username):
            guard !isMeshClient(id) else { return LocalOutcome() }
            if adopting[id] != nil, !cleanStart, keepalive == Self.adoptionKeepalive, username == fingerprint.username {
                // The agent's own adoption: the session it creates here is older than any real
                // connect of this id (time 0), so the client connecting anywhere wins over it.
                adopting[id] = nil
                clients[id] = Entry(connectedAt: 0, online: true, endsAtDisconnect: false)
                return LocalOutcome(ownConnection: true)
            }
            if var e = ending[id], !e.connectSeen,
               fingerprint.matches(level: level, cleanStart: cleanStart, keepalive: keepalive, username: username) {
                // The agent's own connection: the client's session is replaced by a clean one
                // that ends with it.
                e.connectSeen = true
                ending[id] = e.finished ? nil : e
                clients[id] = nil
                return LocalOutcome(ownConnection: true)
            }
            clients[id] = Entry(connectedAt: time, online: true, endsAtDisconnect: level < 5 && cleanStart)
            var outcome = LocalOutcome(announce: ClientConnect(clientID: id, time: time, cleanStart: cleanStart, protocolLevel: level))
            if let r = recentRemote[IDDigest(id)] {
                // A peer announced this id before this line was read: judge the pair now, as the
                // peer did when it read this node's announcement (or will).
                let local = LocalClient(online: true, connectedAt: time, ending: ending[id] != nil)
                let remote = r.connect(id)
                let decision = TakeoverRule.decide(remote: remote, remoteNode: r.node, local: local, localNode: localNode, margin: margin)
                if decision.ends {
                    outcome.takeover = Takeover(decision: decision, node: r.node, connect: remote)
                    ending[id] = Ending(deadline: time + 60_000)
                }
            }
            return outcome
        case .disconnected(let id, _):
            guard var e = clients[id] else { return LocalOutcome() }
            if e.endsAtDisconnect {
                clients[id] = nil
            } else {
                e.online = false
                clients[id] = e
            }
            return LocalOutcome()
        case .expired(let id):
            clients[id] = nil
            return LocalOutcome()
        case .subscribed, .unsubscribed, .takenOver, .socketOpened, .ambiguous, .truncated:
            // A connect that reads several ways or was cut is not announced: it cannot be named.
            return LocalOutcome()
        }
    }

    /// A peer announced a connect. `session` is what the session table holds for that id
    /// (nil: no session). Returns what to do; an ending decision marks the id as being ended.
    public mutating func observeRemote(_ connect: ClientConnect, from node: String, at now: Int64,
                                       session: (online: Bool, meshClient: Bool)?) -> TakeoverDecision {
        let id = connect.clientID
        let digest = IDDigest(id)
        if let known = recentRemote[digest], known.time > connect.time {
            // Keep the newest connect per id.
        } else {
            recentRemote[digest] = Remote(node: node, connect: connect, receivedAt: now)
        }
        let decision = judge(connect, from: node, session: session, ignoringEnding: false)
        if decision.ends { ending[id] = Ending(deadline: now + 60_000) }
        return decision
    }

    /// The decision again, just before the agent connects: the client may have come back here
    /// (a newer connection) since the job was queued.
    public func recheck(_ connect: ClientConnect, from node: String, session: (online: Bool, meshClient: Bool)?) -> TakeoverDecision {
        judge(connect, from: node, session: session, ignoringEnding: true)
    }

    private func judge(_ connect: ClientConnect, from node: String, session: (online: Bool, meshClient: Bool)?,
                       ignoringEnding: Bool) -> TakeoverDecision {
        let id = connect.clientID
        let local = session.map {
            LocalClient(online: $0.online, connectedAt: clients[id]?.connectedAt, meshClient: $0.meshClient,
                        ending: !ignoringEnding && ending[id] != nil)
        }
        return TakeoverRule.decide(remote: connect, remoteNode: node, local: local, localNode: localNode, margin: margin)
    }

    /// Whether the agent is ending `id` (its takeover job is queued or running, or its connect
    /// line is still awaited).
    public func isEnding(_ id: String) -> Bool { ending[id] != nil }

    /// The agent is about to end `id` for a reason of its own (a session adopted elsewhere while
    /// this node was lost): its takeover connection is recognised like an announced takeover's.
    /// False if it is being ended already.
    public mutating func beginEnding(_ id: String, at now: Int64) -> Bool {
        guard ending[id] == nil else { return false }
        ending[id] = Ending(deadline: now + 60_000)
        return true
    }

    /// The agent is about to adopt `id` (connect with its id, clean start 0): that connect line
    /// is its own. Kept until the line is read or `deadline` (ms) passes.
    public mutating func beginAdopting(_ id: String, deadline: Int64) {
        adopting[id] = deadline
    }

    /// The most recent connect of `id` a peer announced (kept `remoteMemory`).
    public func recentlyConnected(_ id: String) -> (node: String, time: Int64)? {
        recentRemote[IDDigest(id)].map { ($0.node, $0.time) }
    }

    /// The takeover job of `id` ended (done or given up): its connect line is awaited a little
    /// longer, since the broker logged it before the CONNACK the job waited for.
    public mutating func finishEnding(_ id: String, at now: Int64) {
        guard var e = ending[id] else { return }
        if e.connectSeen {
            ending[id] = nil
        } else {
            e.finished = true
            e.deadline = now + Self.lineWait
            ending[id] = e
        }
    }

    /// Forgets what is past: expired takeover marks, connects read from peers longer ago than
    /// `remoteMemory` (or beyond `remoteLimit`), and clients the session table no longer has.
    public mutating func prune(now: Int64, hasSession: (String) -> Bool) {
        // Keys collected first: removing only what goes keeps a large table in place.
        for id in ending.compactMap({ $0.value.deadline < now ? $0.key : nil }) { ending[id] = nil }
        for id in adopting.compactMap({ $0.value < now ? $0.key : nil }) { adopting[id] = nil }
        let cutoff = now - Self.remoteMemory
        for id in recentRemote.compactMap({ $0.value.receivedAt < cutoff ? $0.key : nil }) { recentRemote[id] = nil }
        if recentRemote.count > Self.remoteLimit {
            let oldest = recentRemote.sorted { $0.value.receivedAt < $1.value.receivedAt }.prefix(recentRemote.count - Self.remoteLimit)
            for (id, _) in oldest { recentRemote[id] = nil }
        }
        for id in clients.keys.filter({ !hasSession($0) }) { clients[id] = nil }
    }
}

/// A node's clients, published retained on `$mesh/<node>/presence`: which client ids are
/// connected there and since when, how many sessions wait offline. Operators read it with
/// `inspect`; peers read it to judge connects they could not have seen announced (their link
/// was down, or an agent restarted).
public struct PresenceSnapshot: Equatable, Sendable {
    public var node: String
    /// When it was taken, ms since 1970 on that node's clock.
    public var time: Int64
    /// Connected client id → when it connected (ms, that node's clock; 0: before what its
    /// agent knows, e.g. restored from its state after a restart).
    public var online: [String: Int64]
    /// Client sessions kept offline.
    public var offline: Int
    /// Connected clients left out of `online` to keep the snapshot bounded.
    public var unlisted: Int

    public init(node: String, time: Int64, online: [String: Int64], offline: Int, unlisted: Int = 0) {
        self.node = node
        self.time = time
        self.online = online
        self.offline = offline
        self.unlisted = unlisted
    }
}

/// JSON form of `PresenceSnapshot`:
/// `{"node":"a","time":1764450000123,"offline":2,"unlisted":0,"online":{"X":1764449990000}}`
/// (ids sorted, so an unchanged snapshot is byte-identical).
public enum PresenceSnapshotCodec {
    /// 100 000 ids of ~30 bytes are ~5 MB.
    public static let maximumPayloadBytes = 64 * 1024 * 1024

    public static func encode(_ s: PresenceSnapshot) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 96 + s.online.count * 40)
        w.beginObject()
        w.key(ControlFormat.key); w.int(ControlFormat.current)
        w.key("node"); w.string(s.node)
        w.key("time"); w.int(Int(s.time))
        w.key("offline"); w.int(s.offline)
        w.key("unlisted"); w.int(s.unlisted)
        w.key("online"); w.counts(s.online, by: { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        w.endObject()
        return w.bytes
    }

    public static func decode(_ payload: some Collection<UInt8>, expectedNode: String?) throws(AdvertDecodeError) -> PresenceSnapshot {
        let members = try ControlPayload.members(payload, maximumBytes: maximumPayloadBytes)
        try ControlFormat.requireUnderstood(members)
        func member(_ name: String) -> JSONValue? { members.first { $0.key == name }?.value }
        func count(_ name: String) throws(AdvertDecodeError) -> Int {
            guard case .number(let text, true) = member(name), let n = Int(text), n >= 0 else {
                throw AdvertDecodeError(reason: "'\(name)' is not a non-negative integer")
            }
            return n
        }
        let node = try ControlPayload.node(of: members, expected: expectedNode)
        let time = Int64(try count("time"))
        let offline = try count("offline")
        let unlisted = try count("unlisted")
        guard case .object(let entries) = member("online") else { throw AdvertDecodeError(reason: "missing or ill-typed 'online'") }
        var online: [String: Int64] = [:]
        online.reserveCapacity(entries.count)
        for (id, t) in entries {
            guard ClientPresence.isUsableClientID(id) else { throw AdvertDecodeError(reason: "an 'online' key is not a client id") }
            guard case .number(let text, true) = t, let ms = Int64(text), ms >= 0 else {
                throw AdvertDecodeError(reason: "connect time of \(InterestAdvertCodec.quoted(id)) is not a non-negative integer")
            }
            guard online.updateValue(ms, forKey: id) == nil else { throw AdvertDecodeError(reason: "\(InterestAdvertCodec.quoted(id)) appears twice") }
        }
        return PresenceSnapshot(node: node, time: time, online: online, offline: offline, unlisted: unlisted)
    }
}

extension ClientPresence {
    /// At most this many connected ids are listed in a snapshot.
    public static let snapshotLimit = 100_000

    /// The node's clients as the session table holds them, with the connect times read.
    /// Sessions online whose connect this agent never read are listed at time 0 (older than
    /// any connect a peer announces).
    public func snapshot(of table: SessionTable, at now: Int64, limit: Int = snapshotLimit) -> PresenceSnapshot {
        var online: [String: Int64] = [:]
        var offline = 0
        var unlisted = 0
        for (id, session) in table.sessions where !session.excluded && id != SessionTable.unattributedKey {
            guard session.online else {
                offline += 1
                continue
            }
            if online.count < limit {
                online[id] = clients[id].map { $0.online ? $0.connectedAt : 0 } ?? 0
            } else {
                unlisted += 1
            }
        }
        return PresenceSnapshot(node: localNode, time: now, online: online, offline: offline, unlisted: unlisted)
    }

    /// A peer's snapshot: each client connected there is judged like an announced connect
    /// (an older connection or session of that id here gives way). `session` is what the session
    /// table holds for an id. Returns the takeovers to perform.
    ///
    /// A snapshot may be old, but it only names connects that happened: whatever it makes end
    /// here was older than one of them, as an announcement would have made it.
    public mutating func reconcile(_ snapshot: PresenceSnapshot, at now: Int64,
                                   session: (String) -> (online: Bool, meshClient: Bool)?) -> [Takeover] {
        var takeovers: [Takeover] = []
        for (id, time) in snapshot.online {
            guard let local = session(id) else { continue }
            let connect = ClientConnect(clientID: id, time: time, cleanStart: false, protocolLevel: 0)
            let decision = judge(connect, from: snapshot.node, session: local, ignoringEnding: false)
            guard decision.ends else { continue }
            ending[id] = Ending(deadline: now + 60_000)
            takeovers.append(Takeover(decision: decision, node: snapshot.node, connect: connect))
        }
        return takeovers
    }
}
