import Dispatch
import Logging
import Synchronization

/// Saves the agent's state on its own serial queue, at most once per `interval`, however
/// often the interest changes: encoding a large session table and fsyncing it must not run
/// on the Swift concurrency pool (it would block a cooperative thread) nor once per change.
final class StateSaver: Sendable {
    private let store: StateStore
    private let interval: Double
    private let snapshot: @Sendable () -> [UInt8]?
    private let onFailure: @Sendable (StateStoreError) -> Void
    private let queue = DispatchQueue(label: "mosquitto-mesh.state")
    private let scheduled = Atomic<Bool>(false)
    /// Set by the final save: a save scheduled earlier must not overwrite it.
    private let finished = Atomic<Bool>(false)
    /// How long the last save took (ns): saves are spaced at least ten times that, so a
    /// large table under churn costs at most ~10 % of a core however often it changes.
    private let lastDuration = Atomic<Int>(0)

    init(store: StateStore, interval: Double = 0.5, snapshot: @escaping @Sendable () -> [UInt8]?,
         onFailure: @escaping @Sendable (StateStoreError) -> Void) {
        self.store = store
        self.interval = interval
        self.snapshot = snapshot
        self.onFailure = onFailure
    }

    /// Schedules a save unless one is already scheduled (it will take the newest state).
    func requestSave() {
        guard !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let delay = max(interval, Double(lastDuration.load(ordering: .relaxed)) * 10 / 1e9)
        queue.asyncAfter(deadline: .now() + delay) { [self] in
            scheduled.store(false, ordering: .releasing)
            guard !finished.load(ordering: .acquiring), let state = snapshot() else { return }
            let start = DispatchTime.now().uptimeNanoseconds
            save(state)
            lastDuration.store(Int(DispatchTime.now().uptimeNanoseconds - start), ordering: .relaxed)
        }
    }

    /// Saves `state` (encoded) now, after any save already running.
    func saveNow(_ state: [UInt8]) {
        queue.sync { save(state) }
    }

    /// Saves `state` now, after any save already running, and no other after it (the final
    /// save of a graceful stop).
    func saveFinal(_ state: [UInt8]) {
        queue.sync {
            finished.store(true, ordering: .releasing)
            save(state)
        }
    }

    private func save(_ state: [UInt8]) {
        do {
            try store.save(encoded: state)
        } catch {
            onFailure(error)
        }
    }
}
