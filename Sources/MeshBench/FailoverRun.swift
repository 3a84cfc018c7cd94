import Foundation
import Mosquitto
import MeshHarness

/// One fault the failover bench injects at a fixed time into the run.
public struct FailoverFault: Sendable {
    public enum Kind: String, Sendable {
        /// A broker dies (kill -9): the sessions and queues it held die with it.
        case broker
        /// A load balancer dies: connections through it break, every broker keeps its sessions.
        case loadBalancer = "load balancer"
        /// A node is cut off from its peers (packets dropped silently); its clients stay
        /// connected to it. The fault lasts until the next fault (its heal).
        case partition
        /// The cut ends.
        case heal
        /// A killed broker starts again from its persistence (its old sessions come back).
        case restart = "broker restart"
    }

    public var kind: Kind
    public var label: String
    /// When, counted from the start of the constant-rate stream.
    public var at: Duration
    /// For a broker kill: the HAProxy server name of that broker; the stick table read just
    /// before the kill tells which clients it held.
    public var server: String?
    public var inject: @Sendable () async throws -> Void
    /// Something to watch after the fault (e.g. "floating IP on the BACKUP"); the time it
    /// first holds is reported.
    public var observe: Observation?

    public struct Observation: Sendable {
        public var label: String
        /// Seconds after the fault within which it should hold (judged by the bench), if any.
        public var target: Double?
        public var condition: @Sendable () -> Bool
        public init(label: String, target: Double? = nil, condition: @escaping @Sendable () -> Bool) {
            self.label = label
            self.target = target
            self.condition = condition
        }
    }

    public init(kind: Kind, label: String, at: Duration, server: String? = nil, observe: Observation? = nil,
                inject: @escaping @Sendable () async throws -> Void) {
        self.kind = kind
        self.label = label
        self.at = at
        self.server = server
        self.observe = observe
        self.inject = inject
    }
}

/// What the failover bench does: constant-rate QoS 1 publishers and persistent-session
/// subscribers through one load-balancer address, and faults at fixed times.
public struct FailoverPlan: Sendable {
    public var host: String
    public var port: Int32
    public var publishers = 4
    public var subscribers = 4
    /// Messages per second per publisher.
    public var rate = 50
    public var duration: Duration = .seconds(20)
    public var faults: [FailoverFault] = []
    /// Client id → HAProxy server name (the stick table); nil when there is no admin socket.
    public var locate: (@Sendable () throws -> [String: String])?
    /// How long the end of the run waits for outstanding acknowledgements and end markers.
    public var settleTimeout: Duration = .seconds(30)
    /// Subscribers subscribe on their first connect only and never again (half MQTT 3.1.1,
    /// half MQTT 5): what survives a broker's death is then only what the mesh adopts.
    public var persistentSessions = false
    /// Where the mesh adopted each subscriber's session (client id → when the adoption
    /// completed, ms since 1970), read at the end of the run.
    public var adoptions: (@Sendable () async throws -> [String: Int64])?
    public var runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    public init(host: String, port: Int32) {
        self.host = host
        self.port = port
    }

    var capacity: Int { Int(Double(rate) * duration.seconds * 1.1) + 100 }
}

/// One fault as it happened.
public struct FaultRecord: Sendable {
    public var kind: FailoverFault.Kind
    public var label: String
    public var server: String?
    public var at: UInt64
    /// Clients HAProxy had stuck to `server` just before the kill (nil: unknown).
    public var clientsOnServer: Set<String>?
    public var observeLabel: String?
    public var observeTarget: Double?
    public var observedAt: UInt64?
}

/// Everything a failover run recorded, for `FailoverAnalysis`.
public struct FailoverRecording: Sendable {
    public var rate: Int
    public var startedAt: UInt64
    public var endedAt: UInt64
    public var faults: [FaultRecord]
    public var publishers: [PublisherRecord]
    public var subscribers: [SubscriberRecord]
    /// Problems at the end of the run (acknowledgements or markers that did not come).
    public var notes: [String]
    /// Subscribers whose session the mesh adopted → when (monotonic ns, as the other times).
    public var adoptions: [String: UInt64] = [:]
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var nanoseconds: UInt64 { UInt64(max(0, seconds * 1e9)) }
}

