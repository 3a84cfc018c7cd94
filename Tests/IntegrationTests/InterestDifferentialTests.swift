import Foundation
import MeshCore
import MeshHarness
import Mosquitto
import Synchronization
import Testing

/// A differential test of the agent's picture of its broker's subscriptions.
///
/// Seeded random operations by many clients against broker B (3.1.1 and v5, clean and
/// persistent, clean disconnects, abrupt closes, takeovers, v5 session expiry, ids and
/// filters with spaces, lookalike fragments, ids and filters longer than a log line) are run
/// in batches. The truth is computed from the operations alone by `SessionModel`, a model of
/// Mosquitto 2.0.11's session rules; after each batch B's retained advert must cover the
/// truth, and equal it whenever the agent reported no doubt (no truncated or ambiguous log
/// line in the batch, and as many uncertain sessions as there are offline v5 sessions).
///
/// `MESH_DIFF_SEED=<n>` replays a run (the seed is printed at the start); `MESH_DIFF_PLAIN=1`
/// keeps to short ids and filters without spaces; `MESH_DIFF_KEEP_GOING=1` checks every batch.
/// On a failure the report names each differing filter, who holds it, and what agent b's
/// saved session table says of the sessions involved.
@Suite("interest differential", .serialized, .timeLimit(.minutes(5)))
struct InterestDifferentialTests {
    static let truncatedMetric = "mesh_log_lines_truncated_total"
    static let ambiguousMetric = "mesh_log_lines_ambiguous_total"
    static let uncertainMetric = "mesh_sessions_uncertain"

    @Test("random sessions on B: the advert covers the truth, and equals it when the agent is sure")
    func differential() async throws {
        let seed = ProcessInfo.processInfo.environment["MESH_DIFF_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64(UInt32.max))
        print("interest differential: seed \(seed) (replay with MESH_DIFF_SEED=\(seed))")
        try await withMesh(["a", "b"]) { mesh in
            let run = try await DifferentialRun(mesh: mesh, seed: seed)
            defer { run.closeAll() }
            try await run.execute(batches: 20, batchSizes: 100...200, timeBudget: .seconds(120))
        }
    }
}

// MARK: - The truth

/// Mosquitto 2.0.11's session rules (`handle_connect.c`, `context.c`, `session_expiry.c`),
/// written from the broker's source and kept apart from the agent's code.
struct SessionModel {
    enum Version: String { case v311 = "3.1.1", v5 = "v5" }

    struct Session {
        var version: Version
        var cleanStart: Bool
        /// Seconds after the connection ends; 0 ends with it, `UInt32.max` never (3.1.1 clean session 0).
        var expiry: UInt32
        var online: Bool
        var filters: Set<String> = []

        var summary: String {
            let e = expiry == .max ? "never" : "\(expiry)s"
            return "\(version.rawValue) c\(cleanStart ? 1 : 0) expiry \(e) \(online ? "online" : "offline")"
        }
    }

    private(set) var sessions: [String: Session] = [:]

    /// A connect (or a takeover of a connected id). Returns whether the broker must answer
    /// "session present": the old subscriptions move over only without clean start and if
    /// the old session has an expiry (a v5 session with expiry 0 or a 3.1.1 clean session
    /// that is taken over leaves nothing).
    mutating func connect(_ id: String, version: Version, cleanStart: Bool, expiry: UInt32) -> Bool {
        let effective: UInt32 = version == .v5 ? expiry : (cleanStart ? 0 : .max)
        let old = sessions[id]
        let resumed = !cleanStart && (old?.expiry ?? 0) > 0
        sessions[id] = Session(version: version, cleanStart: cleanStart, expiry: effective, online: true,
                               filters: resumed ? old!.filters : [])
        return resumed
    }

    mutating func subscribe(_ id: String, _ filter: String) { sessions[id]!.filters.insert(filter) }
    mutating func unsubscribe(_ id: String, _ filter: String) { sessions[id]?.filters.remove(filter) }

