import Foundation
import MeshCore

/// Reads the session directories retained on brokers (`$mesh/<node>/sessions/<shard>`), as an
/// operator would with `mosquitto_sub`: which sessions each node shares, and which it adopted.
public enum SessionDirectoryProbe {
    /// Every session each node's own directory lists, read from that node's broker.
    public static func sessions(port: Int32, host: String = "127.0.0.1") async throws -> [String: [SharedSession]] {
        let client = try HarnessClient(clientID: "mosquitto-mesh/directory-probe-\(UInt32.random(in: 0...UInt32.max))", port: port, host: host)
        defer { client.close() }
        try await client.connect()
        try await client.subscribe("\(ControlTopic.root)/+/\(SessionDirectory.kind)/+", qos: 0)
        // Retained messages are queued before the next SUBACK: once it arrives, all are in.
        try await client.subscribe("\(ControlTopic.root)/directory-probe-barrier", qos: 0)
        var latest: [String: HarnessClient.Message] = [:]
        for m in client.messages { latest[m.topic] = m }
        var out: [String: [SharedSession]] = [:]
        for (topic, m) in latest {
            guard let (node, shard) = SessionDirectory.parseTopic(topic), !m.payload.isEmpty,
                  let decoded = try? SessionShardCodec.decode(m.payload, expectedNode: node, expectedShard: shard) else { continue }
            out[node, default: []] += decoded.sessions
        }
        return out
    }

    /// Sessions adopted from `lost`, as the adopters' directories say: client id → (adopter,
    /// when the adoption completed, ms since 1970).
    public static func adoptions(from lost: String, ports: [Int32]) async throws -> [String: (node: String, time: Int64)] {
        var out: [String: (node: String, time: Int64)] = [:]
        for port in ports {
            for (node, sessions) in try await Self.sessions(port: port) {
                for s in sessions { if let a = s.adopted, a.from == lost { out[s.clientID] = (node, a.time) } }
            }
        }
        return out
    }
}
