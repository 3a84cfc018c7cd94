import Foundation
import MeshHarness

/// Turns a `FailoverRecording` into per-second rows and a summary, with every message
/// that did not arrive put in exactly one category, so "lost" means what it says.
///
/// For each (message, subscriber) pair that never arrived:
/// - `unacknowledged`: no PUBACK by the end of the run (the client's to resend; it should be 0).
/// - `withKilledBroker`: acknowledged by the broker that was then killed before it passed
///   the message on, or addressed to a subscriber whose session lived on that broker and
///   published before the kill (in transit to the dead broker). The mesh cannot promise these.
/// - `noSession`: published while the subscriber had no session anywhere (between its
///   broker's death and its re-subscription on a surviving broker). Cannot be promised.
/// - `lostAcknowledged`: acknowledged by a broker that survived, for a subscriber whose
///   session was in place on a surviving broker when it was published. The target is 0.
public struct FailoverAnalysis: Sendable {
    public struct Second: Sendable {
        public var second: Int
        public var phase: String
        public var published = 0
        public var acknowledged = 0
        public var delivered = 0
        public var duplicates = 0
        public var lostAcknowledged = 0
        public var missedOther = 0
        /// Of `missedOther`: deliveries published between a subscriber's broker's death and the
        /// adoption of its session (the adoption's loss window).
        public var adoptionGap = 0
        public var clientsConnected = 0
        public var latencyP50: Double?
        public var latencyP99: Double?
        public var latencyMax: Double?
    }

    public struct Recovery: Sendable {
        public var label: String
        public var kind: FailoverFault.Kind
        public var atSeconds: Double
        /// Clients whose connection broke because of this fault.
        public var affected: [String]
        /// Longest time from the fault until an affected publisher had a message acknowledged on a new connection.
        public var publishersBack: Double?
        /// Longest time from the fault until an affected subscriber was connected and subscribed again.
        public var subscribersBack: Double?
        /// Longest disconnect → CONNACK time of an affected client.
        public var longestReconnect: Double?
        public var notBack: [String]
        public var observeLabel: String?
        public var observeTarget: Double?
        public var observedAfter: Double?
        /// Stick table said the killed broker held these, but their connection did not break (or the reverse).
        public var stickTableMismatch: [String]
        public var clientsBack: Double? { [publishersBack, subscribersBack].compactMap { $0 }.max() }
        /// Affected subscribers whose session the mesh adopted, and the loss window: fault →
        /// adoption completed (shortest, longest).
        public var adopted = 0
        public var adoptionWindow: (min: Double, max: Double)?
        /// Affected subscribers that came back with session present / without it.
        public var resumed = 0
        public var notResumed: [String] = []
        /// Deliveries that had no session to go to because they were published between the
        /// fault and the adoption of the subscriber's session (not promised).
        public var lostInAdoptionWindow = 0
        /// Duplicate deliveries at or after this fault.
        public var duplicatesAfter = 0
    }

    public struct Latency: Sendable {
        public var count = 0
        public var p50: Double?
        public var p99: Double?
        public var max: Double?
    }

    public var seconds: [Second] = []
    public var recoveries: [Recovery] = []
    public var published = 0
    public var acknowledged = 0
    /// (message, subscriber) pairs that had to arrive; and how many did.
    public var expectedPairs = 0
    public var deliveredPairs = 0
    public var duplicates = 0
    public var lostAcknowledged = 0
    public var withKilledBroker = 0
    public var noSession = 0
    /// Of `noSession`: published between a subscriber's broker's death and the adoption of its
    /// session on a survivor (the loss window of adoption).
    public var adoptionGap = 0
    public var unacknowledged = 0
    public var unmatchedAcks = 0
    public var latencyBefore = Latency()
    public var latencyDuring = Latency()
    public var latencyAfter = Latency()
    public var notes: [String] = []
    /// Examples of lost acknowledged messages: "p1#345→s2".
    public var lostExamples: [String] = []

