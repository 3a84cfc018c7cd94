import Synchronization

/// Opens once; every task waiting on it goes on then (or when it is cancelled, so a
/// service group that stops before the gate opens is not held up by its waiters).
final class Gate: Sendable {
    private enum State {
        case closed([Int: CheckedContinuation<Void, Never>])
        case open
    }

    private let state = Mutex<State>(.closed([:]))
    private let nextWaiter = Atomic<Int>(0)

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard case .closed(let w) = s else { return [] }
            s = .open
            return Array(w.values)
        }
        for w in waiters { w.resume() }
    }

    /// Returns once the gate is open or the task is cancelled.
    func wait() async {
        let id = nextWaiter.add(1, ordering: .relaxed).oldValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let goOn = state.withLock { s -> Bool in
                    guard case .closed(var w) = s, !Task.isCancelled else { return true }
                    w[id] = c
                    s = .closed(w)
                    return false
                }
                if goOn { c.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                guard case .closed(var w) = s, let c = w.removeValue(forKey: id) else { return nil }
                s = .closed(w)
                return c
            }
            waiter?.resume()
        }
    }
}
