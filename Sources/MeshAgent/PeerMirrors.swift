/// What one peer link mirrors onto the local broker (`$mesh/<own>/peers/<node>/…`), kept so
/// that a reconnected local broker gets it again.
///
/// Pure state behind the link's lock: each change is decided under the lock and returned as
/// an `Update` to publish *after* the lock is released. The lock is taken inside the local
/// link's connect callback (`republishMirrors`), which libmosquitto runs under its callback
/// mutex — the mutex a publish on that client can take — so no thread may hold it across a
/// publish (docs/mosquitto-facts.md). Publishing outside it lets two publishes of one topic
/// cross; every version is numbered, and a publisher that finds its topic changed since it
/// decided (`superseded`) publishes the current value again, so the last value the broker
/// keeps is the current one.
struct PeerMirrors {
    struct Update: Equatable {
        let topic: String
        /// Empty: delete the retained mirror.
        let payload: [UInt8]
        let version: UInt64
    }

    /// topic → its current payload (empty: deleted) and version.
    private var entries: [String: (payload: [UInt8], version: UInt64)] = [:]
    private var lastVersion: UInt64 = 0

    /// Records `payload` (empty: deleted) for `topic`.
    mutating func set(_ topic: String, _ payload: [UInt8]) -> Update {
        lastVersion += 1
        entries[topic] = (payload, lastVersion)
        return Update(topic: topic, payload: payload, version: lastVersion)
    }

    /// Every mirror there is (the local broker has just connected).
    func all() -> [Update] {
        entries.compactMap { $0.value.payload.isEmpty ? nil : Update(topic: $0.key, payload: $0.value.payload, version: $0.value.version) }
    }

    /// Deletes every mirror (the peer left the mesh): the deletions to publish.
    mutating func clear() -> [Update] {
        entries.compactMap { $0.value.payload.isEmpty ? nil : set($0.key, []) }
    }

    /// Of `published`, the topics changed since: their current value, to publish again.
    func superseded(_ published: [Update]) -> [Update] {
        published.compactMap { update in
            guard let current = entries[update.topic], current.version != update.version else { return nil }
            return Update(topic: update.topic, payload: current.payload, version: current.version)
        }
    }
}
