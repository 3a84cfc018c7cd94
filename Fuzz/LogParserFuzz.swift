// libFuzzer harness: the broker-log-line parser feeding a session table.
// Built and run by scripts/fuzz.sh (swiftc -sanitize=fuzzer,address), not by SwiftPM.
//
// Input: lines separated by 0xFF (never valid UTF-8, so no real payload needs it).
// The first byte of a line picks its topic (byte % 5, see `topics`); the rest is
// the payload. Each line is parsed against the table's known ids and applied, and
// the table's invariants are checked after every step: a broken one traps.
import Glibc
import MeshCore

/// Mosquitto's log topics; index = first byte % 5.
let topics = [
    "$SYS/broker/log/M/subscribe",
    "$SYS/broker/log/M/unsubscribe",
    "$SYS/broker/log/N",
    "$SYS/broker/log/E",
    "$SYS/broker/log/I",
]

/// The lines of one input, at most this many (bounds the work per input).
/// (`FUZZ_MAX_LINES` lowers it for long runs: more inputs per second.)
let maximumLines = getenv("FUZZ_MAX_LINES").flatMap { Int(String(cString: $0)) } ?? 64

/// Fails the fuzz run (libFuzzer reports the trap and saves the input) with a reason.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

/// The harness's only contact with the parser and session-table API, so that a change
/// there means adapting this one function.
///
/// Parses one line against `table`'s known clients, applies the event, and checks:
/// `apply` reports a change exactly when `interest` changed; `interest` equals the
/// interest recomputed from `sessions` (a session whose filters are unknown counts as `#`,
/// the mesh's own count nothing); no count is below 1; a plain event names a client; a cut
/// or ambiguous line never makes interest smaller.
func step(_ table: inout SessionTable, topic: String, payload: ArraySlice<UInt8>) {
    let parsed: BrokerLogEvent?
    do {
        parsed = try LogLineParser().parse(topic: topic, payload: payload, isKnownClient: table.isKnownClient,
                                           everyClientKnown: table.everyClientKnown)
    } catch {
        return
    }
    guard let event = parsed else { return }
    let mayOnlyGrow: Bool
    switch event {
    case .ambiguous(let readings):
        check(readings.count >= 2 && readings.allSatisfy { !$0.clientID.isEmpty }, "ambiguous without readings: \(event)")
        mayOnlyGrow = true
    case .truncated(let line):
        check(payload.count >= LogLineParser.brokerLineLimit, "a \(payload.count)-byte line read as cut")
        check(line.readings.allSatisfy { !$0.clientID.isEmpty }, "cut line reading without a client: \(event)")
        mayOnlyGrow = true
    case .socketOpened:
        mayOnlyGrow = true
    default:
        check(!event.clientID.isEmpty, "event without a client id: \(event)")
        mayOnlyGrow = false
    }
    if case .subscribed(_, let qos, _) = event { check((0...2).contains(qos), "QoS \(qos) in \(event)") }

    let before = table.interest
    let changed = table.apply(event)
    check(changed == (table.interest != before), "apply returned \(changed) for \(event), interest \(before) -> \(table.interest)")
    if mayOnlyGrow {
        check(before.keys.allSatisfy { table.interest[$0] != nil }, "\(event) removed interest: \(before) -> \(table.interest)")
    }
    checkInvariants(table, after: "\(event)")
}

/// `interest` is exactly what the sessions hold.
func checkInvariants(_ table: SessionTable, after what: @autoclosure () -> String) {
    var recomputed: [String: Int] = [:]
    for (id, session) in table.sessions {
        if session.excluded {
            check(table.isExcluded(id) || id == SessionTable.unattributedKey, "non-mesh client \(id) marked excluded")
            check(session.filters.isEmpty, "mesh client \(id) holds filters")
            continue
        }
        var holds = Set(session.filters.keys)
        if session.filtersUnknown { holds.insert("#") }
        for filter in holds { recomputed[filter, default: 0] += 1 }
    }
    check(table.interest == recomputed, "interest \(table.interest) != recomputed \(recomputed) after \(what())")
    check(table.interest.values.allSatisfy { $0 >= 1 }, "count below 1 in \(table.interest)")
}

/// Lines whose first byte is 250 or more drive the table's clock and evidence instead
/// of carrying a log line: a tick, a census with counts from the next bytes, a sweep,
/// lost lines, a broker restart.
func special(_ table: inout SessionTable, op: UInt8, args: ArraySlice<UInt8>) {
    let a = Int(args.first ?? 0), b = Int(args.dropFirst().first ?? 0)
    switch op {
    case 250:
        table.advance(to: .init(tick: table.clock.tick + 1, time: table.clock.time + Double(a % 8)))
    case 251:
        let snapshot = table.censusSnapshot(pendingSocketsComplete: b % 2 == 0)
        _ = table.census(snapshot, counts: .init(disconnected: a % 16 - 4, connected: b % 16), caughtUp: a % 2 == 0)
    case 252:
        _ = table.sweep(grace: Double(a % 8), limit: b % 8)
    case 253:
        _ = table.linesLost()
    default:
        table.linkReconnected()
        _ = table.brokerRestarted()
    }
    checkInvariants(table, after: "special op \(op)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func logParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var table = SessionTable()
    for line in bytes.split(separator: 0xFF, maxSplits: maximumLines - 1, omittingEmptySubsequences: true) {
        if line.first! >= 250 {
            special(&table, op: line.first!, args: line.dropFirst())
        } else {
            step(&table, topic: topics[Int(line.first! % 5)], payload: line.dropFirst())
        }
    }
    return 0
}
