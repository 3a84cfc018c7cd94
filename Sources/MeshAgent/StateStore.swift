import Foundation
import MeshCore

/// What the agent must remember across its own restarts: Mosquitto restores a persistent
/// session's subscriptions without logging them, so only the agent's own copy knows them.
public struct PersistedState: Codable, Sendable, Equatable {
    public var version: Int = 1
    public var nodeID: String
    /// Last advert sequence number used; the next run continues above it.
    public var seq: UInt64
    public var sessions: SessionTable
    /// Last interest seen at each peer (endpoint → node → filters), so messages that
    /// arrive before a peer link has resynchronised are still routed.
    public var peerInterest: [String: [String: [String: Int]]]
    /// The local broker's start time as last estimated (seconds since 1970), to notice a
    /// broker restart that happened while the agent was down.
    public var brokerStartedAt: Double?
    /// When this state was written (seconds since 1970): log lines older than ~20 s are gone
    /// from the broker, so a longer gap means some may have been lost.
    public var savedAt: Double?
    /// Written by a graceful stop, after the last log line was applied. A state saved while
    /// running may miss the lines applied after it (the broker does not resend them).
    public var cleanStop: Bool?

    public init(nodeID: String, seq: UInt64, sessions: SessionTable, peerInterest: [String: [String: [String: Int]]],
                brokerStartedAt: Double?, savedAt: Double? = nil, cleanStop: Bool? = nil) {
        self.nodeID = nodeID
        self.seq = seq
        self.sessions = sessions
        self.peerInterest = peerInterest
        self.brokerStartedAt = brokerStartedAt
        self.savedAt = savedAt
        self.cleanStop = cleanStop
    }

    /// Whether log lines may have been lost since this state was written.
    public func linesMayBeLost(now: Double, lineLifetime: Double) -> Bool {
        guard cleanStop == true, let savedAt else { return true }
        return now - savedAt > lineLifetime
    }
}

extension PersistedState {
    /// The state as the JSON its `Codable` conformance reads back, written directly (the
    /// session table and peers' filters can hold hundreds of thousands of entries).
    public func encodedJSON() -> [UInt8] { encodedJSON(sessions: sessions, seq: seq) }

    /// The same with another table and sequence (the agent's live ones, encoded under their
    /// lock so that no copy of a large table is made).
    public func encodedJSON(sessions: SessionTable, seq: UInt64) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 256 + sessions.sessions.count * 160)
        w.beginObject()
        if let brokerStartedAt { w.key("brokerStartedAt"); w.double(brokerStartedAt) }
        if let cleanStop { w.key("cleanStop"); w.bool(cleanStop) }
        w.key("nodeID"); w.string(nodeID)
        w.key("peerInterest")
        w.beginObject()
        for endpoint in peerInterest.keys.sorted() {
            w.key(endpoint)
            w.beginObject()
            for (node, filters) in peerInterest[endpoint]!.sorted(by: { $0.key < $1.key }) {
                w.key(node)
                w.counts(filters)
            }
            w.endObject()
        }
        w.endObject()
        if let savedAt { w.key("savedAt"); w.double(savedAt) }
        w.key("seq"); w.uint(seq)
        w.key("sessions"); sessions.writeJSON(to: &w)
        w.key("version"); w.int(version)
        w.endObject()
        return w.bytes
    }
}

/// A state file that cannot be read or written, with the path.
public struct StateStoreError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public var description: String { "state file \(path): \(reason)" }
}

/// Reads and atomically replaces `<state-dir>/state.json` (write to a temporary file,
/// fsync, rename), so a crash mid-write leaves the previous good state.
public struct StateStore: Sendable {
    public let directory: String
    public var path: String { directory + "/state.json" }

    public init(directory: String) throws(StateStoreError) {
        self.directory = directory
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StateStoreError(path: directory, reason: "cannot create directory: \(error)")
            }
        } else if !isDirectory.boolValue {
            throw StateStoreError(path: directory, reason: "not a directory")
        }
        guard access(directory, W_OK) == 0 else {
            throw StateStoreError(path: directory, reason: "not writable")
        }
    }

    /// nil when there is no state yet; throws when the file exists but is unusable, so the
    /// operator decides (move it away) rather than the agent silently forgetting sessions.
    public func load() throws(StateStoreError) -> PersistedState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try JSONDecoder().decode(PersistedState.self, from: data)
        } catch {
            throw StateStoreError(path: path, reason: "unreadable (\(error)); move it away to start with an empty session table")
        }
    }

    public func save(_ state: PersistedState) throws(StateStoreError) {
        try save(encoded: state.encodedJSON())
    }

    /// Atomically replaces the state file with `data` (a `PersistedState.encodedJSON`).
    public func save(encoded data: [UInt8]) throws(StateStoreError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateStoreError(path: temporary, reason: "open failed: errno \(errno)") }
        let written = data.withUnsafeBytes { buffer -> Int in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { return -1 }
                offset += n
            }
            return offset
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == data.count, synced else {
            unlink(temporary)
            throw StateStoreError(path: temporary, reason: "write failed: errno \(errno)")
        }
        guard rename(temporary, path) == 0 else {
            throw StateStoreError(path: path, reason: "rename failed: errno \(errno)")
        }
    }
}
