import Foundation
import MeshCore

/// The mesh as one broker's retained `$mesh/…` topics describe it: each node's own
/// advert, status, view and stats, plus what that broker's agent mirrored from its peers.
struct MeshPicture: Sendable {
    struct Node: Sendable, Codable, Equatable {
        var status: String?
        var seq: UInt64?
        var filters: [String: Int] = [:]
        /// "own" when read from the node's own topics, else the node whose agent mirrored it.
        var source: String = "own"
        var updated: Double?
        var stats: [String: Int]?
        var peersConnected: Int?
        /// The node's presence snapshot (`$mesh/<node>/presence`), own or mirrored.
        var presence: Presence?
        /// The node's peer links as its view (`$mesh/<node>/view`) states them.
        var links: [Link]?
        /// `prefixed` or `direct` (`--delivery`), from the node's view; nil before a view is read
        /// (or from releases before direct delivery: prefixed).
        var delivery: String?
        /// What the node adopted from lost nodes (`$mesh/<node>/adoptions`), own or mirrored.
        var adoptions: Adoptions?
    }

    struct Link: Sendable, Codable, Equatable {
        var endpoint: String
        var connected: Bool
        /// Seconds since 1970 when it went down (nil: up).
        var downSince: Double?
        /// Nodes whose own link to that peer is up while this one is down (asymmetric cut).
        var reachableVia: [String]?
    }

    struct Adoptions: Sendable, Codable, Equatable {
        struct Round: Sendable, Codable, Equatable {
            var unreachableSince: Double
            var lostAt: Double
            var adopted: Int
            var skipped: Int
            var failed: Int
            var lastAdoption: Double?
            var finished: Bool
        }
        /// Sessions it holds now that it adopted.
        var adoptedSessions: Int
        /// Lost node → its last adoption round here.
        var rounds: [String: Round]
        var source: String
    }

    /// The persistent sessions the local node shares (its retained directory shards on this
    /// broker), by client id.
    var sharedSessions: [String: SharedSession] = [:]

    struct Presence: Sendable, Codable, Equatable {
        /// Connected client id → connect time (ms; 0: before the agent's knowledge).
        var online: [String: Int64]
        var offline: Int
        var unlisted: Int
        var time: Int64
        /// "own" or the node whose agent mirrored it.
        var source: String
        var onlineCount: Int { online.count + unlisted }
    }

    var nodes: [String: Node] = [:]
    /// The node whose own advert lives on this broker (its agent's node).
    var localNode: String?
    var rejected: [String] = []

    /// Folds one retained control message into the picture. Bad payloads are listed, not fatal.
    mutating func add(topic: String, payload: [UInt8]) {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard levels.count >= 3, levels[0] == ControlTopic.root else { return }
        let owner = levels[1]
        if let (node, shard) = SessionDirectory.parseTopic(topic) {
            guard !payload.isEmpty else { return }
            do {
                for s in try SessionShardCodec.decode(payload, expectedNode: node, expectedShard: shard).sessions { sharedSessions[s.clientID] = s }
            } catch {
                rejected.append("\(topic): \(error.reason)")
            }
            return
        }
        if levels.count == 3 {
            switch levels[2] {
            case "adoptions":
                if let a = Self.adoptions(payload, source: "own") { nodes[owner, default: Node()].adoptions = a }
            case "subscriptions":
                guard !payload.isEmpty else { return }
                do {
                    let advert = try InterestAdvertCodec.decode(payload, expectedNode: owner)
                    localNode = localNode ?? owner
                    merge(owner, seq: advert.seq, filters: advert.filters, source: "own")
                } catch {
                    rejected.append("\(topic): \(error.reason)")
                }
            case "status":
                nodes[owner, default: Node()].status = String(decoding: payload, as: UTF8.self)
            case "stats":
                if let stats = MeshStatsCodec.decode(payload) {
                    nodes[owner, default: Node()].stats = stats
                    nodes[owner, default: Node()].peersConnected = stats["peers_connected"]
                    if let t = stats["time"] { noteUpdate(owner, Double(t)) }
                }
            case "presence":
                guard !payload.isEmpty else { return }
                do {
                    let p = try PresenceSnapshotCodec.decode(payload, expectedNode: owner)
                    nodes[owner, default: Node()].presence = Presence(online: p.online, offline: p.offline, unlisted: p.unlisted, time: p.time, source: "own")
                } catch {
                    rejected.append("\(topic): \(error.reason)")
                }
            case "view":
                guard let view = MeshView.decode(payload) else {
                    if !payload.isEmpty { rejected.append("\(topic): view does not decode") }
                    return
                }
                if let t = view.time { noteUpdate(owner, t) }
                nodes[owner, default: Node()].delivery = view.delivery
                nodes[owner, default: Node()].links = view.peers.map {
                    Link(endpoint: $0.endpoint, connected: $0.connected, downSince: $0.downSince, reachableVia: $0.reachableVia)
                }
            default:
                return
            }
        } else if levels.count == 5, levels[2] == "peers" {
            let node = levels[3]
            guard !payload.isEmpty else { return }
            switch levels[4] {
            case "subscriptions":
                if let advert = try? InterestAdvertCodec.decode(payload, expectedNode: node) {
                    merge(node, seq: advert.seq, filters: advert.filters, source: owner)
                } else {
                    rejected.append("\(topic): mirrored advert does not decode")
                }
            case "status":
                if nodes[node]?.source != "own" || nodes[node]?.status == nil {
                    nodes[node, default: Node()].status = String(decoding: payload, as: UTF8.self)
                }
            case "adoptions":
                if nodes[node]?.adoptions?.source != "own", let a = Self.adoptions(payload, source: owner) { nodes[node, default: Node()].adoptions = a }
            case "presence":
                guard let p = try? PresenceSnapshotCodec.decode(payload, expectedNode: node) else {
                    rejected.append("\(topic): mirrored presence does not decode")
                    return
                }
                // A node's own snapshot beats a mirror; among mirrors the newest wins.
                if let known = nodes[node]?.presence, known.source == "own" || known.time >= p.time { return }
                nodes[node, default: Node()].presence = Presence(online: p.online, offline: p.offline, unlisted: p.unlisted, time: p.time, source: owner)
            default:
                return
            }
        }
    }