    /// The connection ended (cleanly or not): the session ends now if its expiry is 0.
    mutating func connectionEnded(_ id: String) {
        if sessions[id]!.expiry == 0 {
            sessions[id] = nil
        } else {
            sessions[id]!.online = false
        }
    }

    mutating func expired(_ id: String) { sessions[id] = nil }

    /// Filter → number of existing sessions (online or not) holding it.
    var interest: [String: Int] {
        var result: [String: Int] = [:]
        for s in sessions.values { for f in s.filters { result[f, default: 0] += 1 } }
        return result
    }

    var offlineV5Sessions: Int { sessions.values.filter { !$0.online && $0.version == .v5 }.count }
}

// MARK: - The broker's own log, as a witness

/// Reads B's `$SYS/broker/log/#` so that each operation can wait until the broker has done
/// it (an UNSUBSCRIBE, a DISCONNECT, a closed socket, an expiry), which keeps the order of the
/// log lines equal to the order of the operations. Its id has the mesh prefix, so the agent
/// ignores it.
final class LogWitness: Sendable {
    struct Line: Sendable {
        var topic: String
        /// Without the timestamp prefix.
        var body: [UInt8]
        /// Bytes of the whole payload (Mosquitto cuts lines at 999).
        var length: Int
    }

    private final class Store: Sendable { let lines = Mutex<[Line]>([]) }
    private let store = Store()
    private let client: HarnessClient

    init(port: Int32) async throws {
        let store = store
        client = try HarnessClient(clientID: "mosquitto-mesh/diff-witness-\(UInt32.random(in: 0...UInt32.max))", port: port,
                                   record: false, onMessage: { m in
            var payload = m.payloadBytes
            let length = payload.count
            if payload.last == UInt8(ascii: "\n") { payload.removeLast() }
            var body = payload[...]
            if let colon = payload.firstIndex(of: UInt8(ascii: ":")), colon > 0,
               payload[..<colon].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
               payload.index(after: colon) < payload.endIndex, payload[payload.index(after: colon)] == UInt8(ascii: " ") {
                body = payload[(colon + 2)...]
            }
            let line = Line(topic: m.topic, body: Array(body), length: length)
            store.lines.withLock { $0.append(line) }
        })
        try await client.connect()
        try await client.subscribe("$SYS/broker/log/#", qos: 1)
    }

    var count: Int { store.lines.withLock { $0.count } }

    /// Whether a line `text` on `topic` (or its first 999 bytes, as Mosquitto cuts it) came at or after `start`.
    func contains(topic: String, _ text: String, from start: Int) -> Bool {
        let expected = Array(text.utf8)
        return store.lines.withLock { all in
            guard start < all.count else { return false }
            return all[start...].contains { l in
                l.topic == topic && (l.body == expected || (l.length >= 990 && expected.starts(with: l.body)))
            }
        }
    }

    func waitFor(topic: String, _ text: String, from start: Int, timeout: Duration = .seconds(10)) async throws {
        do {
            try await waitUntil(timeout: timeout, "broker B to log \(shorten(text)) on \(topic)") {
                self.contains(topic: topic, text, from: start)
            }
        } catch {
            let recent = store.lines.withLock { $0[min(start, $0.count)...].suffix(6) }
            throw HarnessError("\(error); its lines since: " + recent.map { "\($0.topic) \(shorten(String(decoding: $0.body, as: UTF8.self), 120))" }.joined(separator: " | "))
        }
    }

