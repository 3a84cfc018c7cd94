import Foundation
import Mosquitto
import Synchronization

/// Many distinct clients that each come once, subscribe one filter and leave, several at a
/// time: what a fleet of short-lived devices does to the agent's per-client state. Every
/// client is a real libmosquitto connection (`HarnessClient`); each visit waits for the
/// CONNACK and the SUBACK, so its connect and subscribe lines are in the broker's log
/// before it leaves.
public final class ClientChurn: Sendable {
    /// How a client connects; the broker logs each differently (or not at all) when it goes.
    public enum Kind: String, Sendable, CaseIterable {
        /// MQTT 3.1.1, clean session: `(p2, c1, …)`, gone at disconnect.
        case v311Clean
        /// MQTT 5, clean start, session expiry 0: `(p5, c1, …)`, gone at disconnect.
        case v5Clean
        /// MQTT 5, clean start 0, session expiry 1 s: kept offline, then
        /// "Expiring client … due to timeout." about a second after it left.
        case v5Expiring
        /// MQTT 5, clean start 0 and no session expiry: logged `c0` like a persistent
        /// session, but Mosquitto ends the session with the connection and logs nothing
        /// more than the disconnect (expiry is not in the log).
        case v5ResumeWithoutExpiry
    }

    public let ports: [Int32]
    /// Cycled by id index; repeat a kind to weight it.
    public let kinds: [Kind]
    public let parallel: Int
    /// Makes ids distinct across runs on the same brokers.
    public let tag: String
    private let visitedCount = Atomic<Int>(0)
    private let failures = Mutex<(count: Int, first: [String])>((0, []))

    public init(ports: [Int32], kinds: [Kind], parallel: Int, tag: String = String(UInt32.random(in: 0...UInt32.max), radix: 36)) {
        precondition(!ports.isEmpty && !kinds.isEmpty && parallel > 0)
        self.ports = ports
        self.kinds = kinds
        self.parallel = parallel
        self.tag = tag
    }

    public var visited: Int { visitedCount.load(ordering: .relaxed) }
    public var failed: Int { failures.withLock { $0.count } }
    /// The first few failures, for the report.
    public var failureSamples: [String] { failures.withLock { $0.first } }

    /// A well-mixed 64-bit hash of `k` (splitmix64), so lengths, filters and brokers vary
    /// without a shared random generator.
    public static func mix(_ k: Int) -> UInt64 {
        var z = UInt64(bitPattern: Int64(k)) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Id `k` of a run: 20–100 characters, one in eight with spaces (Mosquitto accepts them,
    /// and they make the log lines ambiguous for the agent's parser).
    public static func clientID(tag: String, index k: Int) -> String {
        let h = mix(k)
        let length = 20 + Int(h % 81)
        var id = h % 8 == 0 ? "Living Room \(tag) \(k) thermostat " : "dev-\(tag)-\(k)-"
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var r = h
        while id.utf8.count < length {
            r = mix(Int(truncatingIfNeeded: r))
            id.append(alphabet[Int(r % UInt64(alphabet.count))])
        }
        return id
    }

    /// The one filter id `k` subscribes: mostly its own device topic, some wildcards, and a
    /// few shared by many clients (their interest count goes up and down, not away).
    public static func filter(index k: Int) -> String {
        let h = mix(k &+ 7_777_777)
        switch h % 20 {
        case 0..<14: return "fleet/site-\(h % 100)/dev/\(k)/temp"
        case 14..<17: return "fleet/site-\(h % 100)/+/\(k)/status"
        case 17..<19: return "cmd/\(k)/#"
        default: return "fleet/shared/alerts"
        }
    }

    public func kind(of k: Int) -> Kind { kinds[k % kinds.count] }
    public func port(of k: Int) -> Int32 { ports[Int(Self.mix(k &+ 31) % UInt64(ports.count))] }

    /// One visit: connect, subscribe (wait for the SUBACK), leave with a DISCONNECT.
    public func visit(_ k: Int) async throws {
        let kind = kind(of: k)
        let c = try HarnessClient(clientID: Self.clientID(tag: tag, index: k), port: port(of: k),
                                  cleanStart: kind == .v311Clean || kind == .v5Clean,
                                  sessionExpiry: kind == .v5Expiring ? 1 : 0,
                                  protocolVersion: kind == .v311Clean ? .v311 : .v5, record: false)
        defer { c.close() }
        try await c.connect()
        try await c.subscribe(Self.filter(index: k), qos: Int32(k % 3))
    }

    /// Visits every id in `range`, `parallel` at a time, until done or `deadline` (the ids
    /// not started by then are skipped). A failed visit is counted, not retried.
    public func run(_ range: Range<Int>, until deadline: ContinuousClock.Instant) async {
        let next = Cursor(range.lowerBound)
        let clock = ContinuousClock()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<min(parallel, range.count) {
                group.addTask {
                    while clock.now < deadline {
                        let k = next.take()
                        guard k < range.upperBound else { return }
                        do {
                            try await self.visit(k)
                        } catch {
                            self.failures.withLock { f in
                                f.count += 1
                                if f.first.count < 5 { f.first.append("id \(k): \(error)") }
                            }
                        }
                        self.visitedCount.add(1, ordering: .relaxed)
                    }
                }
            }
        }
    }
}

/// The next id to visit, shared by the workers.
private final class Cursor: Sendable {
    private let value: Atomic<Int>
    init(_ first: Int) { value = Atomic(first) }
    func take() -> Int { value.add(1, ordering: .relaxed).oldValue }
}
