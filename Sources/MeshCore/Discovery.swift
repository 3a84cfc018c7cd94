/// Discovery from one peer: which brokers an agent should link to, given what it reads.
///
/// Every message crosses one hop at most, so the mesh must be complete: a node that is not
/// linked to another neither sends it messages nor gets any from it. Operators should not
/// have to list every broker on every node for that, so an agent learns the mesh from:
/// - the **views** of the brokers it is linked to (`$mesh/<node>/view`, retained: each lists
///   the endpoints its agent links to and the node it found behind each, and whether the link
///   is up) — this is how a new node learns the existing ones from its one `--peer`;
/// - the **hellos** other agents' links publish on its own broker (`$mesh/<node>/hello`, with
///   the address their broker can be reached at) — this is how the existing nodes learn a new
///   node that linked to one of them.
///
/// Nodes are told apart by node id, never by address: one broker may be known under several
/// names, and two links to one broker would deliver every forwarded message twice. So a node
/// gets a discovered link only if no link leads to it yet, and a link whose node turns out to
/// be covered by another (or to be this node itself) is dropped.
///
/// A discovered node is kept while there is evidence that it lives — a hello from it, a link
/// of ours to it that is up, or the view of a peer we are linked to listing it as connected —
/// and forgotten `expiry` seconds after the last evidence; its link then closes. Seeds (the
/// configured peers) are never forgotten. A seed removed from the configuration (SIGHUP) is
/// not rediscovered until it is listed again: the operator said so.
///
/// Pure: the agent feeds it what it read and what its links are doing, and applies the
/// peer set it returns.
public struct Discovery: Sendable {
    /// One of the agent's current peer links, as discovery needs to see it.
    public struct Link: Sendable, Equatable {
        public var endpoint: String
        public var connected: Bool
        /// The node whose adverts this link carries, when the link's own records know it
        /// (restored interest, or an advert read) — used until the node's view is read.
        public var knownNode: String?
        /// When the link was added (seconds, any clock that `tick`'s `now` also uses).
        public var since: Double

        public init(endpoint: String, connected: Bool, knownNode: String? = nil, since: Double) {
            self.endpoint = endpoint
            self.connected = connected
            self.knownNode = knownNode
            self.since = since
        }
    }

    /// What one tick decided.
    public struct Decision: Sendable, Equatable {
        /// The peer set to apply: the seeds first, in their order, then discovered endpoints.
        public var peers: [String]
        /// Nodes forgotten in this tick (no evidence for `expiry`).
        public var expired: [String]
        /// Discovered endpoints added in this tick, with the node each was added for.
        public var added: [(endpoint: String, node: String)]
        /// Links dropped because another link already leads to their node, or they lead to
        /// this node itself: endpoint and node.
        public var duplicates: [(endpoint: String, node: String)]

        public static func == (a: Decision, b: Decision) -> Bool {
            a.peers == b.peers && a.expired == b.expired && a.added.map(\.endpoint) == b.added.map(\.endpoint)
                && a.added.map(\.node) == b.added.map(\.node) && a.duplicates.map(\.endpoint) == b.duplicates.map(\.endpoint)
                && a.duplicates.map(\.node) == b.duplicates.map(\.node)
        }
    }

    struct Candidate: Sendable {
        /// Where the node says it can be reached (its hello or its view).
        var advertised: String?
        /// Where a peer of ours reaches it (a view's peer entry), the latest seen.
        var seenAt: String?
        var lastEvidence: Double
    }

    public let ownNode: String
    /// Seconds without evidence after which a discovered node is forgotten.
    public let expiry: Double
    /// Seconds a seed link may stay unidentified (its broker not answering yet) during which
    /// no discovered link is added: the seed may be one of the nodes discovery would add under
    /// another name.
    public let identifyGrace: Double
    public private(set) var seeds: [String]
    private(set) var candidates: [String: Candidate] = [:]
    /// The latest view read through each link, by link endpoint.
    private var views: [String: DiscoveryView] = [:]
    /// Which node each discovered link was added for.
    private var addedFor: [String: String] = [:]
    public private(set) var excludedEndpoints: Set<String> = []
    public private(set) var excludedNodes: Set<String> = []

    /// - Parameter ownEndpoints: names of this node's own broker (its `--local`, its advertised
    ///   address): never linked to, whoever announces them.
    public init(ownNode: String, seeds: [String], expiry: Double, identifyGrace: Double = 5, ownEndpoints: Set<String> = []) {
        self.ownNode = ownNode
        self.seeds = seeds
        self.expiry = expiry
        self.identifyGrace = identifyGrace
        excludedEndpoints = ownEndpoints.subtracting(seeds)
    }

    /// A node an earlier run was linked to at `endpoint` (saved state): a candidate that must
    /// show signs of life within the expiry like any other.
    public mutating func remember(node: String, at endpoint: String, now: Double) {
        guard node != ownNode, candidates[node] == nil else { return }
        candidates[node] = Candidate(advertised: nil, seenAt: endpoint, lastEvidence: now)
    }