    func close() { client.close() }
}

/// Long ids and filters, shortened for messages.
func shorten(_ s: String, _ limit: Int = 48) -> String {
    let n = s.utf8.count
    guard n > limit else { return "'\(s)'" }
    return "'\(String(decoding: s.utf8.prefix(limit / 2), as: UTF8.self))…'(\(n) bytes)"
}

// MARK: - Coverage

/// Whether every topic that `filter` matches is matched by `cover` (MQTT rules, `$` rule
/// included; a shared subscription counts as its filter, as for forwarding).
func filterCovers(_ cover: String, _ filter: String) -> Bool {
    if cover == filter { return true }
    guard let c = try? TopicFilter(validating: cover), let f = try? TopicFilter(validating: filter) else { return false }
    let slash = UInt8(ascii: "/")
    let cl = Array(c.matchFilter.utf8).split(separator: slash, omittingEmptySubsequences: false)
    let fl = Array(f.matchFilter.utf8).split(separator: slash, omittingEmptySubsequences: false)
    let hash = ArraySlice("#".utf8), plus = ArraySlice("+".utf8)
    let dollarFirst = fl.first?.first == UInt8(ascii: "$")
    for (i, level) in cl.enumerated() {
        if level == hash { return !(i == 0 && dollarFirst) }
        guard i < fl.count else { return false }
        if level == plus {
            if fl[i] == hash || (i == 0 && dollarFirst) { return false }
            continue
        }
        if level != fl[i] { return false }
    }
    return cl.count == fl.count
}

// MARK: - The run

/// One differential run: generates the operations, performs them on broker B, keeps the
/// model, and compares B's advert with it after each batch.
final class DifferentialRun {
    enum Op: CustomStringConvertible {
        case connect(id: String, version: SessionModel.Version, cleanStart: Bool, expiry: UInt32)
        case subscribe(id: String, filter: String, qos: Int32)
        case unsubscribe(id: String, filter: String)
        case disconnect(id: String)
        case abruptClose(id: String)
        case waitForExpiry

        var description: String {
            switch self {
            case .connect(let id, let v, let c, let e):
                return "connect \(shorten(id)) \(v.rawValue) c\(c ? 1 : 0)\(v == .v5 ? " expiry \(e)" : "")"
            case .subscribe(let id, let f, let q): return "subscribe \(shorten(id)) \(shorten(f)) q\(q)"
            case .unsubscribe(let id, let f): return "unsubscribe \(shorten(id)) \(shorten(f))"
            case .disconnect(let id): return "disconnect \(shorten(id))"
            case .abruptClose(let id): return "abrupt close \(shorten(id))"
            case .waitForExpiry: return "wait for expiries"
            }
        }

        var id: String? {
            switch self {
            case .connect(let id, _, _, _), .subscribe(let id, _, _), .unsubscribe(let id, _), .disconnect(let id), .abruptClose(let id):
                return id
            case .waitForExpiry: return nil
            }
        }
    }

    let mesh: MeshCluster
    let seed: UInt64
    let port: Int32
    var rng: SplitMix64
    var model = SessionModel()
    var clients: [String: HarnessClient] = [:]
    /// Offline sessions with a 1–2 s expiry → witness line count when they went offline.
    /// Their ids are not reused until the broker logged the expiry.
    var expiring: [String: Int] = [:]
    var history: [(batch: Int, op: String, id: String?)] = []
    let witness: LogWitness
    let reader: ControlReader
    let ids: [String]
    let filters: [String]
    /// Filters a lookalike's victim prefers, so that its log lines read like the lookalike's.
    let victimFilters: [String: [String]]
    static let marker = "diff-marker"
    /// `MESH_DIFF_PLAIN`: only short ids and filters without spaces, to tell session rules
    /// apart from log-line parsing.
    let plain: Bool
    /// `MESH_DIFF_KEEP_GOING`: check every batch instead of stopping at the first failing one
    /// (later failures may only repeat the first divergence).
    let keepGoing = ProcessInfo.processInfo.environment["MESH_DIFF_KEEP_GOING"] != nil

