import Synchronization

/// A small lock-protected box for harness state that is read and written whole.
public final class LockedValue<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    public init(_ value: Value) { storage = Mutex(value) }
    public var value: Value {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
    public func withLock<R>(_ body: (inout Value) -> R) -> R { storage.withLock { body(&$0) } }
}
