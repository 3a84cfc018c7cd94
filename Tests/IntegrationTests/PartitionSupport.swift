import Foundation
import MeshCore
import MeshBench
import MeshHarness
import Mosquitto
import Synchronization
import Testing

/// Runs `body` against a fresh `NetnsMesh` and always tears it down (processes,
/// namespaces, veths); the agents' log tails are printed when it fails.
func withNetnsMesh(_ nodes: [String], label: String = #function, agentArguments: [String] = [], startsAgents: Bool = true,
                   _ body: (NetnsMesh) async throws -> Void) async throws {
    let dir = MeshCluster.temporaryDirectory("netns-" + label.filter { $0.isLetter || $0.isNumber })
    let mesh = NetnsMesh(nodes: nodes, directory: dir, agentArguments: agentArguments, startsAgents: startsAgents)
    do {
        try await mesh.start()
        try await body(mesh)
    } catch {
        for n in mesh.nodes where startsAgents { print("--- agent \(n.name) log ---\n\(mesh.agentLogTail(n.name, maxBytes: 3000))") }
        await mesh.stop()
        throw error
    }
    await mesh.stop()
    // MESH_PARTITION_KEEP=1 keeps every broker's and agent's log (the path is printed).
    if ProcessInfo.processInfo.environment["MESH_PARTITION_KEEP"] != nil { print("logs kept in \(dir)") } else { try? FileManager.default.removeItem(atPath: dir) }
}

/// A scenario length in seconds, overridable from the environment (a longer cut on a
/// quiet machine, a shorter one to iterate).
func scenarioSeconds(_ variable: String, default value: Double) -> Double {
    ProcessInfo.processInfo.environment[variable].flatMap(Double.init) ?? value
}

/// What rows 1 and 2 of the partition table cut: a node off from every peer, or the path
/// between two nodes.
enum PartitionCut {
    case node(String)
    case pair(String, String)

    func apply(_ mesh: NetnsMesh) async throws {
        switch self {
        case .node(let n): try await mesh.partition(n)
        case .pair(let a, let b): try await mesh.partition(a, b)
        }
    }

    func heal(_ mesh: NetnsMesh) async throws {
        switch self {
        case .node(let n): try await mesh.heal(n)
        case .pair(let a, let b): try await mesh.heal(a, b)
        }
    }
}

/// A run of rows 1 and 2, for the row to judge: the clients and the late subscriber (open
/// until the row returns), the sampled metrics and the moments on `timeline`.
struct InterestCutRun {
    let clients: PartitionClients
    let late: InterestProbe
    let timeline: Timeline
    let sampler: MeshSampler
    let tCut: Double
    let tSubscribed: Double
    let tHeal: Double
    let tEnd: Double
    /// What did not settle.
    let notes: [String]
}

/// The schedule rows 1 and 2 share: QoS 1 streams from each of a, b and c to each at `rate`
/// msg/s, `cut` made 5 s in and kept `seconds`, a subscription made on c `subscribeAfter`
/// seconds into the cut (then, during the cut, probes from `probeDuringCut` only), probes
/// from a and b after the heal, 5 s more streaming, the settle; then `judge`.
func withInterestCut(_ mesh: NetnsMesh, _ cut: PartitionCut, seconds: Double, rate: Int, subscribeAfter: Double,
                     probeDuringCut: [String]? = nil, _ judge: (InterestCutRun) async throws -> Void) async throws {
    let run = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    let clients = try PartitionClients(mesh, run: run, publishersOn: ["a", "b", "c"], subscribersOn: ["a", "b", "c"],
                                       capacity: Int(Double(rate) * (seconds + 30)) + 1000)
    defer { clients.close() }
    try await clients.connect()
    let late = try InterestProbe(mesh, run: run, subscriberOn: "c", sendersOn: ["a", "b"])
    defer { late.close() }

    let tl = Timeline()
    let sampler = MeshSampler(mesh, timeline: tl)
    sampler.start()
    let stream = PacedStream(clients.publishers, rate: rate)
    try await tl.sleep(until: 5)
    let tCut = tl.now
    try await cut.apply(mesh)
    try await tl.sleep(until: tCut + subscribeAfter)
    let tSubscribed = tl.seconds(try await late.subscribe())
    if let only = probeDuringCut {
        await late.probe(until: .milliseconds(Int64(max(0, tCut + seconds - tl.now) * 1000)), only: only)
    }
    try await tl.sleep(until: tCut + seconds)
    let tHeal = tl.now
    try await cut.heal(mesh)
    await late.probe(until: .seconds(30))
    try await tl.sleep(until: tHeal + 5)
    try await stream.stop()
    let notes = await clients.settle(timeout: .seconds(60))
    let tEnd = tl.now
    await sampler.stop()
    try await judge(InterestCutRun(clients: clients, late: late, timeline: tl, sampler: sampler, tCut: tCut, tSubscribed: tSubscribed,
                                   tHeal: tHeal, tEnd: tEnd, notes: notes))
}