    init(mesh: MeshCluster, seed: UInt64) async throws {
        self.mesh = mesh
        self.seed = seed
        port = mesh.brokers[mesh.index(of: "b")].port
        rng = SplitMix64(seed: seed)
        witness = try await LogWitness(port: port)
        reader = try await ControlReader(port: port)

        /// ASCII only (a cut inside a UTF-8 sequence is another matter); filters get levels
        /// of 12–40 bytes, well under Mosquitto's 200-level limit.
        func longText(_ length: Int, levels: Bool, _ rng: inout SplitMix64) -> String {
            let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789 ".utf8)
            var bytes: [UInt8] = []
            var levelEnd = levels ? Int.random(in: 12...40, using: &rng) : Int.max
            while bytes.count < length {
                if bytes.count == levelEnd {
                    bytes.append(UInt8(ascii: "/"))
                    levelEnd += Int.random(in: 12...40, using: &rng)
                } else {
                    bytes.append(alphabet.randomElement(using: &rng)!)
                }
            }
            if bytes.last == UInt8(ascii: "/") { bytes[bytes.count - 1] = UInt8(ascii: "z") }
            return String(decoding: bytes, as: UTF8.self)
        }
        var ids = (0..<10).map { "c\($0)" }
        ids += [" lead", "trail ", "dou  ble", "sp ace",
                // Lookalikes: "v 1 a" subscribing "b" logs what "v" subscribing "a 1 b" logs.
                "v", "v 1 a", "v 2 a",
                "w", "w disconnected", "w disconnected due to x",
                "x", "x (p5, c1, k60)", "x (p5, c1, k60) (p2, c0, k60)",
                "y", "y closed its connection.", "z", "z 0", "ünï cødé"]
        // Long ids: one whose lines fit, one around Mosquitto's 999-byte cut, one far beyond.
        for range in [300...500, 960...1010, 1500...2000] {
            ids.append("L" + longText(Int.random(in: range, using: &rng), levels: false, &rng))
        }
        let plain = ProcessInfo.processInfo.environment["MESH_DIFF_PLAIN"] != nil
        self.plain = plain
        self.ids = plain ? ids.filter { $0.utf8.count < 100 && !$0.contains(" ") } : ids
        var filters = ["a/b", "a/+/c", "a/b/c", "s/#", "+/t", "a", "b", "a/#", "+", "+/+", "a 1 b", "1 a x", "b c",
                       " lead/x", "trail /", "x (p5, c1, k60)", "y disconnected", "ü/ß/+", "sport/tennis/+", "dup/0", "q"]
        for range in [300...600, 960...1010, 1500...2000] {
            var f = longText(Int.random(in: range, using: &rng) - 2, levels: true, &rng)
            f += Bool.random(using: &rng) ? "/#" : "/+"
            filters.append(f)
            filters.append(longText(Int.random(in: range, using: &rng), levels: true, &rng))
        }
        self.filters = plain ? filters.filter { $0.utf8.count < 100 && !$0.contains(" ") } : filters
        victimFilters = ["v": ["a 1 b", "1 a x", "a 2 b"], "x": ["(p5, c1, k60) 1 b", "(p5, c1, k60)"],
                         "w": ["disconnected", "disconnected 0 q"], "y": ["closed its connection."], "z": ["1 q", "0 q"]]
    }

    func closeAll() {
        for c in clients.values { c.close() }
        clients.removeAll()
        witness.close()
        reader.close()
    }

    func metric(_ name: String) -> Double { mesh.metric(agent: "b", name) ?? 0 }

    // MARK: generating

    func randomConnect(_ id: String) -> Op {
        if Bool.random(using: &rng) {
            return .connect(id: id, version: .v311, cleanStart: Bool.random(using: &rng), expiry: 0)
        }
        let roll = Int.random(in: 0..<100, using: &rng)
        let expiry: UInt32 = roll < 35 ? 0 : roll < 82 ? 3600 : UInt32.random(in: 1...2, using: &rng)
        return .connect(id: id, version: .v5, cleanStart: Bool.random(using: &rng), expiry: expiry)
    }

    func randomFilter(for id: String) -> String {
        if !plain, let own = victimFilters[id], Int.random(in: 0..<2, using: &rng) == 0 { return own.randomElement(using: &rng)! }
        if Int.random(in: 0..<100, using: &rng) == 0 { return "#" }
        return filters.randomElement(using: &rng)!
    }