    /// `{"node","time","adopted_sessions","rounds":{lost:{"unreachable_since","lost_at","adopted","skipped","failed","last_adoption"?,"finished"}}}`.
    static func adoptions(_ payload: [UInt8], source: String) -> Adoptions? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
              let count = (o["adopted_sessions"] as? NSNumber)?.intValue, let rounds = o["rounds"] as? [String: [String: Any]] else { return nil }
        var out = Adoptions(adoptedSessions: count, rounds: [:], source: source)
        for (lost, r) in rounds {
            func n(_ k: String) -> Double? { (r[k] as? NSNumber)?.doubleValue }
            guard let since = n("unreachable_since"), let at = n("lost_at") else { continue }
            out.rounds[lost] = .init(unreachableSince: since / 1000, lostAt: at / 1000, adopted: Int(n("adopted") ?? 0), skipped: Int(n("skipped") ?? 0),
                                     failed: Int(n("failed") ?? 0), lastAdoption: n("last_adoption").map { $0 / 1000 }, finished: (r["finished"] as? Bool) ?? false)
        }
        return out
    }

    private mutating func noteUpdate(_ node: String, _ time: Double) {
        let old = nodes[node]?.updated ?? 0
        nodes[node, default: Node()].updated = max(old, time)
    }

    /// A node's own advert beats a mirror; among mirrors the newest sequence wins.
    private mutating func merge(_ node: String, seq: UInt64, filters: [String: Int], source: String) {
        var n = nodes[node] ?? Node()
        let ownAlready = n.source == "own" && n.seq != nil
        if source == "own" || !ownAlready && (n.seq ?? 0) <= seq {
            n.seq = seq
            n.filters = filters
            n.source = source
        }
        nodes[node] = n
    }

    /// Where a client id is connected: node → connect time (ms; 0: not known), from the
    /// presence snapshots (each bounded, so a node with unlisted clients may not say).
    func whereConnected(_ clientID: String) -> [String: Int64] {
        var result: [String: Int64] = [:]
        for (name, node) in nodes { if let t = node.presence?.online[clientID] { result[name] = t } }
        return result
    }

    /// Which nodes a message on `topic` would be forwarded to, with the filters that match.
    func route(_ topic: String) -> [String: [String]] {
        var result: [String: [String]] = [:]
        for (name, node) in nodes {
            var tree = SubscriptionTree()
            var original: [String: [String]] = [:]
            for (f, count) in node.filters {
                guard let filter = try? TopicFilter(validating: f) else { continue }
                tree.insert(filter.matchFilter, count: count)
                original[filter.matchFilter, default: []].append(f)
            }
            let matched = tree.matchingFilters(topic).flatMap { original[$0] ?? [$0] }.sorted()
            if !matched.isEmpty && !Topic.isDollarTopic(topic) { result[name] = matched }
        }
        return result
    }
}
