/// The format version every control-plane payload carries (`"format": N` in its JSON
/// object), so that agents of neighbouring releases can run side by side while a fleet is
/// upgraded one node at a time.
///
/// The contract between releases, which is what makes "one older, one newer" possible:
/// - `node`, `seq` and `format` keep their meaning in every format;
/// - a new format only *adds* keys (or values a reader can treat as unusable entries); a
///   key whose meaning changes gets a new name instead;
/// - a reader ignores keys it does not know, and an entry it cannot use (a filter it cannot
///   parse, a count that is not a number it knows) costs an over-estimate, never the whole
///   payload: an advert then claims more interest than it said (more bytes, never a lost
///   message).
///
/// A payload without the key is format 1: every release before the key existed (up to and
/// including 0.2.0) wrote that.
public enum ControlFormat {
    /// What this release writes.
    public static let current = 2
    /// Payloads without the key.
    public static let unversioned = 1
    /// The JSON key.
    public static let key = "format"

    /// The formats this release reads as they are: one older and one newer than its own.
    public static let understood: ClosedRange<Int> = (current - 1)...(current + 1)

    /// Whether a payload of format `version` can be read by this release.
    public static func isUnderstood(_ version: Int) -> Bool { understood.contains(version) }

    /// The format of a decoded JSON object: its `format` member, `unversioned` without one.
    /// A member that is not a small non-negative integer is an error (it cannot be judged).
    static func version(of members: [(key: String, value: JSONValue)]) throws(AdvertDecodeError) -> Int {
        guard let value = members.first(where: { $0.key == key })?.value else { return unversioned }
        guard case .number(let text, true) = value, let v = Int(text), (0...1_000_000).contains(v) else {
            throw AdvertDecodeError(reason: "'\(key)' is not a format number")
        }
        return v
    }

    /// Refuses a payload of a format this release does not read. For payloads where acting
    /// on a misread is worse than not acting (a connect announcement ends a connection), not
    /// for adverts, which widen instead.
    static func requireUnderstood(_ members: [(key: String, value: JSONValue)]) throws(AdvertDecodeError) {
        let v = try version(of: members)
        guard isUnderstood(v) else { throw AdvertDecodeError(reason: "format \(v) is not one this agent reads (\(understood))") }
    }

    /// `{"format":N,` — the opening of every payload this release writes.
    static func appendOpening(to out: inout [UInt8]) {
        out.append(contentsOf: "{\"\(key)\":\(current),".utf8)
    }
}