    /// The nodes currently known to discovery (not the seeds' nodes unless also learned).
    public var knownNodes: [String] { candidates.keys.sorted() }

    /// A hello read on the own broker: `hello.node` links to us and can be reached at
    /// `hello.advertise`.
    public mutating func observe(_ hello: DiscoveryHello, at now: Double) {
        guard hello.node != ownNode else { return }
        var c = candidates[hello.node] ?? Candidate(lastEvidence: now)
        if let a = hello.advertise { c.advertised = a }
        c.lastEvidence = max(c.lastEvidence, now)
        candidates[hello.node] = c
    }

    /// A view read through the link to `endpoint` (the view of the node that owns that broker).
    public mutating func observe(_ view: DiscoveryView, via endpoint: String) {
        views[endpoint] = view
    }

    /// The node behind a link: the owner of the view read through it, else what the link knows.
    public func node(behind link: Link) -> String? { views[link.endpoint]?.node ?? link.knownNode }

    /// A new seed list (configuration reload). Seeds no longer listed are excluded from
    /// discovery (by endpoint and by the node found behind them) until listed again.
    public mutating func setSeeds(_ newSeeds: [String], links: [Link]) {
        let kept = Set(newSeeds)
        for link in links where seeds.contains(link.endpoint) && !kept.contains(link.endpoint) {
            excludedEndpoints.insert(link.endpoint)
            if let n = node(behind: link), n != ownNode {
                excludedNodes.insert(n)
                candidates[n] = nil
            }
        }
        for old in seeds where !kept.contains(old) { excludedEndpoints.insert(old) }
        excludedEndpoints.subtract(kept)
        seeds = newSeeds
    }

    /// Refreshes evidence from the links, forgets nodes without evidence for `expiry`, and
    /// returns the peer set the agent should have.
    public mutating func tick(links: [Link], now: Double) -> Decision {
        let present = Set(links.map(\.endpoint))
        views = views.filter { present.contains($0.key) }
        addedFor = addedFor.filter { present.contains($0.key) }
        let seedSet = Set(seeds)

        // Evidence and candidates from what connected links show.
        for link in links where link.connected {
            if let n = node(behind: link) ?? addedFor[link.endpoint] { touch(n, now: now) }
            guard let view = views[link.endpoint] else { continue }
            if let a = view.advertise, view.node != ownNode {
                if var c = candidates[view.node] { c.advertised = a; candidates[view.node] = c }
            }
            for peer in view.peers where peer.connected {
                for n in peer.nodes where n != ownNode && !excludedNodes.contains(n) {
                    var c = candidates[n] ?? Candidate(lastEvidence: now)
                    c.seenAt = peer.endpoint
                    c.lastEvidence = now
                    candidates[n] = c
                }
            }
        }
        // A seed's node needs no discovered link; an operator who lists it again lifts its exclusion.
        var covered: Set<String> = [ownNode]
        for link in links where seedSet.contains(link.endpoint) {
            if let n = node(behind: link) {
                covered.insert(n)
                excludedNodes.remove(n)
            }
        }
        var expired: [String] = []
        for (n, c) in candidates where now - c.lastEvidence > expiry {
            candidates[n] = nil
            expired.append(n)
        }
        expired.sort()

        var peers = seeds
        var duplicates: [(endpoint: String, node: String)] = []
        // Discovered links we have: kept while their node is known, wanted and not covered.
        for link in links where !seedSet.contains(link.endpoint) {
            guard let n = node(behind: link) ?? addedFor[link.endpoint] else { continue }
            if covered.contains(n) {
                duplicates.append((link.endpoint, n))
                if n == ownNode { excludedEndpoints.insert(link.endpoint) }
                continue
            }
            guard candidates[n] != nil, !excludedNodes.contains(n), !excludedEndpoints.contains(link.endpoint) else { continue }
            peers.append(link.endpoint)
            covered.insert(n)
        }
        // New ones: only once every seed has been identified (or given its grace).
        var added: [(endpoint: String, node: String)] = []
        let seedPending = links.contains { seedSet.contains($0.endpoint) && node(behind: $0) == nil && now - $0.since < identifyGrace }
        if !seedPending {
            for n in candidates.keys.sorted() where !covered.contains(n) && !excludedNodes.contains(n) {
                let c = candidates[n]!
                guard let endpoint = c.advertised ?? c.seenAt, !excludedEndpoints.contains(endpoint), !peers.contains(endpoint) else { continue }
                peers.append(endpoint)
                addedFor[endpoint] = n
                covered.insert(n)
                added.append((endpoint, n))
            }
        }
        return Decision(peers: peers, expired: expired, added: added, duplicates: duplicates)
    }

    private mutating func touch(_ node: String, now: Double) {
        guard node != ownNode else { return }
        if var c = candidates[node] {
            c.lastEvidence = max(c.lastEvidence, now)
            candidates[node] = c
        }
    }
}

