/// Builds `forward/<topic>` as a C string without allocating per message: the prefix is
/// written once and each topic is copied in behind it.
///
/// Confined to the local link's loop thread (the only caller), which is what makes the
/// mutable buffer safe without a lock.
final class ForwardTopicBuffer: @unchecked Sendable {
    private var storage: UnsafeMutablePointer<CChar>
    private var capacity: Int
    let prefixLength: Int
    /// The topic of a forward sent by topic alias: an empty C string.
    let emptyTopic: UnsafePointer<CChar>
    private let emptyStorage: UnsafeMutablePointer<CChar>

    init(prefix: String) {
        let bytes = Array(prefix.utf8)
        prefixLength = bytes.count
        emptyStorage = .allocate(capacity: 1)
        emptyStorage.initialize(to: 0)
        emptyTopic = UnsafePointer(emptyStorage)
        capacity = max(256, prefixLength + 1)
        storage = .allocate(capacity: capacity)
        bytes.withUnsafeBytes { raw in
            UnsafeMutableRawPointer(storage).copyMemory(from: raw.baseAddress!, byteCount: bytes.count)
        }
    }

    deinit {
        storage.deallocate()
        emptyStorage.deallocate()
    }

    /// `prefix + topic`, valid until the next call.
    @inline(__always)
    func prefixed(_ topic: UnsafePointer<CChar>, length: Int) -> UnsafePointer<CChar> {
        let needed = prefixLength + length + 1
        if needed > capacity {
            let bigger = UnsafeMutablePointer<CChar>.allocate(capacity: needed * 2)
            bigger.update(from: storage, count: prefixLength)
            storage.deallocate()
            storage = bigger
            capacity = needed * 2
        }
        (storage + prefixLength).update(from: topic, count: length)
        storage[prefixLength + length] = 0
        return UnsafePointer(storage)
    }
}