    func nextOp() -> Op {
        let online = ids.filter { clients[$0] != nil }
        let offline = ids.filter { clients[$0] == nil && expiring[$0] == nil }
        while true {
            let roll = Int.random(in: 0..<100, using: &rng)
            switch roll {
            case 0..<22 where !offline.isEmpty:
                return randomConnect(offline.randomElement(using: &rng)!)
            case 22..<27 where !online.isEmpty:
                return randomConnect(online.randomElement(using: &rng)!) // takeover
            case 27..<65 where !online.isEmpty:
                let id = online.randomElement(using: &rng)!
                return .subscribe(id: id, filter: randomFilter(for: id), qos: Int32.random(in: 0...2, using: &rng))
            case 65..<80 where !online.isEmpty:
                let id = online.randomElement(using: &rng)!
                let held = model.sessions[id]!.filters.sorted()
                let filter = !held.isEmpty && Int.random(in: 0..<4, using: &rng) > 0 ? held.randomElement(using: &rng)! : randomFilter(for: id)
                return .unsubscribe(id: id, filter: filter)
            case 80..<89 where !online.isEmpty:
                return .disconnect(id: online.randomElement(using: &rng)!)
            case 89..<97 where !online.isEmpty:
                return .abruptClose(id: online.randomElement(using: &rng)!)
            case 97..<100 where !expiring.isEmpty:
                return .waitForExpiry
            default:
                continue
            }
        }
    }

    // MARK: performing

    func perform(_ op: Op, batch: Int) async throws {
        history.append((batch, op.description, op.id))
        switch op {
        case .connect(let id, let version, let cleanStart, let expiry):
            let c = try HarnessClient(clientID: id, port: port, cleanStart: cleanStart, sessionExpiry: expiry,
                                      protocolVersion: version == .v5 ? .v5 : .v311)
            let old = clients[id]
            // No client reconnects by itself: one taken over must stay down instead of taking
            // the session back, and a connection lost unexpectedly must fail the next operation
            // rather than come back behind the model's back.
            c.client.stopReconnecting()
            try await c.connect()
            clients[id] = c
            let present = model.connect(id, version: version, cleanStart: cleanStart, expiry: expiry)
            if c.sessionPresent != present {
                throw HarnessError("model disagrees with broker B: \(op) answered session present \(c.sessionPresent), model says \(present) (seed \(seed))")
            }
            if let old {
                try await waitUntil(timeout: .seconds(10), "taken-over \(shorten(id)) to be dropped by the broker") { !old.client.isConnected }
                old.close()
            }
        case .subscribe(let id, let filter, let qos):
            try await clients[id]!.subscribe(filter, qos: qos)
            model.subscribe(id, filter)
        case .unsubscribe(let id, let filter):
            let start = witness.count
            try clients[id]!.unsubscribe(filter)
            try await witness.waitFor(topic: LogLineParser.unsubscribeTopic, "\(id) \(filter)", from: start)
            model.unsubscribe(id, filter)
        case .disconnect(let id):
            let start = witness.count
            let c = clients.removeValue(forKey: id)!
            c.disconnect()
            try await witness.waitFor(topic: LogLineParser.noticeTopic, "Client \(id) disconnected.", from: start)
            c.close()
            ended(id, at: start)
        case .abruptClose(let id):
            let start = witness.count
            let c = clients.removeValue(forKey: id)!
            try await c.abruptClose()
            try await witness.waitFor(topic: LogLineParser.noticeTopic, "Client \(id) closed its connection.", from: start)
            ended(id, at: start)
        case .waitForExpiry:
            try await waitForExpiries()
        }
    }

    func ended(_ id: String, at start: Int) {
        model.connectionEnded(id)
        if let s = model.sessions[id], s.expiry <= 2 { expiring[id] = start }
    }

