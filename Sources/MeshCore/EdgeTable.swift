/// The literal edges of a `SubscriptionTree`: (parent node, level bytes) → child node.
///
/// One open-addressing table (linear probing, backward-shift deletion) for
/// the whole trie instead of a `Dictionary` per node, because at a million
/// filters per-node dictionaries and per-level `String`s dominate memory and
/// every lookup would have to build a `String` from the topic. Here a lookup
/// hashes the topic's bytes in place and compares them against 20-byte
/// slots; levels of up to 8 bytes live inside the slot, longer ones in one
/// shared byte arena (compacted when half of it is garbage). Slots keep a
/// 16-bit hash fingerprint, not the full hash: growth and deletion rehash
/// the level bytes instead, trading rare work for 4 bytes per edge.
///
/// Hashing is seeded per process (a multiply-xorshift for levels of up to 8
/// bytes, the standard library's `Hasher` for longer ones), so a peer cannot
/// prepare filters that all collide. Storage is arrays only:
/// copy-on-write value semantics and `Sendable` without `@unchecked`.
struct EdgeTable: Sendable {
    /// 20 bytes, 4-byte aligned.
    struct Slot: Sendable {
        var parent: UInt32 = 0
        /// 0 = empty slot (node 0 is the root, never a child).
        var child: UInt32 = 0
        /// Level length in bytes (high 16 bits) and hash fingerprint (low 16 bits).
        var meta: UInt32 = 0
        /// Level bytes 0–3 (little-endian) if `length <= 8`, else the arena offset.
        var low: UInt32 = 0
        /// Level bytes 4–7 if `length <= 8`.
        var high: UInt32 = 0

        var length: Int { Int(meta >> 16) }
        var payload: UInt64 { UInt64(high) << 32 | UInt64(low) }

        static func meta(length: Int, hash: Int) -> UInt32 {
            UInt32(length) << 16 | UInt32(truncatingIfNeeded: hash) & 0xFFFF
        }
    }

    /// MQTT strings are at most 65535 bytes, so a level always fits the 16-bit length.
    static let maximumLevelLength = 65_535

    static let inlineCapacity = 8
    static let minimumCapacity = 16

    private(set) var slots: [Slot] = []
    private(set) var count = 0
    private var arena: [UInt8] = []
    private var arenaGarbage = 0

    init() {}

    init(minimumCapacity: Int) {
        reserveCapacity(minimumCapacity)
    }

    // MARK: - Hashing and comparison

    /// Per-process secret for the short-level hash, so filter sets that collide cannot be
    /// prepared in advance.
    static let seed = UInt64.random(in: 0...UInt64.max)

    /// Levels of up to 8 bytes (almost all of them) hash as one seeded 64-bit multiply-xorshift
    /// of their packed bytes: several times cheaper than SipHash on the per-message path.
    /// Longer levels use the standard library's seeded `Hasher`.
    @inline(__always)
    static func hash(parent: UInt32, level: UnsafeRawBufferPointer) -> Int {
        if level.count <= inlineCapacity {
            var h = (pack(level) ^ seed) &* 0x9E37_79B9_7F4A_7C15
            h ^= (UInt64(parent) << 8 | UInt64(level.count)) &* 0xC2B2_AE3D_27D4_EB4F
            h ^= h >> 29
            h = h &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 32
            return Int(truncatingIfNeeded: h)
        }
        var hasher = Hasher()
        hasher.combine(parent)
        hasher.combine(bytes: level)
        return hasher.finalize()
    }

