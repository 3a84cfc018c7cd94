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
        if levels.count == 3 {
            switch levels[2] {
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
                if let o = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any] {
                    var stats: [String: Int] = [:]
                    for (k, v) in o { if let n = v as? NSNumber { stats[k] = n.intValue } }
                    nodes[owner, default: Node()].stats = stats
                    nodes[owner, default: Node()].peersConnected = stats["peers_connected"]
                    if let t = stats["time"] { noteUpdate(owner, Double(t)) }
                }
            case "view":
                if let o = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
                   let t = (o["time"] as? NSNumber)?.doubleValue {
                    noteUpdate(owner, t)
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
            default:
                return
            }
        }
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