/// Runs a `FailoverPlan` against an already running mesh and load balancer.
public enum FailoverRunner {
    public static func run(_ plan: FailoverPlan, log: @escaping @Sendable (String) -> Void = { _ in }) async throws -> FailoverRecording {
        let base = "failover/\(plan.runID)"
        let subscribers = try (0..<plan.subscribers).map {
            try FailoverSubscriber(index: $0, clientID: "fo-\(plan.runID)-sub-\($0)", filter: base + "/#", host: plan.host,
                                   port: plan.port, publishers: plan.publishers, capacity: plan.capacity,
                                   resubscribe: !plan.persistentSessions,
                                   protocolVersion: plan.persistentSessions && $0 % 2 == 0 ? .v311 : .v5)
        }
        let publishers = try (0..<plan.publishers).map {
            try FailoverPublisher(index: $0, clientID: "fo-\(plan.runID)-pub-\($0)", topic: "\(base)/p\($0)", host: plan.host,
                                  port: plan.port, capacity: plan.capacity)
        }
        defer {
            for p in publishers { p.close() }
            for s in subscribers { s.close() }
        }
        for s in subscribers { try await s.connect(timeout: .seconds(15)) }
        for p in publishers { try await p.connect(timeout: .seconds(15)) }
        try await waitForReadiness(base: base, publishers: publishers, subscribers: subscribers)
        log("\(plan.publishers) publishers x \(plan.rate) msg/s QoS 1, \(plan.subscribers) persistent subscribers, \(plan.duration)")

        let start = monotonicNanos()
        let end = start + plan.duration.nanoseconds
        let faultRecords = LockedValue<[FaultRecord]>([])
        // Observations run beside later faults and past the end of the stream; the run
        // ends with the stream, and they are awaited (bounded) afterwards.
        let observers = LockedValue<[Task<Void, Never>]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in publishers {
                group.addTask {
                    // Open loop: the schedule does not wait for acknowledgements or connections
                    // (libmosquitto queues QoS 1 while disconnected), like real devices.
                    let perMessage = 1_000_000_000 / UInt64(plan.rate)
                    var sent: UInt64 = 0
                    while true {
                        let now = monotonicNanos()
                        if now >= end { break }
                        let due = (now - start) / perMessage + 1
                        while sent < due {
                            try p.publishNext()
                            sent += 1
                        }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
            group.addTask {
                for fault in plan.faults.sorted(by: { $0.at < $1.at }) {
                    let when = start + fault.at.nanoseconds
                    let now = monotonicNanos()
                    if when > now { try await Task.sleep(for: .nanoseconds(Int64(when - now))) }
                    var onServer: Set<String>?
                    if fault.kind == .broker, let server = fault.server, let locate = plan.locate {
                        do { onServer = Set(try locate().filter { $0.value == server }.keys) } catch { log("cannot read the stick table: \(error)") }
                    }
                    let at = monotonicNanos()
                    log("fault: \(fault.label)")
                    try await fault.inject()
                    let index = faultRecords.withLock { list -> Int in
                        list.append(FaultRecord(kind: fault.kind, label: fault.label, server: fault.server, at: at,
                                                clientsOnServer: onServer, observeLabel: fault.observe?.label,
                                                observeTarget: fault.observe?.target))
                        return list.count - 1
                    }
                    if let observe = fault.observe {
                        observers.withLock { $0.append(Task {
                            // Bounded: a minute after the fault, at most 30 s past the stream's end.
                            let deadline = min(at + 60_000_000_000, end + 30_000_000_000)
                            while monotonicNanos() < deadline {
                                if observe.condition() {
                                    let seen = monotonicNanos()
                                    faultRecords.withLock { $0[index].observedAt = seen }
                                    log("\(observe.label) after \(String(format: "%.2f", Double(seen - at) / 1e9)) s")
                                    return
                                }
                                try? await Task.sleep(for: .milliseconds(50))
                            }
                        }) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let ended = monotonicNanos()
        for o in observers.value { await o.value }
        var notes: [String] = []
        // Settle: every QoS 1 message acknowledged (libmosquitto resends the in-flight ones
        // after a reconnect), then an end marker from each publisher reaches every
        // subscriber (per-publisher order: what was acknowledged before it has arrived).
        for p in publishers {
            do {
                try await waitUntil(timeout: plan.settleTimeout, "publisher \(p.clientID) to have every message acknowledged") { p.outstanding == 0 }
            } catch { notes.append("\(error) (\(p.outstanding) outstanding)") }
        }
        for p in publishers { try p.publishExtra(topic: base + "/marker", text: "marker p\(p.index)") }
        do {
            try await waitUntil(timeout: plan.settleTimeout, "end markers at every subscriber") {
                subscribers.allSatisfy { s in publishers.allSatisfy { s.hasExtra("marker p\($0.index)") } }
            }
        } catch { notes.append("\(error)") }
        var adoptions: [String: UInt64] = [:]
        if let read = plan.adoptions {
            do {
                // Wall-clock milliseconds (the adopting agent's clock, this machine's) to monotonic.
                var ts = timespec()
                clock_gettime(CLOCK_REALTIME, &ts)
                let wallNs = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
                let offset = wallNs - Int64(monotonicNanos())
                for (id, ms) in try await read() { adoptions[id] = UInt64(max(0, ms * 1_000_000 - offset)) }
            } catch { notes.append("adoption times not read: \(error)") }
        }
        return FailoverRecording(rate: plan.rate, startedAt: start, endedAt: ended, faults: faultRecords.value,
                                 publishers: publishers.map(\.record), subscribers: subscribers.map(\.record), notes: notes,
                                 adoptions: adoptions)
    }

    /// Waits until every subscriber receives a probe from every publisher: the mesh has
    /// learnt every subscriber's interest, so the numbered stream starts with a mesh that
    /// is ready (no fixed sleep).
    private static func waitForReadiness(base: String, publishers: [FailoverPublisher], subscribers: [FailoverSubscriber]) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while true {
            let ready = subscribers.allSatisfy { s in publishers.allSatisfy { s.hasExtra("probe p\($0.index)") } }
            if ready { return }
            if clock.now >= deadline { throw HarnessError("subscribers did not receive probes from every publisher within 30 s: the mesh did not learn their interest") }
            for p in publishers { try p.publishExtra(topic: base + "/probe", text: "probe p\(p.index)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