    /// Up to 8 level bytes as a little-endian integer (byte i at bits 8i…8i+7).
    @inline(__always)
    static func pack(_ level: UnsafeRawBufferPointer) -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: level.prefix(8))) }
        return UInt64(littleEndian: value)
    }

    @inline(__always)
    private func slot(_ slot: Slot, equals level: UnsafeRawBufferPointer) -> Bool {
        if level.count <= Self.inlineCapacity { return slot.payload == Self.pack(level) }
        let offset = Int(slot.low)
        return arena.withUnsafeBytes { arena in
            level.elementsEqual(UnsafeRawBufferPointer(rebasing: arena[offset..<offset + level.count]))
        }
    }

    /// The level of a slot, as a `String` (for enumeration, not the hot path).
    func level(of slot: Slot) -> String {
        let length = Int(slot.length)
        if length <= Self.inlineCapacity {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: slot.payload >> (8 * UInt64($0))) }
            return String(decoding: bytes, as: UTF8.self)
        }
        let offset = Int(slot.low)
        return String(decoding: arena[offset..<offset + length], as: UTF8.self)
    }

    /// The full hash of a stored slot, recomputed from its bytes.
    private func rehash(_ slot: Slot) -> Int {
        let length = slot.length
        if length <= Self.inlineCapacity {
            return withUnsafeBytes(of: slot.payload.littleEndian) { bytes in
                Self.hash(parent: slot.parent, level: UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            }
        }
        let offset = Int(slot.low)
        return arena.withUnsafeBytes { arena in
            Self.hash(parent: slot.parent, level: UnsafeRawBufferPointer(rebasing: arena[offset..<offset + length]))
        }
    }

    // MARK: - Lookup

    /// The child of `parent` at `level`, or nil.
    @inline(__always)
    func child(of parent: UInt32, level: UnsafeRawBufferPointer) -> UInt32? {
        guard count > 0, level.count <= Self.maximumLevelLength else { return nil }
        return slotIndex(parent: parent, level: level, hash: Self.hash(parent: parent, level: level)).map { slots[$0].child }
    }

    /// The slot holding the edge (`parent`, `level`) whose hash is `hash`, or nil: one
    /// linear-probe walk, shared by lookup and removal.
    @inline(__always)
    private func slotIndex(parent: UInt32, level: UnsafeRawBufferPointer, hash: Int) -> Int? {
        slots.withUnsafeBufferPointer { slots in
            let mask = slots.count - 1
            let meta = Slot.meta(length: level.count, hash: hash)
            var index = hash & mask
            while true {
                let candidate = slots[index]
                if candidate.child == 0 { return nil }
                if candidate.meta == meta, candidate.parent == parent, slot(candidate, equals: level) { return index }
                index = (index + 1) & mask
            }
        }
    }

    // MARK: - Mutation

    /// Adds an edge that must not exist yet.
    mutating func insert(parent: UInt32, level: UnsafeRawBufferPointer, child: UInt32) {
        precondition(child != 0 && level.count <= Self.maximumLevelLength, "EdgeTable: level longer than 65535 bytes")
        if (count + 1) * 4 > slots.count * 3 { resize(to: max(Self.minimumCapacity, slots.count * 2)) }
        let hash = Self.hash(parent: parent, level: level)
        var new = Slot(parent: parent, child: child, meta: Slot.meta(length: level.count, hash: hash))
        if level.count <= Self.inlineCapacity {
            let packed = Self.pack(level)
            new.low = UInt32(truncatingIfNeeded: packed)
            new.high = UInt32(truncatingIfNeeded: packed >> 32)
        } else {
            precondition(arena.count + level.count <= Int(UInt32.max), "EdgeTable: level arena over 4 GiB")
            new.low = UInt32(arena.count)
            arena.append(contentsOf: level)
        }
        place(new, hash: hash)
        count += 1
    }

    /// Removes an edge; returns its child, or nil if absent.
    @discardableResult
    mutating func remove(parent: UInt32, level: UnsafeRawBufferPointer) -> UInt32? {
        guard count > 0, level.count <= Self.maximumLevelLength else { return nil }
        guard let index = slotIndex(parent: parent, level: level, hash: Self.hash(parent: parent, level: level)) else { return nil }
        let mask = slots.count - 1
        let removed = slots[index]
        if removed.length > Self.inlineCapacity { arenaGarbage += Int(removed.length) }
        // Backward-shift deletion: pull later entries of the probe run into the hole.
        var hole = index
        var next = (hole + 1) & mask
        while slots[next].child != 0 {
            let ideal = rehash(slots[next]) & mask
            // `next` may move into `hole` if its ideal slot is not in (hole, next] (cyclically).
            let between = hole <= next ? (hole < ideal && ideal <= next) : (hole < ideal || ideal <= next)
            if !between {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = Slot()
        count -= 1

        if count == 0 {
            self = EdgeTable()
        } else {
            if slots.count > Self.minimumCapacity && count * 8 < slots.count { resize(to: slots.count / 2) }
            if arenaGarbage > 4096 && arenaGarbage * 2 > arena.count { compactArena() }
        }
        return removed.child
    }

    mutating func reserveCapacity(_ edges: Int) {
        var capacity = Self.minimumCapacity
        while capacity * 3 < edges * 4 { capacity *= 2 }
        if capacity > slots.count { resize(to: capacity) }
    }

    /// Visits every edge: (parent, level, child).
    func forEach(_ body: (UInt32, String, UInt32) -> Void) {
        for slot in slots where slot.child != 0 { body(slot.parent, level(of: slot), slot.child) }
    }

    private mutating func place(_ slot: Slot, hash: Int) {
        let mask = slots.count - 1
        var index = hash & mask
        while slots[index].child != 0 { index = (index + 1) & mask }
        slots[index] = slot
    }

    private mutating func resize(to capacity: Int) {
        let old = slots
        slots = Array(repeating: Slot(), count: capacity)
        let mask = capacity - 1
        for slot in old where slot.child != 0 {
            var index = rehash(slot) & mask
            while slots[index].child != 0 { index = (index + 1) & mask }
            slots[index] = slot
        }
    }

    private mutating func compactArena() {
        var compacted: [UInt8] = []
        compacted.reserveCapacity(arena.count - arenaGarbage)
        for index in slots.indices where slots[index].child != 0 && slots[index].length > Self.inlineCapacity {
            let offset = Int(slots[index].low)
            slots[index].low = UInt32(compacted.count)
            compacted.append(contentsOf: arena[offset..<offset + slots[index].length])
        }
        arena = compacted
        arenaGarbage = 0
    }
}
