import CGlibcMalloc
import Foundation

/// The agent's allocator policy, and the heap figure operators need to read RSS.
///
/// Under client churn the agent's live heap is flat (time-bounded structures such as the
/// 10 s memory of remote connects rise and fall with the connect rate), yet its resident set
/// crept up by 0.25–0.5 MB per 100 000 distinct client ids. The cause is glibc's dynamic
/// thresholds: the first time a block above 128 KiB (a dictionary's storage growing) is
/// freed, glibc raises its mmap threshold to that size and its trim threshold to twice it, so
/// later large blocks come from the arenas and their freed space is kept, fragmented, rather
/// than given back. Fixing both thresholds at glibc's initial 128 KiB keeps large blocks in
/// their own mappings (returned on free) and trims the heap top as it shrinks:
/// `bench churn-memory` measured 0.02 / −0.01 MB per 100 000 ids on the two agents with
/// the fix, 0.53 / 0.29 MB without (same build, one run each; docs/performance.md).
public enum ProcessMemory {
    /// glibc's own initial value of both thresholds.
    public static let threshold: Int32 = 128 * 1024

    /// What `keepResidentSetFlat` did.
    public enum Policy: Equatable, Sendable {
        /// Both thresholds fixed at `threshold`.
        case fixedThresholds
        /// The operator set malloc tunables in `GLIBC_TUNABLES`: theirs win.
        case operatorTunables(String)
        /// glibc refused a setting (never seen; the allocator keeps its defaults).
        case refused
    }

    /// Fixes glibc's mmap and trim thresholds, unless `GLIBC_TUNABLES` sets malloc tunables.
    /// Call once, early: before the threads that allocate most are started.
    @discardableResult
    public static func keepResidentSetFlat(environment: [String: String] = ProcessInfo.processInfo.environment) -> Policy {
        if let tunables = environment["GLIBC_TUNABLES"], tunables.contains("glibc.malloc.") {
            return .operatorTunables(tunables)
        }
        // mallopt returns 1 on success, 0 on error.
        guard mallopt(M_MMAP_THRESHOLD, threshold) == 1, mallopt(M_TRIM_THRESHOLD, threshold) == 1 else { return .refused }
        return .fixedThresholds
    }

    /// Gives free pages inside the arenas back to the system (glibc `malloc_trim(0)`): the
    /// space time-bounded structures freed after a peak, which the thresholds alone keep
    /// resident when small live blocks sit above it. Returns how long it took (seconds).
    @discardableResult
    public static func returnFreePages() -> Double {
        let start = ContinuousClock.now
        malloc_trim(0)
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// What the process's allocator has handed out and not had back (glibc `mallinfo2`).
    /// Unlike RSS it excludes freed space the allocator keeps, so a rising RSS over a flat
    /// heap is the allocator, not a leak. Walks every arena: per scrape or tick, not per message.
    public struct HeapUsage: Sendable {
        /// In-use chunks in the arenas (`uordblks`).
        public var arenaBytes: Int
        /// Blocks in their own mappings (`hblkhd`): the large ones the policy keeps out of the arenas.
        public var mappedBytes: Int
        /// Free space kept in the arenas (`fordblks`), resident or not.
        public var freeArenaBytes: Int
        public var inUseBytes: Int { arenaBytes + mappedBytes }
    }

    public static func heapUsage() -> HeapUsage {
        let info = mallinfo2()
        return HeapUsage(arenaBytes: Int(info.uordblks), mappedBytes: Int(info.hblkhd), freeArenaBytes: Int(info.fordblks))
    }
}