    /// Waits out every 1–2 s session expiry under way (Mosquitto checks once a second).
    func waitForExpiries() async throws {
        for (id, start) in expiring.sorted(by: { $0.key < $1.key }) {
            try await witness.waitFor(topic: LogLineParser.noticeTopic, "Expiring client \(id) due to timeout.", from: start)
            model.expired(id)
            history.append((history.last?.batch ?? 0, "expired \(shorten(id))", id))
        }
        expiring.removeAll()
    }

    // MARK: the run and its checks

    func execute(batches: Int, batchSizes: ClosedRange<Int>, timeBudget: Duration) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        try await perform(.connect(id: Self.marker, version: .v5, cleanStart: true, expiry: 0), batch: 0)
        var operations = 0
        var exactChecks = 0
        for batch in 1...batches {
            if clock.now - started > timeBudget {
                print("interest differential: time budget spent after \(batch - 1) batches")
                break
            }
            let truncatedBefore = metric(InterestDifferentialTests.truncatedMetric)
            let ambiguousBefore = metric(InterestDifferentialTests.ambiguousMetric)
            let size = Int.random(in: batchSizes, using: &rng)
            for _ in 0..<size { try await perform(nextOp(), batch: batch) }
            operations += size
            try await waitForExpiries()
            // The marker's subscribe is logged after every line of the batch: an advert that
            // holds it reflects the whole batch.
            let mark = "mark/\(batch)"
            if batch > 1 { try await perform(.unsubscribe(id: Self.marker, filter: "mark/\(batch - 1)"), batch: batch) }
            try await perform(.subscribe(id: Self.marker, filter: mark, qos: 1), batch: batch)
            let reader = reader
            try await waitUntil(timeout: .seconds(10), "advert of b to hold \(mark)") {
                (try? reader.advert(of: "b"))?.filters[mark] != nil
            }

            let truth = model.interest
            let offlineV5 = model.offlineV5Sessions
            // Bounded grace for an agent that settles a doubt a moment after the marker.
            let verdict = try await poll(timeout: .seconds(2), every: .milliseconds(50), {
                let advert = (try? reader.advert(of: "b"))?.filters ?? [:]
                let sure = metric(InterestDifferentialTests.truncatedMetric) == truncatedBefore
                    && metric(InterestDifferentialTests.ambiguousMetric) == ambiguousBefore
                    && metric(InterestDifferentialTests.uncertainMetric) == Double(offlineV5)
                return Verdict(truth: truth, advert: advert, exactRequired: sure)
            }, until: { $0.passes })
            if verdict.exactRequired { exactChecks += 1 }
            print("interest differential: batch \(batch): \(size) ops, \(truth.count) filters in \(model.sessions.count) sessions "
                  + "(\(offlineV5) offline v5), advert \(verdict.advert.count) filters, "
                  + "\(verdict.exactRequired ? "exact" : "superset") check \(verdict.passes ? "passed" : "FAILED")")
            if !verdict.passes {
                Issue.record(Comment(rawValue: failureReport(verdict, batch: batch)))
                if !keepGoing { return }
            }
        }
        print("interest differential: seed \(seed): \(operations) operations, \(exactChecks) exact checks, "
              + "\(Int((clock.now - started).components.seconds)) s")
        #expect(operations > 0)
    }

    struct Verdict {
        var truth: [String: Int]
        var advert: [String: Int]
        var exactRequired: Bool

        /// Truth filters that no advertised filter covers.
        var uncovered: [String] {
            truth.keys.filter { f in advert[f] == nil && !advert.keys.contains { filterCovers($0, f) } }.sorted()
        }
        /// Filters whose count differs, or that only one side has.
        var differing: [String] {
            Set(truth.keys).union(advert.keys).filter { truth[$0] != advert[$0] }.sorted()
        }
        var passes: Bool { uncovered.isEmpty && (!exactRequired || truth == advert) }
    }

