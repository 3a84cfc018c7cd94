import Foundation

/// A subscriber that only holds a subscription open: CONNECT and SUBSCRIBE (MQTT v5)
/// written by hand on a plain blocking socket, no thread. libmosquitto's loop uses
/// select(), which cannot watch descriptors ≥ 1024, and each of its clients takes three,
/// so one process holds only ~330 of them; the seed scenario needs 500 subscribers, of
/// which all but one never receive anything.
public final class IdleSubscriber: Sendable {
    public let fd: Int32

    /// Connects to host:port, subscribes `filter` at `qos`, and returns once CONNACK and
    /// SUBACK arrived (each read bounded by `timeoutSeconds`).
    public init(clientID: String, port: Int32, filter: String, qos: UInt8 = 1, timeoutSeconds: Int = 10) throws {
        do throws(Network.ConnectFailure) {
            fd = try Network.tcpConnect(port: port, timeoutSeconds: timeoutSeconds)
        } catch where error.call == "socket" {
            throw HarnessError("idle subscriber \(clientID): socket() failed: errno \(error.errno)")
        } catch {
            throw HarnessError("idle subscriber \(clientID): connect to \(port) failed: errno \(error.errno)")
        }
        do {
            // CONNECT: protocol "MQTT" v5, clean start, keepalive 0 (never pings), no properties.
            try send(packet(0x10, [0, 4] + Array("MQTT".utf8) + [5, 0x02, 0, 0, 0] + Self.string(clientID)))
            try expect(0x20, "CONNACK", clientID)
            // SUBSCRIBE: packet id 1, no properties, the filter with its QoS.
            try send(packet(0x82, [0, 1, 0] + Self.string(filter) + [qos]))
            try expect(0x90, "SUBACK", clientID)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    private static func string(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        return [UInt8(b.count >> 8), UInt8(b.count & 0xff)] + b
    }

    private func packet(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [type]
        var n = body.count
        repeat {
            var byte = UInt8(n % 128)
            n /= 128
            if n > 0 { byte |= 0x80 }
            out.append(byte)
        } while n > 0
        return out + body
    }

    private func send(_ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw HarnessError("idle subscriber: write failed: errno \(errno)") }
    }

    /// Reads one packet and checks its type (and, for CONNACK/SUBACK, success).
    private func expect(_ type: UInt8, _ name: String, _ id: String) throws {
        var header: UInt8 = 0
        guard read(fd, &header, 1) == 1 else { throw HarnessError("idle subscriber \(id): no \(name) (errno \(errno))") }
        var length = 0, multiplier = 1
        while true {
            var b: UInt8 = 0
            guard read(fd, &b, 1) == 1 else { throw HarnessError("idle subscriber \(id): truncated \(name)") }
            length += Int(b & 0x7f) * multiplier
            multiplier *= 128
            if b & 0x80 == 0 { break }
        }
        var body = [UInt8](repeating: 0, count: length)
        var got = 0
        while got < length {
            let n = body.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, length - got) }
            guard n > 0 else { throw HarnessError("idle subscriber \(id): truncated \(name)") }
            got += n
        }
        guard header & 0xf0 == type else { throw HarnessError("idle subscriber \(id): expected \(name), got packet type \(header >> 4)") }
        // CONNACK: flags, reason; SUBACK: packet id (2), properties length (1 if empty), reasons.
        let reason = type == 0x20 ? (body.count > 1 ? body[1] : 0xff) : (body.last ?? 0xff)
        guard reason < 0x80 else { throw HarnessError("idle subscriber \(id): \(name) refused (0x\(String(reason, radix: 16)))") }
    }
}