/// Seconds since `origin` (monotonic).
struct Timeline: Sendable {
    let origin = monotonicNanos()
    var now: Double { seconds(monotonicNanos()) }
    func seconds(_ ns: UInt64) -> Double { ns == 0 ? .nan : (Double(ns) - Double(origin)) / 1e9 }
    /// Sleeps until `t` seconds on this timeline: the scenario's schedule (how long a cut
    /// lasts), not a wait standing in for an event.
    func sleep(until t: Double) async throws {
        let left = t - now
        if left > 0 { try await Task.sleep(for: .milliseconds(Int64(left * 1000))) }
    }
}

/// Samples every agent's metrics, health answer and RSS on a thread of its own (the
/// requests block; the Swift concurrency pool has two threads here) until stopped.
final class MeshSampler: Sendable {
    struct Sample: Sendable {
        var t: Double
        var metrics: [String: [String: Double]]
        var health: [String: String]
        var rss: [String: Int]
    }

    private let samples = LockedValue<[Sample]>([])
    private let stopped = Atomic<Bool>(false)
    private let finished = LockedValue(false)
    private let mesh: NetnsMesh
    private let nodes: [String]
    private let interval: Double
    private let timeline: Timeline
    private let keep: @Sendable (String) -> Bool

    init(_ mesh: NetnsMesh, nodes: [String]? = nil, interval: Double = 0.1, timeline: Timeline,
         keep: @escaping @Sendable (String) -> Bool = { $0.hasPrefix("mesh_peer_") || $0.hasPrefix("mesh_forward") || $0.hasPrefix("mesh_duplicates") }) {
        self.mesh = mesh
        self.nodes = nodes ?? mesh.nodes.map(\.name)
        self.interval = interval
        self.timeline = timeline
        self.keep = keep
    }

    func start() {
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                let t = timeline.now
                var s = Sample(t: t, metrics: [:], health: [:], rss: [:])
                for n in nodes {
                    if let m = mesh.metrics(n) { s.metrics[n] = m.filter { keep($0.key) } }
                    if let h = mesh.health(n) { s.health[n] = h }
                    if let r = mesh.agentResidentBytes(n) { s.rss[n] = r }
                }
                samples.withLock { $0.append(s) }
                let left = interval - (timeline.now - t)
                if left > 0 { usleep(UInt32(left * 1e6)) }
            }
            finished.value = true
        }
        thread.start()
    }

    func stop() async {
        stopped.store(true, ordering: .relaxed)
        try? await waitUntil(timeout: .seconds(30), "sampler to stop") { self.finished.value }
    }

    var all: [Sample] { samples.value }

    /// The first sample time at or after `after` at which `condition` holds.
    func first(after: Double, before: Double = .infinity, _ condition: (Sample) -> Bool) -> Double? {
        all.first { $0.t >= after && $0.t < before && condition($0) }?.t
    }

    /// Whether `condition` holds at any sample in [from, to).
    func any(from: Double, to: Double, _ condition: (Sample) -> Bool) -> Bool {
        all.contains { $0.t >= from && $0.t < to && condition($0) }
    }

    func maximum(from: Double, to: Double, _ value: (Sample) -> Double?) -> Double? {
        all.filter { $0.t >= from && $0.t < to }.compactMap(value).max()
    }

    func median(from: Double, to: Double, _ value: (Sample) -> Double?) -> Double? {
        let v = all.filter { $0.t >= from && $0.t < to }.compactMap(value).sorted()
        return v.isEmpty ? nil : v[v.count / 2]
    }
}

extension MeshSampler.Sample {
    /// `viewer`'s gauge or counter for peer node `peer` (labelled by the peer's mesh address).
    func value(_ viewer: String, _ name: String, peer: String, in mesh: NetnsMesh) -> Double? {
        metrics[viewer]?["\(name){peer=\"\(mesh.node(peer).peerLabel)\"}"]
    }

    func linkUp(_ viewer: String, to peer: String, in mesh: NetnsMesh) -> Bool? {
        value(viewer, "mesh_peer_link_up", peer: peer, in: mesh).map { $0 == 1 }
    }
}

