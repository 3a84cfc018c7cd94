/// A parsed JSON value, as much as the advert codec needs.
///
/// Numbers keep their text so integers and floats stay distinguishable and
/// no precision is lost before validation.
enum JSONValue: Equatable, Sendable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(text: String, isInteger: Bool)
    case bool(Bool)
    case null

    static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.array(let a), .array(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a, let ai), .number(let b, let bi)): return a == b && ai == bi
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        default: return false
        }
    }
}

struct JSONSyntaxError: Error, Equatable, Sendable {
    let reason: String
    let offset: Int
}

/// A strict RFC 8259 parser over UTF-8 bytes with a nesting limit, so that
/// hostile input (deep nesting, NaN, lone surrogates, duplicate keys) is
/// rejected with a reason instead of exhausting the stack.
struct JSONParser {
    static let maximumDepth = 32

    let bytes: [UInt8]
    var position = 0
    var depth = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// One value, surrounded only by whitespace.
    mutating func parseDocument() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard position == bytes.count else { throw fail("trailing characters after the value") }
        return value
    }

    private func fail(_ reason: String) -> JSONSyntaxError {
        JSONSyntaxError(reason: reason, offset: position)
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { position += 1 }
    }

    private mutating func expect(_ literal: String) throws(JSONSyntaxError) {
        for byte in literal.utf8 {
            guard current == byte else { throw fail("invalid literal, expected '\(literal)'") }
            position += 1
        }
    }

    private mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
        guard let byte = current else { throw fail("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character")
        }
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw fail("nested deeper than \(Self.maximumDepth) levels") }
    }

    /// After a member or an element: consumes the `,` before the next one (false) or the
    /// container's `closer` (true).
    private mutating func endsAfterItem(_ closer: UInt8) throws(JSONSyntaxError) -> Bool {
        skipWhitespace()
        if current == UInt8(ascii: ",") { position += 1; return false }
        guard current == closer else { throw fail("expected ',' or '\(Character(Unicode.Scalar(closer)))'") }
        position += 1
        return true
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1 // {
        var members: [(key: String, value: JSONValue)] = []
        var seen = Set<[UInt8]>()
        skipWhitespace()
        if current == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            guard seen.insert(Array(key.utf8)).inserted else { throw fail("duplicate key") }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw fail("expected ':'") }
            position += 1
            skipWhitespace()
            members.append((key, try parseValue()))
            if try endsAfterItem(UInt8(ascii: "}")) { return .object(members) }
        }
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1 // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            if try endsAfterItem(UInt8(ascii: "]")) { return .array(elements) }
        }
    }

    private mutating func parseNumber() throws(JSONSyntaxError) -> JSONValue {
        let start = position
        var isInteger = true
        if current == UInt8(ascii: "-") { position += 1 }
        func digits(_ parser: inout JSONParser) -> Int {
            let begin = parser.position
            while let byte = parser.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { parser.position += 1 }
            return parser.position - begin
        }
        if current == UInt8(ascii: "0") {
            position += 1
        } else {
            guard digits(&self) > 0 else { throw fail("expected digits") }
        }
        if current == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard digits(&self) > 0 else { throw fail("expected digits after '.'") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard digits(&self) > 0 else { throw fail("expected exponent digits") }
        }
        return .number(text: String(decoding: bytes[start..<position], as: UTF8.self), isInteger: isInteger)
    }

    private mutating func parseString() throws(JSONSyntaxError) -> String {
        position += 1 // opening quote
        var out: [UInt8] = []
        while true {
            // Copy runs of plain bytes in one go; only quotes, escapes and controls need care.
            let runStart = position
            while position < bytes.count {
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                position += 1
            }
            if position > runStart { out.append(contentsOf: bytes[runStart..<position]) }
            guard let byte = current else { throw fail("unterminated string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                // Input was validated as UTF-8 and escapes emit valid UTF-8.
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let escaped = current else { throw fail("unterminated escape") }
                position += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalarValue = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalarValue) {
                        guard current == UInt8(ascii: "\\") else { throw fail("lone high surrogate") }
                        position += 1
                        guard current == UInt8(ascii: "u") else { throw fail("lone high surrogate") }
                        position += 1
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid low surrogate") }
                        scalarValue = 0x10000 + ((scalarValue - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalarValue) {
                        throw fail("lone low surrogate")
                    }
                    guard let scalar = Unicode.Scalar(scalarValue) else { throw fail("invalid \\u escape") }
                    out.append(contentsOf: UTF8.encode(scalar)!)
                default:
                    throw fail("invalid escape")
                }
            case 0..<0x20:
                throw fail("unescaped control character in string")
            default:
                out.append(byte)
            }
        }
    }

    private mutating func parseHex4() throws(JSONSyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current else { throw fail("truncated \\u escape") }
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }
}

/// The first steps of reading any `$mesh/…` JSON payload, which come from peers, operators
/// or attackers: bounded in size before any work, valid UTF-8, one JSON document whose top
/// level is an object. Each control codec reads its own members from there.
enum ControlPayload {
    static func members(_ payload: some Collection<UInt8>, maximumBytes: Int) throws(AdvertDecodeError) -> [(key: String, value: JSONValue)] {
        let size = payload.count
        guard size <= maximumBytes else {
            throw AdvertDecodeError(reason: "payload of \(size) bytes exceeds \(maximumBytes)")
        }
        let bytes = Array(payload)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw AdvertDecodeError(reason: "payload is not valid UTF-8")
        }
        let value: JSONValue
        do {
            var parser = JSONParser(bytes: bytes)
            value = try parser.parseDocument()
        } catch {
            throw AdvertDecodeError(reason: "not JSON: \(error.reason) at byte \(error.offset)")
        }
        guard case .object(let members) = value else {
            throw AdvertDecodeError(reason: "top level is not a JSON object")
        }
        return members
    }

    /// The payload's `node`: a valid node id, and the one its topic names (`expected`) if given.
    static func node(of members: [(key: String, value: JSONValue)], expected: String?) throws(AdvertDecodeError) -> String {
        guard case .string(let node) = members.first(where: { $0.key == "node" })?.value else {
            throw AdvertDecodeError(reason: "missing or ill-typed 'node'")
        }
        do { try NodeID.validate(node) } catch { throw AdvertDecodeError(reason: "'node' is not a valid node id: \(error.reason)") }
        if let expected, !node.utf8.elementsEqual(expected.utf8) {
            throw AdvertDecodeError(reason: "'node' is \(InterestAdvertCodec.quoted(node)) but the topic says \(InterestAdvertCodec.quoted(expected))")
        }
        return node
    }
}
