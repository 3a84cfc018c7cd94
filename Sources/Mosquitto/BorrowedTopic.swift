#if canImport(Glibc)
import Glibc
#endif

/// A NUL-terminated topic in memory someone else owns (libmosquitto's received message, a
/// `TopicPrefixBuffer`): valid only while that memory is, which is why it is not `Sendable`
/// and never stored. It lets the forwarding hot path look at, cut and pass on a topic with
/// no copy and no pointer arithmetic outside this module.
public struct BorrowedTopic {
    @usableFromInline let start: UnsafePointer<CChar>

    @inlinable init(_ start: UnsafePointer<CChar>) { self.start = start }

    /// The empty topic: what a publish carrying a topic alias sends instead of the topic.
    public static var empty: BorrowedTopic { BorrowedTopic(TopicStorage.empty) }

    /// Whether the topic begins with `$` (a broker's or the mesh's control topic).
    @inlinable public var isDollarTopic: Bool { start.pointee == 0x24 /* "$" */ }

    /// Its length in bytes, without the NUL (counted on each call: ask once).
    @inlinable public var byteCount: Int { strlen(start) }

    /// The same topic without its first `prefixBytes` bytes (still NUL-terminated: a suffix
    /// of the same memory). The caller has established that the topic is that long (the
    /// router decided it carries the forward prefix).
    @inlinable public func dropping(prefixBytes: Int) -> BorrowedTopic {
        assert(strnlen(start, prefixBytes) == prefixBytes, "topic shorter than the prefix it is cut by")
        return BorrowedTopic(start + prefixBytes)
    }

    /// The topic copied into a Swift string (allocates unless short).
    public var string: String { String(cString: start) }
}

enum TopicStorage {
    /// One immutable NUL byte for `BorrowedTopic.empty`, never freed.
    nonisolated(unsafe) static let empty: UnsafePointer<CChar> = {
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
        p.initialize(to: 0)
        return UnsafePointer(p)
    }()
}

/// Builds `<prefix><topic>` as a C string without allocating per message: the prefix is
/// written once and each topic is copied in behind it.
///
/// Not thread-safe: one thread (the local link's loop thread, through `LoopConfined`) owns it, and the topic it
/// returns is valid until that thread's next call.
public final class TopicPrefixBuffer {
    private var storage: UnsafeMutablePointer<CChar>
    private var capacity: Int
    /// The prefix's length in bytes: what `BorrowedTopic.dropping(prefixBytes:)` cuts off
    /// a topic received under it.
    public let prefixLength: Int

    public init(prefix: String) {
        let bytes = Array(prefix.utf8)
        prefixLength = bytes.count
        capacity = max(256, prefixLength + 1)
        storage = .allocate(capacity: capacity)
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { UnsafeMutableRawPointer(storage).copyMemory(from: base, byteCount: bytes.count) }
        }
    }

    deinit { storage.deallocate() }

    /// `prefix + topic`, valid until the next call.
    @inline(__always)
    public func prefixed(_ topic: BorrowedTopic) -> BorrowedTopic {
        let length = topic.byteCount
        let needed = prefixLength + length + 1
        if needed > capacity {
            let bigger = UnsafeMutablePointer<CChar>.allocate(capacity: needed * 2)
            bigger.update(from: storage, count: prefixLength)
            storage.deallocate()
            storage = bigger
            capacity = needed * 2
        }
        (storage + prefixLength).update(from: topic.start, count: length)
        storage[prefixLength + length] = 0
        return BorrowedTopic(UnsafePointer(storage))
    }
}

/// The key of an MQTT v5 user property (one of the mesh's markers, or the prefix of their
/// namespace), kept as a C string once so that looking it up in a received message's
/// properties converts nothing per message. Immutable.
public final class UserPropertyKey: @unchecked Sendable {
    public let name: String
    let cString: UnsafeMutablePointer<CChar>

    public init(_ name: String) {
        self.name = name
        let bytes = Array(name.utf8CString)
        cString = .allocate(capacity: bytes.count)
        cString.initialize(from: bytes, count: bytes.count)
    }

    deinit { cString.deallocate() }
}