/// What discovery reads of a `$mesh/<node>/view`: the node, where it says it can be reached,
/// and for each of its links the endpoint, whether it is up and the nodes found behind it.
public struct DiscoveryView: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        public var endpoint: String
        public var connected: Bool
        public var nodes: [String]
        // Built only by `DiscoveryCodec` (and tests): the synthesised init serves.
    }
    public var node: String
    public var format: Int
    public var advertise: String?
    public var peers: [Peer]

    public init(node: String, format: Int = ControlFormat.current, advertise: String? = nil, peers: [Peer]) {
        self.node = node
        self.format = format
        self.advertise = advertise
        self.peers = peers
    }
}

/// `$mesh/<node>/hello`, published (not retained) by a node's peer links on each peer
/// broker: `{"format":2,"node":"a","advertise":"10.0.0.11:1883"}`.
public struct DiscoveryHello: Sendable, Equatable {
    public var node: String
    public var advertise: String?
    public init(node: String, advertise: String?) {
        self.node = node
        self.advertise = advertise
    }
}

extension ControlTopic {
    /// `$mesh/<node>/hello`: written by `node`'s links on the brokers they connect to.
    public static func hello(node: String) -> String { "\(root)/\(node)/hello" }
}

/// Reading and writing what discovery exchanges. Both payloads come from peers (or anyone
/// allowed to write `$mesh/#`): bounded, never trapping; an entry that does not fit is
/// skipped — for discovery the safe side is not to connect to what cannot be read.
public enum DiscoveryCodec {
    public static let maximumPayloadBytes = 4 * 1024 * 1024
    /// `host:port` text longer than this is not an address.
    public static let maximumEndpointBytes = 300

    public static func encode(_ hello: DiscoveryHello) -> [UInt8] {
        var out: [UInt8] = []
        ControlFormat.appendOpening(to: &out)
        out.append(contentsOf: #""node":"#.utf8)
        InterestAdvertCodec.appendString(hello.node, to: &out)
        if let a = hello.advertise {
            out.append(contentsOf: #","advertise":"#.utf8)
            InterestAdvertCodec.appendString(a, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func decodeHello(_ payload: some Collection<UInt8>, expectedNode: String) throws(AdvertDecodeError) -> DiscoveryHello {
        let (members, format) = try object(payload, expectedNode: expectedNode)
        guard ControlFormat.isUnderstood(format) else {
            throw AdvertDecodeError(reason: "format \(format) is not one this agent reads (\(ControlFormat.understood))")
        }
        var advertise: String?
        if case .string(let a) = members.first(where: { $0.key == "advertise" })?.value, isPlausibleEndpoint(a) { advertise = a }
        return DiscoveryHello(node: expectedNode, advertise: advertise)
    }

    /// A view as `MeshView` encodes it (any key order; `format` absent in views of releases
    /// before it, whose peers are read the same way).
    public static func decodeView(_ payload: some Collection<UInt8>, expectedNode: String) throws(AdvertDecodeError) -> DiscoveryView {
        let (members, format) = try object(payload, expectedNode: expectedNode)
        guard ControlFormat.isUnderstood(format) else {
            throw AdvertDecodeError(reason: "format \(format) is not one this agent reads (\(ControlFormat.understood))")
        }
        var view = DiscoveryView(node: expectedNode, format: format, peers: [])
        if case .string(let a) = members.first(where: { $0.key == "advertise" })?.value, isPlausibleEndpoint(a) { view.advertise = a }
        guard case .array(let peers) = members.first(where: { $0.key == "peers" })?.value else { return view }
        for entry in peers.prefix(10_000) {
            guard case .object(let fields) = entry else { continue }
            func field(_ name: String) -> JSONValue? { fields.first { $0.key == name }?.value }
            guard case .string(let endpoint) = field("endpoint"), isPlausibleEndpoint(endpoint) else { continue }
            guard case .bool(let connected) = field("connected") else { continue }
            var nodes: [String] = []
            if case .object(let nodeFields) = field("nodes") {
                nodes = nodeFields.map(\.key).filter { NodeID.isValid($0) }
            }
            view.peers.append(.init(endpoint: endpoint, connected: connected, nodes: nodes))
        }
        return view
    }

    /// `host:port` (`[v6]:port`): a printable host without spaces, a port in 1...65535.
    public static func isPlausibleEndpoint(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= maximumEndpointBytes,
              !utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "#") || $0 == UInt8(ascii: "+") }),
              let colon = text.lastIndex(of: ":") else { return false }
        let host = text[..<colon]
        guard !host.isEmpty, host != "[]", let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return false }
        return true
    }

    private static func object(_ payload: some Collection<UInt8>, expectedNode: String) throws(AdvertDecodeError) -> ([(key: String, value: JSONValue)], Int) {
        let members = try ControlPayload.members(payload, maximumBytes: maximumPayloadBytes)
        let format = try ControlFormat.version(of: members)
        guard case .string(let node) = members.first(where: { $0.key == "node" })?.value else {
            throw AdvertDecodeError(reason: "missing 'node'")
        }
        guard node.utf8.elementsEqual(expectedNode.utf8) else {
            throw AdvertDecodeError(reason: "'node' is \(InterestAdvertCodec.quoted(node)) but the topic says \(InterestAdvertCodec.quoted(expectedNode))")
        }
        return (members, format)
    }
}