    func failureReport(_ v: Verdict, batch: Int) -> String {
        var lines = ["interest differential, seed \(seed) (MESH_DIFF_SEED=\(seed)), batch \(batch):"]
        if !v.uncovered.isEmpty {
            lines.append("advert of b does not cover \(v.uncovered.count) filter(s) of the truth:")
        } else {
            lines.append("advert of b differs from the truth, and the agent reported no doubt (truncated/ambiguous unchanged, uncertain = \(model.offlineV5Sessions)):")
        }
        let shown = v.uncovered.isEmpty ? v.differing : v.uncovered
        for f in shown.prefix(8) {
            let holders = model.sessions.filter { $0.value.filters.contains(f) }.sorted { $0.key < $1.key }
            lines.append("  \(shorten(f)): truth \(v.truth[f] ?? 0), advert \(v.advert[f] ?? 0); held by "
                         + (holders.isEmpty ? "nobody" : holders.map { "\(shorten($0.key)) [\($0.value.summary)]" }.joined(separator: ", ")))
            // Everyone who held or touched the filter: the last operations of those ids.
            let quoted = shorten(f)
            let involved = Set(holders.map(\.key)).union(history.filter { $0.op.contains(quoted) }.compactMap(\.id))
            for id in involved.sorted().prefix(4) {
                // That id's operations from the last one naming the filter on.
                let own = history.filter { $0.id == id }
                let from = own.lastIndex { $0.op.contains(quoted) } ?? max(0, own.count - 4)
                let trace = own[from...].prefix(8)
                lines.append("      " + trace.map { "[\($0.batch)] \($0.op)" }.joined(separator: "; "))
            }
        }
        if shown.count > 8 { lines.append("  … and \(shown.count - 8) more") }
        if !v.uncovered.isEmpty {
            let extra = v.differing.filter { v.truth[$0] == nil }
            if !extra.isEmpty { lines.append("advert has filters the truth lacks: " + extra.prefix(8).map { "\(shorten($0))×\(v.advert[$0]!)" }.joined(separator: ", ")) }
        }
        lines += sessionDifferences()
        return lines.joined(separator: "\n")
    }

    /// A diagnostic, not an assertion: where agent b's own session table (as last saved in
    /// its state directory) disagrees with the model. Empty if the file cannot be read.
    func sessionDifferences() -> [String] {
        let path = mesh.agents[mesh.index(of: "b")].stateDirectory + "/state.json"
        guard let data = FileManager.default.contents(atPath: path),
              let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let table = (state["sessions"] as? [String: Any])?["sessions"] as? [String: [String: Any]] else { return [] }
        var lines: [String] = []
        for id in Set(table.keys).union(model.sessions.keys).sorted() where !id.hasPrefix("mosquitto-mesh/") {
            let agentFilters = Set(((table[id]?["filters"]) as? [String: Any])?.keys.map { $0 } ?? [])
            let modelFilters = model.sessions[id]?.filters ?? []
            guard agentFilters != modelFilters || (table[id] == nil) != (model.sessions[id] == nil) else { continue }
            let agentSession = table[id].map { "persistent \($0["persistent"] ?? "?") online \($0["online"] ?? "?")" } ?? "none"
            lines.append("  \(shorten(id)): model [\(model.sessions[id]?.summary ?? "none")], agent [\(agentSession)]"
                         + "; only in model: \(modelFilters.subtracting(agentFilters).sorted().map { shorten($0) }.joined(separator: " "))"
                         + ", only in agent: \(agentFilters.subtracting(modelFilters).sorted().map { shorten($0) }.joined(separator: " "))")
            lines.append("      last operations: " + history.filter { $0.id == id }.suffix(10).map { "[\($0.batch)] \($0.op)" }.joined(separator: "; "))
        }
        guard !lines.isEmpty else { return [] }
        return ["agent b's saved session table differs from the model (diagnostic) in \(lines.count / 2) session(s):"] + lines.prefix(20)
    }
}