    public init(_ r: FailoverRecording) {
        let nsPerSecond = 1_000_000_000.0
        func sec(_ t: UInt64) -> Int { t < r.startedAt ? -1 : Int(Double(t - r.startedAt) / nsPerSecond) }
        let lastSecond = max(sec(r.endedAt), 0)
        seconds = (0...lastSecond).map { Second(second: $0, phase: "before") }
        func bucket(_ t: UInt64, _ update: (inout Second) -> Void) {
            let s = sec(t)
            if s >= 0 && s < seconds.count { update(&seconds[s]) }
        }
        notes = r.notes

        // Which fault (if any) killed the broker a client was on, and when.
        func onKilledBroker(_ clientID: String, _ epochs: [ConnectionEpoch], _ fault: FaultRecord) -> Bool {
            guard fault.kind == .broker else { return false }
            if let set = fault.clientsOnServer { return set.contains(clientID) }
            // No stick table: a connection that broke within 3 s of the kill was on that broker.
            return epochs.contains { e in e.connectedAt < fault.at && (e.disconnectedAt.map { $0 >= fault.at && $0 < fault.at + 3_000_000_000 } ?? false) }
        }
        func epochIndex(at t: UInt64, _ epochs: [ConnectionEpoch]) -> Int? {
            epochs.lastIndex { $0.connectedAt <= t && ($0.disconnectedAt ?? .max) >= t }
        }

        // Recoveries.
        let faults = r.faults.sorted { $0.at < $1.at }
        for (i, f) in faults.enumerated() {
            let windowEnd = i + 1 < faults.count ? faults[i + 1].at : UInt64.max
            var rec = Recovery(label: f.label, kind: f.kind, atSeconds: Double(f.at - r.startedAt) / nsPerSecond, affected: [],
                               notBack: [], observeLabel: f.observeLabel, observeTarget: f.observeTarget,
                               observedAfter: f.observedAt.map { Double($0 - f.at) / nsPerSecond }, stickTableMismatch: [])
            var pubBack: [Double] = [], subBack: [Double] = [], reconnects: [Double] = []
            func brokenEpoch(_ epochs: [ConnectionEpoch]) -> Int? {
                epochs.firstIndex { e in e.connectedAt < f.at && (e.disconnectedAt.map { $0 >= f.at && $0 < windowEnd } ?? false) }
            }
            for p in r.publishers {
                guard let e = brokenEpoch(p.epochs) else {
                    if f.clientsOnServer?.contains(p.clientID) == true { rec.stickTableMismatch.append(p.clientID) }
                    continue
                }
                rec.affected.append(p.clientID)
                if f.kind == .broker, let set = f.clientsOnServer, !set.contains(p.clientID) { rec.stickTableMismatch.append(p.clientID) }
                if e + 1 < p.epochs.count { reconnects.append(Double(p.epochs[e + 1].connectedAt - p.epochs[e].disconnectedAt!) / nsPerSecond) }
                let firstAck = p.ackedAt.indices.filter { p.ackEpoch[$0] > Int32(e) }.map { p.ackedAt[$0] }.min()
                if let firstAck { pubBack.append(Double(firstAck - f.at) / nsPerSecond) } else { rec.notBack.append(p.clientID) }
            }
            var windows: [Double] = []
            for s in r.subscribers {
                rec.duplicatesAfter += s.deliveries.filter { $0.duplicate && $0.at >= f.at && $0.at < windowEnd }.count
                guard let e = brokenEpoch(s.epochs) else {
                    if f.clientsOnServer?.contains(s.clientID) == true { rec.stickTableMismatch.append(s.clientID) }
                    continue
                }
                rec.affected.append(s.clientID)
                if f.kind == .broker, e + 1 < s.epochs.count {
                    if s.epochs[e + 1].sessionPresent { rec.resumed += 1 } else { rec.notResumed.append(s.clientID) }
                }
                if f.kind == .broker, let adopted = r.adoptions[s.clientID], adopted >= f.at {
                    rec.adopted += 1
                    windows.append(Double(adopted - f.at) / nsPerSecond)
                }
                if f.kind == .broker, let set = f.clientsOnServer, !set.contains(s.clientID) { rec.stickTableMismatch.append(s.clientID) }
                if e + 1 < s.epochs.count { reconnects.append(Double(s.epochs[e + 1].connectedAt - s.epochs[e].disconnectedAt!) / nsPerSecond) }
                if let back = s.epochs[(e + 1)...].compactMap(\.subscribedAt).first {
                    subBack.append(Double(back - f.at) / nsPerSecond)
                } else { rec.notBack.append(s.clientID) }
            }
            if let lo = windows.min(), let hi = windows.max() { rec.adoptionWindow = (lo, hi) }
            rec.publishersBack = pubBack.max()
            rec.subscribersBack = subBack.max()
            rec.longestReconnect = reconnects.max()
            recoveries.append(rec)
        }

        // Phases: "fault" from each fault until its clients were back (+1 s), "after" later.
        // A partition cuts no client: it is a fault until its heal (the next fault); a heal
        // until what it observes holds (+1 s).
        var faultWindows: [(UInt64, UInt64)] = []
        for (i, (f, rec)) in zip(faults, recoveries).enumerated() {
            switch f.kind {
            case .partition:
                faultWindows.append((f.at, i + 1 < faults.count ? faults[i + 1].at : r.endedAt))
            case .heal:
                faultWindows.append((f.at, (f.observedAt ?? f.at) + UInt64(nsPerSecond)))
            case .broker, .loadBalancer, .restart:
                let back = rec.clientsBack ?? Double(r.endedAt - f.at) / nsPerSecond
                faultWindows.append((f.at, f.at + UInt64((back + 1) * nsPerSecond)))
            }
        }
        func phase(_ t: UInt64) -> String {
            if faultWindows.contains(where: { t >= $0.0 && t < $0.1 }) { return "fault" }
            if let first = faults.first, t >= first.at { return "after" }
            return "before"
        }
        for i in seconds.indices {
            let t0 = r.startedAt + UInt64(Double(i) * nsPerSecond), t1 = t0 + UInt64(nsPerSecond) - 1
            seconds[i].phase = phase(t0) == "fault" || phase(t1) == "fault" ? "fault" : phase(t1)
            let clients = r.publishers.map(\.epochs) + r.subscribers.map(\.epochs)
            seconds[i].clientsConnected = clients.filter { epochIndex(at: t1, $0) != nil }.count
        }

        // Publisher side.
        for p in r.publishers {
            unmatchedAcks += p.unmatchedAcks
            for seq in p.publishedAt.indices {
                published += 1
                bucket(p.publishedAt[seq]) { $0.published += 1 }
                if p.ackedAt[seq] != 0 {
                    acknowledged += 1
                    bucket(p.ackedAt[seq]) { $0.acknowledged += 1 }
                }
            }
        }
        if unmatchedAcks > 0 { notes.append("\(unmatchedAcks) acknowledgements did not match a pending message id") }

        // Subscriber sessions: intervals [start, end) during which the subscriber's
        // subscription existed on a broker; `endedByKill` marks a session that died with a
        // killed broker (it ends at the kill, not at the client's disconnect).
        struct Session { var start: UInt64; var end: UInt64; var endedByKill: Bool; var adopted = false }
        func sessions(_ s: SubscriberRecord) -> [Session] {
            var list: [Session] = []
            for (i, e) in s.epochs.enumerated() {
                if e.sessionPresent, let adopted = r.adoptions[s.clientID], let last = list.last, last.endedByKill, adopted >= last.end {
                    // Resumed on a survivor that had adopted the session: it existed (and queued)
                    // from the adoption on.
                    list.append(Session(start: adopted, end: .max, endedByKill: false, adopted: true))
                }
                if !e.sessionPresent {
                    if var last = list.popLast() {
                        if !last.endedByKill, i > 0, let d = s.epochs[i - 1].disconnectedAt { last.end = min(last.end, d) }
                        list.append(last)
                    }
                    list.append(Session(start: e.subscribedAt ?? .max, end: .max, endedByKill: false))
                }
                for f in faults where onKilledBroker(s.clientID, s.epochs, f) && epochIndex(at: f.at, s.epochs) == i {
                    if var last = list.popLast() {
                        if f.at < last.end { last.end = f.at; last.endedByKill = true }
                        list.append(last)
                    }
                }
            }
            return list
        }

        // Pairs.
        // Between a killed session and its adoption, per subscriber: (kill, adoption, fault index).
        func gaps(_ list: [Session]) -> [(UInt64, UInt64)] {
            zip(list, list.dropFirst()).compactMap { a, b in a.endedByKill && b.adopted && b.start >= a.end ? (a.end, b.start) : nil }
        }
        for s in r.subscribers {
            let sess = sessions(s)
            let adoptionGaps = gaps(sess)
            for p in r.publishers {
                let killedEpochs: [Int] = faults.compactMap { f in
                    onKilledBroker(p.clientID, p.epochs, f) ? epochIndex(at: f.at, p.epochs) : nil
                }
                for seq in p.publishedAt.indices {
                    let delivered = seq < s.counts[p.index].count && s.counts[p.index][seq] > 0
                    if delivered {
                        deliveredPairs += 1
                        duplicates += Int(s.counts[p.index][seq]) - 1
                    }
                    let t = p.publishedAt[seq]
                    let ackedByKilled = p.ackedAt[seq] != 0 && killedEpochs.contains(Int(p.ackEpoch[seq]))
                    let session = sess.first { $0.start <= t && t < $0.end }
                    // Published to a session that died with its broker shortly after: possibly
                    // still on its way there (in the agent's or the broker's queue). Older
                    // messages to that session had time to arrive and still count.
                    let inTransitToKilled = session.map { $0.endedByKill && t + Self.inTransitGrace >= $0.end } ?? false
                    let mustArrive = p.ackedAt[seq] != 0 && !ackedByKilled && session != nil && !inTransitToKilled
                    if mustArrive { expectedPairs += 1 }
                    if delivered { continue }
                    if p.ackedAt[seq] == 0 {
                        unacknowledged += 1
                        bucket(t) { $0.missedOther += 1 }
                    } else if ackedByKilled || inTransitToKilled {
                        withKilledBroker += 1
                        bucket(t) { $0.missedOther += 1 }
                    } else if session == nil {
                        noSession += 1
                        if let gap = adoptionGaps.first(where: { t >= $0.0 && t < $0.1 }) {
                            adoptionGap += 1
                            bucket(t) { $0.adoptionGap += 1 }
                            if let k = faults.firstIndex(where: { $0.at == gap.0 }) { recoveries[k].lostInAdoptionWindow += 1 }
                        }
                        bucket(t) { $0.missedOther += 1 }
                    } else {
                        lostAcknowledged += 1
                        bucket(t) { $0.lostAcknowledged += 1 }
                        if lostExamples.count < 20 { lostExamples.append("p\(p.index)#\(seq)→s\(s.index)") }
                    }
                }
            }
        }

        // Deliveries and latency.
        var perSecond: [[UInt64]] = Array(repeating: [], count: seconds.count)
        var byPhase: [String: [UInt64]] = [:]
        for s in r.subscribers {
            for d in s.deliveries {
                let i = sec(d.at)
                if i >= 0 && i < seconds.count {
                    seconds[i].delivered += 1
                    if d.duplicate { seconds[i].duplicates += 1 }
                    perSecond[i].append(d.latency)
                }
                byPhase[phase(d.at), default: []].append(d.latency)
            }
        }
        for i in seconds.indices {
            let l = Self.latency(perSecond[i])
            seconds[i].latencyP50 = l.p50
            seconds[i].latencyP99 = l.p99
            seconds[i].latencyMax = l.max
        }
        latencyBefore = Self.latency(byPhase["before"] ?? [])
        latencyDuring = Self.latency(byPhase["fault"] ?? [])
        latencyAfter = Self.latency(byPhase["after"] ?? [])
    }

    /// How long before a broker's death a message to a session on it counts as "in transit"
    /// rather than lost: far above the mesh's delivery latency before a fault (milliseconds).
    public static let inTransitGrace: UInt64 = 2_000_000_000

    /// Percentiles in milliseconds.
    static func latency(_ values: [UInt64]) -> Latency {
        guard !values.isEmpty else { return Latency() }
        let sorted = values.sorted()
        func pick(_ q: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))]) / 1e6 }
        return Latency(count: sorted.count, p50: pick(0.5), p99: pick(0.99), max: Double(sorted.last!) / 1e6)
    }
}