/// Open-loop QoS 1 publishers at a fixed rate each (the schedule does not wait for
/// acknowledgements), like devices; stopped by `stop()`.
final class PacedStream: Sendable {
    private let stopped = LockedValue(false)
    private let task: Task<Void, Error>

    init(_ publishers: [FailoverPublisher], rate: Int) {
        let stopped = self.stopped
        task = Task {
            let perMessage = 1_000_000_000 / UInt64(rate)
            let start = monotonicNanos()
            var sent = Array(repeating: UInt64(0), count: publishers.count)
            while !stopped.value {
                let due = (monotonicNanos() - start) / perMessage + 1
                for (i, p) in publishers.enumerated() {
                    while sent[i] < due {
                        try p.publishNext()
                        sent[i] += 1
                    }
                }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    func stop() async throws {
        stopped.value = true
        try await task.value
    }
}

/// The clients of a partition scenario: numbered QoS 1 publishers and counting subscribers,
/// each on the access link of its own node (the node's side of any cut).
struct PartitionClients {
    let base: String
    let publishers: [FailoverPublisher]
    let subscribers: [FailoverSubscriber]
    /// Node of each publisher / subscriber, by index.
    let publisherNodes: [String]
    let subscriberNodes: [String]

    init(_ mesh: NetnsMesh, run: String, publishersOn: [String], subscribersOn: [String], capacity: Int) throws {
        base = "part/\(run)"
        publisherNodes = publishersOn
        subscriberNodes = subscribersOn
        let base = self.base
        subscribers = try subscribersOn.enumerated().map { i, node in
            try FailoverSubscriber(index: i, clientID: "pt-\(run)-s\(i)-\(node)", filter: base + "/#", host: mesh.node(node).accessAddress,
                                   port: NetnsMesh.mqttPort, publishers: publishersOn.count, capacity: capacity)
        }
        publishers = try publishersOn.enumerated().map { i, node in
            try FailoverPublisher(index: i, clientID: "pt-\(run)-p\(i)-\(node)", topic: "\(base)/p\(i)", host: mesh.node(node).accessAddress,
                                  port: NetnsMesh.mqttPort, capacity: capacity)
        }
    }

    func connect() async throws {
        for s in subscribers { try await s.connect(timeout: .seconds(15)) }
        for p in publishers { try await p.connect(timeout: .seconds(15)) }
        // Every subscriber hears every publisher before the numbered stream starts: the
        // mesh has learnt every subscriber's interest (bounded, no fixed sleep).
        try await waitUntil(timeout: .seconds(30), every: .milliseconds(200), "the subscribers to hear every publisher's probe") {
            if subscribers.allSatisfy({ s in publishers.allSatisfy { s.hasExtra("probe p\($0.index)") } }) { return true }
            for p in publishers { try p.publishExtra(topic: base + "/probe", text: "probe p\(p.index)") }
            return false
        }
    }

    /// Every QoS 1 message acknowledged, then an end marker from each publisher at each of
    /// `subscribersToSettle` (per-publisher order: what was acknowledged before the marker
    /// has arrived). Returns what did not settle.
    func settle(timeout: Duration, subscribersToSettle: [Int]? = nil) async -> [String] {
        var notes: [String] = []
        for p in publishers {
            do { try await waitUntil(timeout: timeout, "\(p.clientID) acknowledged") { p.outstanding == 0 } } catch { notes.append("\(error)") }
        }
        for p in publishers { try? p.publishExtra(topic: base + "/marker", text: "marker p\(p.index)") }
        let which = subscribersToSettle ?? Array(subscribers.indices)
        do {
            try await waitUntil(timeout: timeout, "end markers") {
                which.allSatisfy { i in publishers.allSatisfy { subscribers[i].hasExtra("marker p\($0.index)") } }
            }
        } catch {
            let missing = which.flatMap { i in publishers.filter { !subscribers[i].hasExtra("marker p\($0.index)") }.map { "p\($0.index)→s\(i)" } }
            notes.append("end markers missing: \(missing)")
        }
        return notes
    }

    func close() {
        for p in publishers { p.close() }
        for s in subscribers { s.close() }
    }

    struct Tally: CustomStringConvertible {
        var acknowledged = 0
        var delivered = 0
        var lost = 0
        var duplicates = 0
        var unacknowledged = 0
        var lostExamples: [String] = []
        var duplicateExamples: [String] = []
        var description: String {
            "acknowledged pairs \(acknowledged), delivered \(delivered), lost \(lost)\(lostExamples.isEmpty ? "" : " \(lostExamples)"), "
                + "duplicates \(duplicates)\(duplicateExamples.isEmpty ? "" : " \(duplicateExamples)"), never acknowledged \(unacknowledged)"
        }
    }

    /// (message, subscriber) pairs of the included publisher→subscriber pairs: a message
    /// counts as lost only if its publisher got the PUBACK and it never arrived.
    func tally(_ include: (_ publisher: Int, _ subscriber: Int) -> Bool) -> Tally {
        let pubs = publishers.map(\.record), subs = subscribers.map(\.record)
        var t = Tally()
        for s in subs {
            for p in pubs where include(p.index, s.index) {
                for seq in p.publishedAt.indices {
                    let copies = seq < s.counts[p.index].count ? Int(s.counts[p.index][seq]) : 0
                    if copies > 1 {
                        t.duplicates += copies - 1
                        if t.duplicateExamples.count < 10 { t.duplicateExamples.append("p\(p.index)#\(seq)→s\(s.index)") }
                    }
                    if p.ackedAt[seq] == 0 {
                        t.unacknowledged += 1
                        continue
                    }
                    t.acknowledged += 1
                    if copies > 0 { t.delivered += 1 } else {
                        t.lost += 1
                        if t.lostExamples.count < 10 { t.lostExamples.append("p\(p.index)#\(seq)→s\(s.index)") }
                    }
                }
            }
        }
        return t
    }

    /// Deliveries per second per included pair, counting first copies that arrived in
    /// [from, to) on `timeline`.
    func throughput(_ timeline: Timeline, from: Double, to: Double, _ include: (_ publisher: Int, _ subscriber: Int) -> Bool) -> Double {
        let subs = subscribers.map(\.record)
        var count = 0, pairs = 0
        for s in subs {
            for p in publishers.indices where include(p, s.index) {
                pairs += 1
                for at in s.firstAt[p] where at != 0 {
                    let t = timeline.seconds(at)
                    if t >= from && t < to { count += 1 }
                }
            }
        }
        return pairs == 0 || to <= from ? 0 : Double(count) / (to - from) / Double(pairs)
    }
}

/// A subscriber made on a node during a cut, and probes that publish to it from other
/// nodes until each has been heard: the mesh's interest is correct when a probe crosses.
final class InterestProbe: Sendable {
    let topicBase: String
    private let subscriber: HarnessClient
    private let senders: [String: HarnessClient]
    private let firstHeard = LockedValue<[String: UInt64]>([:])

    init(_ mesh: NetnsMesh, run: String, subscriberOn node: String, sendersOn: [String]) throws {
        let base = "late/\(run)"
        topicBase = base
        let heard = firstHeard
        subscriber = try HarnessClient(clientID: "pt-\(run)-late-\(node)", port: NetnsMesh.mqttPort, host: mesh.node(node).accessAddress,
                                       record: false, onMessage: { m in
            let from = String(m.topic.dropFirst(base.count + 1))
            let now = monotonicNanos()
            heard.withLock { if $0[from] == nil { $0[from] = now } }
        })
        var s: [String: HarnessClient] = [:]
        for n in sendersOn {
            s[n] = try HarnessClient(clientID: "pt-\(run)-probe-\(n)", port: NetnsMesh.mqttPort, host: mesh.node(n).accessAddress)
        }
        senders = s
    }

    /// Connects everyone and subscribes (returns when the SUBACK arrived: the moment the
    /// subscription exists on its broker).
    func subscribe() async throws -> UInt64 {
        try await subscriber.connect()
        for c in senders.values { try await c.connect() }
        try await subscriber.subscribe(topicBase + "/#", qos: 1)
        return monotonicNanos()
    }

    /// When the first probe from `node` arrived (monotonic ns), if it did.
    func heard(from node: String) -> UInt64? { firstHeard.value[node] }

    /// Publishes a probe from every sender not yet heard, every 50 ms, until all are heard
    /// or `timeout` passes.
    func probe(until timeout: Duration, only: [String]? = nil) async {
        let names = only ?? Array(senders.keys)
        _ = try? await poll(timeout: timeout, every: .milliseconds(50)) {
            let waiting = names.filter { heard(from: $0) == nil }
            for n in waiting { try? senders[n]?.publish("\(topicBase)/\(n)", "probe", qos: 1) }
            return waiting.isEmpty
        }
    }

    func close() {
        subscriber.close()
        for c in senders.values { c.close() }
    }
}

func seconds(_ value: Double?) -> String { value.map { String(format: "%.2f s", $0) } ?? "never" }
func mib(_ bytes: Double?) -> String { bytes.map { String(format: "%.1f MiB", $0 / 1_048_576) } ?? "n/a" }
