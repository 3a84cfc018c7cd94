// libFuzzer harness: the interest advert codec (`$mesh/<node>/subscriptions` payloads).
// Built and run by scripts/fuzz.sh (swiftc -sanitize=fuzzer,address), not by SwiftPM.
//
// Every input is used twice:
//  1. as a payload: `decode` must not crash; what it accepts must survive
//     encode -> decode unchanged, and encoding it again must give the same bytes;
//  2. as the parts of an advert (pieces separated by 0xFF: node, then filters, the
//     count of each picked by its first byte): `decode` must accept its encoding if
//     and only if it is valid, and then give back that advert.
import MeshCore

/// Fails the fuzz run (libFuzzer reports the trap and saves the input) with a reason.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

/// The harness's only contact with the codec API, so that a change there means
/// adapting this one function. Checks a received `payload`, or the encoding of `built`:
/// `decode` refuses only a broken frame (for a built advert: an invalid node id); inside the
/// frame an entry it cannot use is widened, never dropped (`ControlFormat`): every usable
/// filter of `built` comes back with at least its count and every unusable one is covered;
/// what it returns is valid (node id, filters, counts in 1...Int32.max) and survives
/// encode -> decode unchanged, encoded to the same bytes.
func roundTrip(payload: [UInt8] = [], built: InterestAdvert? = nil) {
    func usable(_ filter: String, _ count: Int) -> Bool {
        (try? TopicFilter(validating: filter)) != nil && (1...Int(Int32.max)).contains(count)
    }
    func isValid(_ advert: InterestAdvert) -> Bool {
        NodeID.isValid(advert.node) && advert.filters.allSatisfy { usable($0.key, $0.value) }
    }
    let decoded: InterestAdvert
    do {
        decoded = try InterestAdvertCodec.decode(built.map(InterestAdvertCodec.encode) ?? payload, expectedNode: nil)
    } catch {
        if let built { check(!NodeID.isValid(built.node), "the encoding of \(built), whose node is valid, was rejected: \(error.reason)") }
        return
    }
    check(isValid(decoded), "decode accepted invalid \(decoded)")
    if let built {
        if isValid(built) {
            check(decoded == built, "encode -> decode changed \(built) into \(decoded)")
        } else {
            for (filter, count) in built.filters {
                if (try? TopicFilter(validating: filter)) != nil {
                    check((decoded.filters[filter] ?? 0) >= min(max(count, 1), Int(Int32.max)) || decoded.filters["#"] != nil,
                          "usable filter \(filter) of \(built) lost in \(decoded)")
                } else {
                    check(decoded.filters[InterestAdvertCodec.covering(filter)] != nil, "unusable filter \(filter) of \(built) not covered in \(decoded)")
                }
            }
        }
    }

    let encoded = InterestAdvertCodec.encode(decoded)
    let again: InterestAdvert
    do {
        again = try InterestAdvertCodec.decode(encoded, expectedNode: decoded.node)
    } catch {
        fatalError("invariant violated: own encoding of \(decoded) rejected: \(error.reason)")
    }
    check(again == decoded, "round trip changed \(decoded) into \(again)")
    check(InterestAdvertCodec.encode(again) == encoded, "encoding of \(decoded) is not stable")
}

/// An advert made of the input's pieces (not necessarily valid: `decode` decides).
func advert(from bytes: [UInt8]) -> InterestAdvert {
    let pieces = bytes.split(separator: 0xFF, maxSplits: 64, omittingEmptySubsequences: false)
    let node = String(decoding: pieces[0], as: UTF8.self)
    var seq: UInt64 = 0
    for byte in pieces[0].prefix(8) { seq = seq << 8 | UInt64(byte) }
    var filters: [String: Int] = [:]
    for piece in pieces.dropFirst() {
        // First byte: a count around the edges of the valid range; the rest: the filter.
        let selector = Int(piece.first ?? 0)
        let count = [0, -1, 1, 2, Int(Int32.max), Int(Int32.max) + 1, Int.min, Int.max][selector % 8]
            + (selector % 8 == 3 ? selector : 0)
        filters[String(decoding: piece.dropFirst(), as: UTF8.self)] = count
    }
    return InterestAdvert(node: node, seq: seq, filters: filters)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func advertCodecFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    roundTrip(payload: bytes)
    roundTrip(built: advert(from: bytes))
    return 0
}
